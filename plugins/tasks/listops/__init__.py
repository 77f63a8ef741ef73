"""LRA ListOps."""
