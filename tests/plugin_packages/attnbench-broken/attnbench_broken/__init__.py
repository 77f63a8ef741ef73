"""Plugins that break on purpose, each in a different way."""
