"""relative: softmax attention plus a learned per-head bias for T5's log-bucketed relative positions.

Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer"
(T5), JMLR 2020; building on Shaw, Uszkoreit & Vaswani, "Self-Attention with Relative Position
Representations", NAACL 2018.

Offsets j - i up to ``num_buckets/4`` apart (bidirectional) get a bucket each; larger ones share
logarithmically wider buckets up to ``max_distance``, beyond which all offsets share the last one.
Buckets are bidirectional (past and future apart) unless the model is built causal. Queries sit at
positions 0..Lq-1 and keys at 0..Lk-1, as for ``is_causal``. Options: ``num_buckets`` (32),
``max_distance`` (128).

Cost: O(L²·D) time like softmax attention. The bias depends only on the offset j - i, so it is
looked up once per offset, an (H, Lq+Lk-1) vector, and reaches fused SDPA as a strided view
(:func:`~attnbench.nn.biased_attention.offset_biased_attention`): no (H, Lq, Lk) tensor is
built unless weights are asked for or a padding mask must be folded in; gradients reach the table.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import attnbench
from attnbench.nn.biased_attention import OffsetBiasedAttention, offset_positions


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """T5's bucket for each offset ``key_position - query_position`` (an integer tensor).

    Half the buckets are exact offsets, the other half logarithmically wider bins up to
    ``max_distance``; bidirectional buckets split the range between keys before and after.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets  # keys after the query
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # future keys are masked; they share bucket 0
    max_exact = num_buckets // 2
    # Offsets of max_exact and beyond: log-spaced bins, saturating at max_distance.
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class RelativeBiasAttention(OffsetBiasedAttention):
    """Softmax attention plus ``bias[h, bucket(j - i)]``, a learned (num_buckets, H) table."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config.dropout)
        self.bidirectional = not config.causal
        self.num_buckets = int(config.option("num_buckets", 32))
        self.max_distance = int(config.option("max_distance", 128))
        if self.num_buckets < (4 if self.bidirectional else 2):
            raise ValueError(f"relative: num_buckets={self.num_buckets} is too few for the bucket scheme")
        self.embedding = nn.Embedding(self.num_buckets, config.num_heads)
        # T5's initialisation: std = d_model^-1/2.
        nn.init.normal_(self.embedding.weight, std=(config.num_heads * config.head_dim) ** -0.5)

    def offset_bias(self, lq: int, lk: int) -> torch.Tensor:
        """The (H, Lq+Lk-1) learned bias of each offset j - i of ``offset_positions(Lq, Lk)``."""
        offset = offset_positions(lq, lk, self.embedding.weight.device)
        buckets = relative_position_bucket(offset, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).t()

    def cache_bias(self, t: int, total: int, device: torch.device) -> torch.Tensor:
        """The bucket bias of a decoding chunk: queries at ``total-T … total-1``, keys ``0 … total-1``, (H, T, total)."""
        table = self.embedding.weight.device  # buckets are looked up on the table's device
        offset = torch.arange(total, device=table)[None, :] - torch.arange(total - t, total, device=table)[:, None]
        buckets = relative_position_bucket(offset, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="relative",
        build=RelativeBiasAttention,
        summary="Softmax attention plus a learned per-head T5 relative-position bias (log-spaced buckets)",
        complexity="O(L^2)",
        exact=False,
        arbitrary_mask=True,
        weights=True,
        citation="Raffel et al. 2020, T5 (JMLR); Shaw et al. 2018, Relative Position Representations",
        incremental=True,
        options={"num_buckets": 32, "max_distance": 128},
    ))
