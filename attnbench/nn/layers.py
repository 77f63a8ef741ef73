"""Pre-norm transformer encoder and decoder layers built on :class:`MultiheadAttention`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnbench.nn.attention import DecodingState, MultiheadAttention
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


    def step(self, x: torch.Tensor, state: DecodingState, memory: tuple[torch.Tensor, torch.Tensor], position: int,
             memory_padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, DecodingState]:
        """The layer's output (B, T, E) for the T newest target positions, given the self-attention's
        decoding ``state`` and the cross-attention's projected ``memory``."""
        h, state = self.self_attn.step(self.norm1(x), state)
        x = x + self.dropout(h)
        h = self.cross_attn.attend_memory(self.norm2(x), memory, position, key_padding_mask=memory_padding_mask)
        x = x + self.dropout(h)
        return x + self.dropout(self.ff(self.norm3(x))), state


@dataclasses.dataclass(frozen=True)
class DecoderState:
    """What :meth:`Decoder.step` carries: each layer's self-attention state and projected memory,
    the memory's padding mask and the number of target positions decoded so far. Every tensor
    has the batch first, so ``attnbench.nn.kv_cache.select_batch`` keeps or reorders sequences."""

    layers: tuple[DecodingState, ...]
    memory: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    memory_padding_mask: torch.Tensor | None
    position: int = 0


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

    @property
    def incremental(self) -> bool:
        """Whether the self-attention variant decodes step by step (its spec says ``incremental``)."""
        return all(layer.self_attn.spec.incremental for layer in self.layers)

    def init_state(self, memory: torch.Tensor, memory_padding_mask: torch.Tensor | None = None) -> DecoderState:
        """The state before the first target position, for the encoder output ``memory`` (B, Ls, E)."""
        batch = memory.shape[0]
        return DecoderState(
            layers=tuple(layer.self_attn.init_state(batch, device=memory.device, dtype=memory.dtype)
                         for layer in self.layers),
            memory=tuple(layer.cross_attn.project_memory(memory) for layer in self.layers),
            memory_padding_mask=memory_padding_mask,
        )

    def step(self, x: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """The decoder's output (B, T, E) for the T newest target embeddings ``x``; equals the last T rows
        of ``forward`` over the whole target prefix (without target padding)."""
        layers = []
        for layer, layer_state, memory in zip(self.layers, state.layers, state.memory, strict=True):
            x, layer_state = layer.step(x, layer_state, memory, state.position, state.memory_padding_mask)
            layers.append(layer_state)
        return self.norm(x), dataclasses.replace(state, layers=tuple(layers), position=state.position + x.shape[1])
