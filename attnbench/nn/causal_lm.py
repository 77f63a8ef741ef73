"""A decoder-only (causal) language model on any attention variant: what the probes and the LM task share.

Token embeddings, a stack of pre-norm blocks (causal self-attention through
:class:`~attnbench.nn.attention.MultiheadAttention`, then an optional feed-forward), a final
LayerNorm and a linear read-out to next-token logits.

Positions: by default the model adds none (``positions="none"``, "NoPE"). Causal masking
alone lets attention tell positions apart, and positional variants (rope, alibi, relative,
retention) bring their own, so the model runs at any length: what the length-extrapolation
probes need. ``positions="learned"`` adds a learned absolute table of ``max_len`` rows (GPT-2's
scheme); such a model cannot run past ``max_len``, and :meth:`CausalLM.length_limit` says so.
``positions="shift"`` adds, to each token's embedding, a learned projection of the previous
token's (a token shift, as RWKV's, or the shortest of H3's and Based's short convolutions): local
order at no length limit. ``positions="sinusoidal"`` adds the original Transformer's fixed
sinusoids, computed for any length (absolute order, no table to outgrow).
A variant whose spec ``needs_max_len`` is built for ``max_len`` and has the same limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnbench.nn.attention import MultiheadAttention
from attnbench.specs import AttentionSpec

#: The positional schemes :class:`CausalLM` offers.
POSITIONS: tuple[str, ...] = ("none", "shift", "sinusoidal", "learned")


def positions_are_sinusoidal(positions: str) -> bool:
    """Whether ``positions`` names the fixed sinusoidal table."""
    return positions == "sinusoidal"


def sinusoids(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The Transformer's fixed sinusoidal positions (length, dim): sines in the first half, cosines in the second."""
    positions = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.cat([torch.sin(positions * rates), torch.cos(positions * rates)], dim=-1)[:, :dim]
    return table.to(dtype)


class CausalBlock(nn.Module):
    """Pre-norm causal self-attention with a residual, then (if ``ff_dim`` > 0) a pre-norm GELU MLP."""

    def __init__(self, dim: int, heads: int, attention: AttentionSpec, *, ff_dim: int, dropout: float,
                 max_len: int | None, options: Mapping[str, Any] | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, heads, attention, max_len=max_len, causal=True, dropout=dropout,
                                       options=options)
        self.ff = None
        if ff_dim > 0:
            self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.attn(self.norm1(x))
        x = x + self.dropout(h)
        if self.ff is not None:
            x = x + self.dropout(self.ff(x))
        return x


class CausalLM(nn.Module):
    """Next-token logits (B, L, vocab) from token ids (B, L), with the variant in causal self-attention.

    ``ff_dim=0`` leaves the MLPs out (Zoology's attention-only MQAR models); ``options``
    reach the variant's ``AttentionConfig.options`` (e.g. ``window`` for ``local``).
    ``max_len`` is the training length: the variant's ``AttentionConfig.max_len`` and, with
    ``positions="learned"``, the size of the position table.
    """

    def __init__(
        self,
        attention: AttentionSpec,
        *,
        vocab_size: int,
        dim: int,
        depth: int,
        heads: int,
        ff_dim: int = 0,
        dropout: float = 0.0,
        positions: str = "none",
        max_len: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}; got {positions!r}")
        if positions == "learned" and not max_len:
            raise ValueError("positions='learned' needs max_len (the size of the position table)")
        self.spec = attention
        self.max_len = max_len
        self.positions = positions
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Embedding(max_len, dim) if positions == "learned" else None
        self.shift = nn.Linear(dim, dim) if positions == "shift" else None
        self.blocks = nn.ModuleList(
            CausalBlock(dim, heads, attention, ff_dim=ff_dim, dropout=dropout, max_len=max_len, options=options)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, std=0.02)

    def length_limit(self) -> tuple[int, str] | None:
        """``(longest length, why)`` when the model cannot run on longer sequences, else None."""
        if self.position_embedding is not None:
            return self.max_len, f"learned absolute positions exist only for the first {self.max_len} positions"
        if self.spec.needs_max_len and self.max_len:
            return self.max_len, (f"attention {self.spec.name!r} needs max_len at build time and was built "
                                  f"for the training length {self.max_len}")
        return None

    def attention_layers(self) -> list[MultiheadAttention]:
        """The model's attention layers, first block first (for state sizes and parameter counts)."""
        return [block.attn for block in self.blocks]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, vocab) for ``tokens`` (B, L); position t sees tokens 0..t only."""
        limit = self.length_limit()
        if limit is not None and tokens.shape[1] > limit[0]:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds {limit[0]}: {limit[1]}")
        x = self.token_embedding(tokens)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(tokens.shape[1], device=tokens.device))
        if positions_are_sinusoidal(self.positions):
            x = x + sinusoids(tokens.shape[1], x.shape[-1], x.device, x.dtype)
        if self.shift is not None:  # each position also sees the token before it
            x = x + self.shift(torch.nn.functional.pad(x[:, :-1], (0, 0, 1, 0)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))
