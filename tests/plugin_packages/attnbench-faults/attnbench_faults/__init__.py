"""Fault injection for attnbench's own tests: tasks and a variant that crash, hang or exhaust memory."""
