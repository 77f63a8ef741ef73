"""A variant whose ``build()`` raises: every pairing with it must become a ``failed`` row."""

from __future__ import annotations

import attnbench


def _build(config: attnbench.AttentionConfig):
    raise ValueError("faulty-build: this variant cannot be built")


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(name="faulty-build", build=_build, summary="raises in build()",
                                     complexity="O(1)", weights=False))
