"""softmax: textbook scaled dot-product attention, the ground truth every variant is checked against.

Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import attnbench
from attnbench.nn.masks import dense_mask


class SoftmaxAttention(nn.Module):
    """``softmax(q kᵀ / √D + mask) v``, written out so the weights can be returned."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        mask = dense_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        out = self.dropout(weights) @ v
        return (out, weights) if need_weights else out


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
    ))
