"""A plugin whose hook raises while registering: reported by `attnbench plugins`, the rest load."""

from __future__ import annotations

import attnbench


@attnbench.hookimpl
def register_attention(register):
    raise RuntimeError("raises-at-registration: broken while registering")
