"""FlexAttention mods as attnbench variants (used by attnbench's own tests of attnbench.flex)."""
