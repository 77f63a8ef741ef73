"""softmax: textbook scaled dot-product attention, the ground truth every variant is checked against.

Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import attnbench
from attnbench.nn.kv_cache import KVCache, chunk_causal_mask
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

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """An empty KV cache (DESIGN.md, "Incremental decoding")."""
        return KVCache.empty(batch_size, device=device, dtype=dtype)

    def state_nbytes(self, state):
        """Bytes of the cached keys and values: linear in the context."""
        return state.nbytes

    def step(self, q, k, v, state):
        """The written-out softmax of the newest chunk over every cached key."""
        keys, values = state.append(k, v)
        scores = (q @ keys.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        mask = chunk_causal_mask(q.shape[-2], keys.shape[-2], q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return self.dropout(torch.softmax(scores, dim=-1)) @ values, state


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
