"""SASRec (Kang & McAuley 2018) on any causal attention variant.

Item embeddings (scaled by √d) plus learned absolute positions, dropout, then a causal
pre-norm :class:`attnbench.nn.Encoder`. The hidden state at position t predicts the item
at t + 1; an item's score is the dot product with its (shared) input embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbench.nn import Encoder
from attnbench.specs import AttentionSpec


class SASRec(nn.Module):
    """``forward(items, mask)`` maps item ids (B, L), 0 = padding, and mask (B, L), True = item,
    to hidden states (B, L, dim); an item's score is a state's dot product with ``item_embedding``."""

    def __init__(
        self, attention: AttentionSpec, *, n_items: int, max_len: int, dim: int, depth: int, heads: int,
        ff_dim: int, dropout: float,
    ) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.encoder = Encoder(depth, dim, heads, attention, ff_dim=ff_dim, dropout=dropout, max_len=max_len, causal=True)
        nn.init.normal_(self.item_embedding.weight, std=1.0 / self.scale)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, dim) for ``items`` (B, L) with ``mask`` (B, L), True = item."""
        positions = torch.arange(items.shape[1], device=items.device)
        x = self.item_embedding(items) * self.scale + self.position_embedding(positions)
        x = self.dropout(x) * mask.unsqueeze(-1).to(x.dtype)
        return self.encoder(x, key_padding_mask=mask)
