"""sdpa: PyTorch's fused ``scaled_dot_product_attention``, the reference for cost.

PyTorch picks the fastest backend available (FlashAttention-2, memory-efficient, math).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.kv_cache import KVCacheDecoding, softmax_over_cache
from attnbench.nn.masks import dense_mask


class SDPAttention(KVCacheDecoding, nn.Module):
    """``torch.nn.functional.scaled_dot_product_attention`` with the suite's mask convention."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.dropout = config.dropout

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        if need_weights:
            raise NotImplementedError("sdpa cannot return attention weights (its spec says weights=False)")
        if attn_mask is not None and is_causal:  # SDPA accepts one or the other
            attn_mask, is_causal = dense_mask(attn_mask, True, q.shape[-2], k.shape[-2], q.device), False
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )

    def attend_cache(self, q, keys, values):
        """The newest chunk attends every cached key (causally within the chunk)."""
        return softmax_over_cache(q, keys, values, dropout=self.dropout if self.training else 0.0)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="sdpa",
        build=SDPAttention,
        summary="torch.nn.functional.scaled_dot_product_attention (fused kernels)",
        complexity="O(L^2)",
        exact=True,
        arbitrary_mask=True,
        weights=False,
        citation="Dao et al. 2022, FlashAttention; PyTorch SDPA",
        incremental=True,
    ))
