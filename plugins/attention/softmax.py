"""softmax: textbook scaled dot-product attention, the ground truth every variant is checked against.

Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
"""

from __future__ import annotations

import math

import attnbench
from attnbench.nn.scored_attention import ScoredAttention


class SoftmaxAttention(ScoredAttention):
    """``softmax(q kᵀ / √D + mask) v``, written out so the weights can be returned: ScoredAttention's softmax
    of dot-product scores (stepped over a KV cache as well)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config.dropout)

    def scores(self, q, k):
        """``q kᵀ / √D``."""
        return (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="softmax",
        build=SoftmaxAttention,
        summary="Reference scaled dot-product softmax attention, written out (returns weights)",
        complexity="O(L^2)",
        exact=True,
        arbitrary_mask=True,
        weights=True,
        citation="Vaswani et al. 2017, Attention Is All You Need",
        incremental=True,
    ))
