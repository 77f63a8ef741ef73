"""An example third-party attnbench plugin (used by attnbench's own tests)."""
