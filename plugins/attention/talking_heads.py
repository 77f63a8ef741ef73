"""talking-heads: softmax attention whose heads exchange information through learned H×H mixes.

Shazeer, Lan, Cheng, Ding & Hou, "Talking-Heads Attention", arXiv:2003.02436, 2020.

The logits of all heads at one (query, key) position are mixed by a learned H×H matrix before the
softmax, and the weights are mixed by another after it. Both start as the identity, so an untrained
module computes exactly softmax attention; training moves away from it. Mixed weights are returned
as the attention maps: once the post-softmax mix has left the identity their rows need not sum to 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import attnbench
from attnbench.nn.scored_attention import ScoredAttention


class TalkingHeadsAttention(ScoredAttention):
    """Softmax attention with learned head mixing of the logits (``pre_softmax``) and the weights (``post_softmax``)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config.dropout)
        heads = config.num_heads
        # Entry [h, g] is how much source head h contributes to output head g.
        self.pre_softmax = nn.Parameter(torch.eye(heads))
        self.post_softmax = nn.Parameter(torch.eye(heads))

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if q.shape[1] != self.pre_softmax.shape[0]:
            raise ValueError(f"talking-heads was built for {self.pre_softmax.shape[0]} heads, got {q.shape[1]}")
        return super().forward(q, k, v, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights)

    def scores(self, q, k):
        """``q kᵀ / √D`` per source head."""
        return (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])

    def weights(self, scores, allowed):
        """Mix the logits over heads, softmax, mix the weights; pairs a head may not attend stay out of every mix."""
        if allowed is not None:
            # A mask may differ between heads: zero a head's masked logits before mixing so no
            # output head sees a (query, key) pair through a head that may not attend it.
            scores = scores.masked_fill(~allowed, 0.0)
        scores = torch.einsum("bhqk,hg->bgqk", scores, self.pre_softmax.to(scores.dtype))
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.einsum("bhqk,hg->bgqk", torch.softmax(scores, dim=-1), self.post_softmax.to(scores.dtype))
        if allowed is not None:
            weights = weights.masked_fill(~allowed, 0.0)  # same reason, after the second mix
        return weights


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="talking-heads",
        build=TalkingHeadsAttention,
        summary="Softmax attention with learned H×H head mixing before and after the softmax (identity at init)",
        complexity="O(L^2)",
        exact=False,
        arbitrary_mask=True,
        weights=True,
        citation="Shazeer et al. 2020, Talking-Heads Attention (arXiv:2003.02436)",
        incremental=True,
    ))
