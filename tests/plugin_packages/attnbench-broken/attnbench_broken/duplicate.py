"""Registers a name the built-in plugins already own."""

import attnbench
from torch import nn


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(name="softmax", build=lambda config: nn.Identity(),
                                     summary="an impostor", complexity="O(1)"))
