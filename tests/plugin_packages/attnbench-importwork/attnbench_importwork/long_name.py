"""A variant whose name is 300 characters long: no file system holds a folder of that name."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

import attnbench

LONG_NAME = "very-" * 59 + "long1"  # 300 characters


class Plain(nn.Module):
    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(name=LONG_NAME, build=Plain, summary="sdpa under a very long name",
                                     complexity="O(L^2)"))
