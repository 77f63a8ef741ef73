"""rope: rotary position embedding on q and k, then softmax attention, so scores depend on i - j.

Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", Neurocomputing 2024
(arXiv:2104.09864, 2021).

Dimension pairs (d, d + D/2) are rotated by angle ``position · base^(-2d/D)`` (the half-split
layout of GPT-NeoX; the paper pairs adjacent dims, which is the same rotation with the dims
permuted). With an odd head dim the last dim is left unrotated. Queries take positions 0..Lq-1 and
keys 0..Lk-1, each sequence from 0: for self-attention that is the usual RoPE, and for causal
attention it matches ``is_causal``'s top-left alignment. For cross-attention between two different
sequences the rotation then encodes the offset between the query's and the key's own indices.
Option: ``rope_base`` (10000).
"""

from __future__ import annotations

import torch
from torch import nn

import attnbench
from attnbench.nn.biased_attention import biased_attention
from attnbench.nn.kv_cache import KVCacheDecoding, softmax_over_cache


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[d], x[d + h]) of ``x`` (…, L, D) by the angle whose ``cos``/``sin`` are
    given per position and pair, each (L, h); dims past 2h are left as they are."""
    h = cos.shape[-1]
    x1, x2, rest = x[..., :h], x[..., h : 2 * h], x[..., 2 * h :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


class RotaryAttention(KVCacheDecoding, nn.Module):
    """Softmax attention on rotated q and k; cos/sin tables computed on demand and cached by length."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.dropout = config.dropout
        self.half = config.head_dim // 2  # rotated pairs
        base = float(config.option("rope_base", 10000.0))
        inv_freq = base ** (-torch.arange(self.half, dtype=torch.float32) / self.half)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # Longest table built so far, per (device, dtype); shorter lengths take a slice of it.
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of ``position · inv_freq`` for positions 0..length-1, each (length, D/2)."""
        key = (device, dtype)
        cached = self._tables.get(key)
        if cached is None or cached[0].shape[0] < length:
            # Angles in float32 whatever the input dtype: positions times frequencies lose
            # precision fast in half precision.
            angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * self.inv_freq.to(device)
            cached = self._tables[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        return cached[0][:length], cached[1][:length]

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate each pair (x[d], x[d + D/2]) of ``x`` (…, L, D) by its position's angle."""
        cos, sin = self.tables(x.shape[-2], x.device, x.dtype)
        return rotate_pairs(x, cos, sin)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        dropout = self.dropout if self.training else 0.0
        return biased_attention(self.rotate(q), self.rotate(k), v, None, attn_mask, is_causal, dropout, need_weights)

    def step(self, q, k, v, state):
        """Rotate the newest chunk by its absolute positions (the cache's length on), then attend the cache:
        keys are cached already rotated."""
        start, t = state.length, q.shape[-2]
        cos, sin = self.tables(start + t, q.device, q.dtype)
        cos, sin = cos[start:], sin[start:]
        return super().step(rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin), v, state)

    def attend_cache(self, q, keys, values):
        """The rotated chunk over every cached (rotated) key: softmax attention from here on."""
        dropout = self.dropout if self.training else 0.0
        return softmax_over_cache(q, keys, values, dropout=dropout)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="rope",
        build=RotaryAttention,
        summary="Rotary position embedding on q and k, then softmax attention (scores depend on i - j)",
        complexity="O(L^2)",
        exact=False,
        arbitrary_mask=True,
        weights=True,
        citation="Su et al. 2021, RoFormer: Enhanced Transformer with Rotary Position Embedding",
        options={"rope_base": 10000.0},
        incremental=True,
    ))
