"""A variant whose name holds a ``/``: as a folder name it would nest one folder in another."""

from __future__ import annotations

import attnbench
from attnbench_importwork.long_name import Plain

SLASH_NAME = "sdpa/nested"


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(name=SLASH_NAME, build=Plain, summary="sdpa under a name with a slash",
                                     complexity="O(L^2)"))
