"""attnbench's built-in plugins, registered through the ``attnbench`` entry-point group."""
