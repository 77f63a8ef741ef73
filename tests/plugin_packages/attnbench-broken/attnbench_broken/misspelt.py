"""Implements a hook that does not exist (a typo of register_attention)."""

import attnbench


@attnbench.hookimpl
def register_attentions(register):
    raise AssertionError("never called")
