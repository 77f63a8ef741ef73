"""A sequence classifier on any attention variant: the model text, byte and ListOps tasks share."""

from __future__ import annotations

import torch
from torch import nn

from attnbench.nn.layers import Encoder
from attnbench.specs import AttentionSpec

#: How :class:`SequenceClassifier` pools its tokens (a task's ``pooling`` setting takes one of these).
POOLINGS: tuple[str, ...] = ("mean", "cls")


class SequenceClassifier(nn.Module):
    """Token + learned position embeddings, a pre-norm :class:`Encoder`, pooling, a linear head.

    ``forward(tokens, mask)`` takes token ids (B, L) and a mask (B, L), True for real
    tokens, and returns class logits (B, num_classes). Padding is masked out of attention
    (as a key-padding mask) and out of the pooled mean.

    ``pooling="mean"`` averages the real tokens; ``pooling="cls"`` prepends a learned
    classification token and reads it out (the encoder then sees ``L + 1`` positions, so
    ``max_len`` counts it). Either way an all-padding row stays finite: the CLS token is
    always attendable, and the mean divides by at least one.
    """

    def __init__(
        self,
        attention: AttentionSpec,
        *,
        vocab_size: int,
        num_classes: int,
        max_len: int,
        dim: int,
        depth: int,
        heads: int,
        ff_dim: int,
        dropout: float = 0.0,
        pooling: str = "mean",
        padding_idx: int | None = 0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(map(repr, POOLINGS))}, got {pooling!r}")
        self.pooling = pooling
        self.token_embedding = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pooling == "cls" else None
        self.encoder = Encoder(depth, dim, heads, attention, ff_dim=ff_dim, dropout=dropout, max_len=max_len)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled representation (B, dim) of ``tokens`` (B, L) with ``mask`` (B, L)."""
        x = self.token_embedding(tokens)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        x = x + self.position_embedding(torch.arange(x.shape[1], device=x.device))
        x = self.encoder(x, key_padding_mask=mask)
        if self.cls is not None:
            return x[:, 0]
        weights = mask.unsqueeze(-1).to(x.dtype)
        return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for ``tokens`` (B, L) with ``mask`` (B, L), True = token."""
        return self.head(self.encode(tokens, mask))
