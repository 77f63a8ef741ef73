"""Built-in tasks, one package each (see ``attnbench list tasks``)."""
