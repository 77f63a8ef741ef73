"""attention-gym-style FlexAttention mods registered as attnbench variants (used by attnbench's tests of attnbench.flex).

``masks.py`` and ``mods.py`` are written the way meta-pytorch/attention-gym writes its
``attn_gym/masks/*.py`` and ``attn_gym/mods/*.py`` — ``generate_*`` factories returning closures
over captured tensors, evaluated element by element — without importing attention-gym;
``register.py`` registers them with ``attnbench.flex.variant`` as an attention-gym user would.
"""
