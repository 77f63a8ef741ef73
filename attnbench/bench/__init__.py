"""attnbench bench: the variants' cost, side by side."""
