"""gqa, mqa: grouped-query and multi-query attention — softmax attention with fewer key/value heads.

The H query heads are split into H_kv groups of G = H / H_kv consecutive heads; every head
of group g attends with the same key and value head g:

    out_h = softmax(q_h k_{g(h)}ᵀ / √D + mask) v_{g(h)},   g(h) = ⌊h / G⌋.

H_kv = H is multi-head attention, H_kv = 1 is multi-query attention (Shazeer 2019), values in
between are grouped-query attention (Ainslie et al. 2023), as in Llama 2/3 and Mistral. The
attention itself costs what softmax attention costs, O(L²·H·D); what shrinks is the key/value
projection (H_kv/H of its parameters and FLOPs) and the k/v tensors, i.e. the decoder's KV cache.
Given k, v with the key/value heads repeated G times, the output is exactly softmax attention,
so the variant is ``exact`` in that sense.

Models built from ``attnbench.nn.MultiheadAttention`` read the spec's ``kv_heads`` and project
keys and values to H_kv heads. A model that hands the variant k, v with more heads (all H: the
timm adapter, the transformers adapter after its ``repeat_kv``, the micro-benchmark) gets the
paper's "mean-pooled" conversion of a multi-head checkpoint: each group's heads are averaged
into one, which equals grouped-query attention whose key/value projections are the mean of the
group's projections (linear maps commute with the mean), so the computation is grouped-query
attention but the parameter count is that of the larger projection. ``attnbench run
--variant-option gqa.kv_heads=N`` takes this path too: the runner applies options when the
variant is built, after the model has sized its projections for the default (N must divide
that default; fewer parameters with N would need the runner to pass options to ``kv_heads``).

Options: ``kv_heads`` (gqa only) — the number of key/value heads; 0 (the default) means the
largest divisor of H that is at most max(H // 4, 2): 4 heads share a key/value head where H
allows it (32 → 8 as in Mistral 7B, 8 → 2, 4 → 2), 2 heads otherwise; with H = 2 that leaves
2, i.e. multi-head attention (pass ``kv_heads=1``, or use ``mqa``).

The fast path is ``torch.nn.functional.scaled_dot_product_attention(..., enable_gqa=True)``,
which reads the shared heads without copying them; returning weights writes the scores out.

Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints", EMNLP 2023 (arXiv:2305.13245); Shazeer, "Fast Transformer Decoding: One
Write-Head is All You Need", arXiv:1911.02150, 2019.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.kv_cache import KVCacheDecoding, softmax_over_cache
from attnbench.nn.masks import dense_mask


def default_kv_heads(num_heads: int) -> int:
    """The largest divisor of ``num_heads`` that is at most max(num_heads // 4, 2)."""
    cap = max(num_heads // 4, 2)
    return max(d for d in range(1, min(cap, num_heads) + 1) if num_heads % d == 0)


def gqa_kv_heads(config: attnbench.AttentionConfig) -> int:
    """How many key/value heads ``gqa`` wants for ``config``: option ``kv_heads``, 0 = the default."""
    kv = int(config.option("kv_heads", 0)) or default_kv_heads(config.num_heads)
    if kv < 1 or config.num_heads % kv:
        raise ValueError(
            f"gqa: kv_heads={kv} does not divide num_heads={config.num_heads}; pass a divisor of "
            f"num_heads (e.g. --variant-option gqa.kv_heads={default_kv_heads(config.num_heads)}), "
            "or 0 for the default"
        )
    return kv


def mqa_kv_heads(config: attnbench.AttentionConfig) -> int:
    """``mqa`` always wants one key/value head."""
    return 1


def pool_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, H, L, D) → (B, heads, L, D): the mean of each group of H / heads consecutive heads."""
    b, h, length, d = x.shape
    return x.view(b, heads, h // heads, length, d).mean(dim=2)


class GroupedQueryAttention(KVCacheDecoding, nn.Module):
    """Softmax attention whose H query heads share ``num_kv_heads`` key/value heads."""

    def __init__(self, config: attnbench.AttentionConfig, kv_heads=gqa_kv_heads) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = kv_heads(config)
        self.dropout = config.dropout

    def _grouped(self, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v with ``num_kv_heads`` heads: as given, or mean-pooled from more heads.

        More heads arrive from a model that keeps one per query head (the timm adapter), and
        from ``attnbench run --variant-option gqa.kv_heads=N``: the runner applies options when
        the variant is built, after the model has sized its projections for the default.
        """
        heads = k.shape[1]
        if heads == self.num_kv_heads:
            return k, v
        if heads > self.num_kv_heads and heads % self.num_kv_heads == 0 and num_heads % heads == 0:
            return pool_heads(k, self.num_kv_heads), pool_heads(v, self.num_kv_heads)
        raise ValueError(
            f"grouped-query attention wants k, v with {self.num_kv_heads} key/value heads (or a multiple of it "
            f"that divides the {num_heads} query heads, to be mean-pooled), got k {tuple(k.shape)}; build the "
            f"model with AttentionConfig(num_kv_heads={self.num_kv_heads}) and project keys and values to that "
            "many heads"
        )

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        k, v = self._grouped(k, v, q.shape[1])
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            group = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            mask = dense_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return F.dropout(weights, dropout, training=dropout > 0) @ v, weights
        if attn_mask is not None and is_causal:  # SDPA accepts a mask or is_causal, not both
            attn_mask, is_causal = dense_mask(attn_mask, True, q.shape[-2], k.shape[-2], q.device), False
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal, enable_gqa=True
        )

    def step(self, q, k, v, state):
        """k, v arrive with (and are cached at) ``num_kv_heads`` heads: the cache is H_kv/H of multi-head
        attention's."""
        k, v = self._grouped(k, v, q.shape[1])
        return super().step(q, k, v, state)

    def attend_cache(self, q, keys, values):
        """The newest chunk over every cached key, each group of query heads on its shared key/value head."""
        dropout = self.dropout if self.training else 0.0
        return softmax_over_cache(q, keys, values, dropout=dropout, enable_gqa=True)


def _mqa(config: attnbench.AttentionConfig) -> GroupedQueryAttention:
    return GroupedQueryAttention(config, kv_heads=mqa_kv_heads)


@attnbench.hookimpl
def register_attention(register):
    citation_gqa = "Ainslie et al. 2023, GQA: Training Generalized Multi-Query Transformer Models (EMNLP)"
    register(attnbench.AttentionSpec(
        name="gqa",
        build=GroupedQueryAttention,
        summary="Grouped-query softmax attention: groups of query heads share a key/value head (fewer k/v params)",
        complexity="O(L^2)",
        exact=True,  # equals softmax attention with the key/value heads repeated over their group
        arbitrary_mask=True,
        weights=True,
        citation=citation_gqa,
        options={"kv_heads": 0},
        kv_heads=gqa_kv_heads,
        incremental=True,
    ))
    register(attnbench.AttentionSpec(
        name="mqa",
        build=_mqa,
        summary="Multi-query softmax attention: every query head shares one key/value head",
        complexity="O(L^2)",
        exact=True,
        arbitrary_mask=True,
        weights=True,
        citation="Shazeer 2019, Fast Transformer Decoding: One Write-Head is All You Need (arXiv:1911.02150)",
        kv_heads=mqa_kv_heads,
        incremental=True,
    ))
