"""Built-in attention variants, one module each (see ``attnbench list attention``)."""
