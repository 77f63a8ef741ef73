"""Pre-norm transformer encoder and decoder layers built on :class:`MultiheadAttention`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnbench.nn.attention import MultiheadAttention
from attnbench.specs import AttentionSpec


def _feed_forward(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    """Self-attention (optionally causal) + feed-forward, each pre-normed with a residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attention: AttentionSpec,
        *,
        ff_dim: int | None = None,
        dropout: float = 0.0,
        max_len: int | None = None,
        causal: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(
            dim, num_heads, attention, max_len=max_len, causal=causal, dropout=dropout, options=options
        )
        self.norm2 = nn.LayerNorm(dim)
        self.ff = _feed_forward(dim, ff_dim or 4 * dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        h, _ = self.attn(self.norm1(x), key_padding_mask=key_padding_mask)
        x = x + self.dropout(h)
        return x + self.dropout(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to a memory, then feed-forward."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attention: AttentionSpec,
        *,
        cross_attention: AttentionSpec | None = None,
        ff_dim: int | None = None,
        dropout: float = 0.0,
        max_len: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = MultiheadAttention(
            dim, num_heads, attention, max_len=max_len, causal=True, dropout=dropout, options=options
        )
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = MultiheadAttention(
            dim, num_heads, cross_attention or attention, max_len=max_len, cross=True,
            dropout=dropout, options=options,
        )
        self.norm3 = nn.LayerNorm(dim)
        self.ff = _feed_forward(dim, ff_dim or 4 * dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h, _ = self.self_attn(self.norm1(x), key_padding_mask=key_padding_mask)
        x = x + self.dropout(h)
        h, _ = self.cross_attn(self.norm2(x), memory, key_padding_mask=memory_padding_mask)
        x = x + self.dropout(h)
        return x + self.dropout(self.ff(self.norm3(x)))


class Encoder(nn.Module):
    """A stack of :class:`EncoderLayer` with a final LayerNorm."""

    def __init__(self, depth: int, dim: int, num_heads: int, attention: AttentionSpec, **layer_kwargs: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, attention, **layer_kwargs) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask)
        return self.norm(x)


class Decoder(nn.Module):
    """A stack of :class:`DecoderLayer` with a final LayerNorm."""

    def __init__(self, depth: int, dim: int, num_heads: int, attention: AttentionSpec, **layer_kwargs: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, attention, **layer_kwargs) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, memory, key_padding_mask=key_padding_mask, memory_padding_mask=memory_padding_mask)
        return self.norm(x)
