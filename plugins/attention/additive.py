"""additive: Bahdanau (MLP) attention, scores vᵀ tanh(W q + U k) per head instead of a dot product.

Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to Align and Translate",
ICLR 2015.

Each head has its own W, U: D → D_a and v: D_a (option ``additive_dim``, default D). The tanh
acts on a (Lq, Lk, D_a) tensor per head, so scores are computed in query chunks sized to keep
that tensor under ``additive_chunk_elements`` (default 2^22) elements; in training each chunk is
recomputed in the backward pass (activation checkpointing) rather than kept, so memory stays
O(Lq·Lk) plus one chunk instead of O(Lq·Lk·D_a).

Cost: O(Lq·Lk·D_a) elementwise work (an add, a transcendental, a product with v per pair and
hidden unit) on top of softmax attention's O(L²·D) products; it is memory-bound. The scores use
the identity tanh(x) = 1 - 2·σ(-2x), so vᵀ tanh(x) = Σv - 2·vᵀσ(-2x), with the -2 folded into the
projections W q and U k: the same function, but torch's CPU sigmoid is vectorised and its tanh was
measured ~30× slower per element (torch 2.9.1, AVX2). ``additive_dim`` < D is the documented way to
trade scoring width for speed; it changes the model.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import attnbench
from attnbench.nn.scored_attention import ScoredAttention


def _additive_scores(wq2: torch.Tensor, uk2: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """vᵀ tanh(wq_i + uk_j) for every pair, from wq2 = -2·wqᵀ (B, H, Da, c) and uk2 = -2·ukᵀ (B, H, Da, Lk).

    With v (H, Da) returns (B, H, c, Lk), as Σv - 2·vᵀσ(wq2_i + uk2_j). The hidden units lead
    ((B, H, Da, c, Lk) layout), so the add and sigmoid run along Lk and the sum over units is one
    (1, Da) @ (Da, c·Lk) product per (batch, head) rather than c·Lk products of length Da.
    """
    hidden = wq2.unsqueeze(-1) + uk2.unsqueeze(-2)  # (B, H, Da, c, Lk)
    hidden = hidden.sigmoid_() if not torch.is_grad_enabled() else torch.sigmoid(hidden)
    b, h, _, c, lk = hidden.shape
    weighted = (v[:, None, :] @ hidden.flatten(-2)).view(b, h, c, lk)
    return v.sum(-1)[:, None, None] - 2.0 * weighted


class AdditiveAttention(ScoredAttention):
    """Softmax over learned MLP scores ``vᵀ tanh(W q + U k)``, with per-head W, U and v (ScoredAttention's softmax)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config.dropout)
        heads, dim = config.num_heads, config.head_dim
        hidden = int(config.option("additive_dim", dim))
        self.chunk_elements = int(config.option("additive_chunk_elements", 2**22))
        # Scaled so W q + U k has unit-order entries for unit-variance q, k, and vᵀ tanh(·) too.
        self.w = nn.Parameter(torch.randn(heads, dim, hidden) / math.sqrt(dim))
        self.u = nn.Parameter(torch.randn(heads, dim, hidden) / math.sqrt(dim))
        self.v = nn.Parameter(torch.randn(heads, hidden) / math.sqrt(hidden))

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The (B, H, Lq, Lk) logits, built a query chunk at a time."""
        # The -2 of tanh(x) = 1 - 2σ(-2x) is folded into the (D, Da) projections, not the (…, Lk, Da) sums.
        wq = (q @ (-2.0 * self.w.to(q.dtype))).transpose(-1, -2)  # (B, H, Da, Lq)
        uk = (k @ (-2.0 * self.u.to(k.dtype))).transpose(-1, -2).contiguous()  # (B, H, Da, Lk)
        v = self.v.to(q.dtype)
        b, h, hidden, lq = wq.shape
        chunk = max(1, self.chunk_elements // max(1, b * h * k.shape[-2] * hidden))
        if chunk >= lq:
            return _additive_scores(wq, uk, v)
        recompute = torch.is_grad_enabled() and (wq.requires_grad or uk.requires_grad or v.requires_grad)
        parts = []
        for start in range(0, lq, chunk):
            part = wq[..., start : start + chunk]
            if recompute:
                parts.append(checkpoint(_additive_scores, part, uk, v, use_reentrant=False))
            else:
                parts.append(_additive_scores(part, uk, v))
        return torch.cat(parts, dim=-2)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="additive",
        build=AdditiveAttention,
        summary="Bahdanau attention: per-head MLP scores vᵀ tanh(W q + U k), then softmax",
        complexity="O(L^2)",
        exact=False,
        arbitrary_mask=True,
        weights=True,
        citation="Bahdanau et al. 2015, Neural Machine Translation by Jointly Learning to Align and Translate",
        options={"additive_dim": None, "additive_chunk_elements": 2**22},
        incremental=True,
    ))
