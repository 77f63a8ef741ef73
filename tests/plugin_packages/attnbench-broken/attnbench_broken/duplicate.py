"""Registers a name the built-in plugins already own."""

from torch import nn

import attnbench


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(name="softmax", build=lambda config: nn.Identity(),
                                     summary="an impostor", complexity="O(1)"))
