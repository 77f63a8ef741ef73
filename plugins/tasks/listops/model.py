"""The ListOps classifier: embeddings, an encoder built on any attention variant, mean pooling."""

from __future__ import annotations

import torch
from torch import nn

from attnbench.nn import Encoder
from attnbench.specs import AttentionSpec


class ListOpsClassifier(nn.Module):
    """Token + learned position embeddings, a pre-norm encoder, masked mean pooling, a linear head.

    ``forward(tokens, mask)`` takes token ids (B, L) and a mask (B, L), True for real
    tokens, and returns class logits (B, num_classes). Padding is masked out of attention
    (as a key-padding mask) and out of the pooled mean.
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
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.encoder = Encoder(depth, dim, heads, attention, ff_dim=ff_dim, dropout=dropout, max_len=max_len)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for ``tokens`` (B, L) with ``mask`` (B, L), True = token."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        x = self.encoder(x, key_padding_mask=mask)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)
