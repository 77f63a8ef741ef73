"""linformer: softmax attention over keys and values projected along length to k rows.

Learned projections E, F (k × max_len) compress the Lk keys and values to k each, so the
score matrix is (Lq, k): O(L·k) time and memory. For Lk < max_len the first Lk columns
of E and F are used; Lk > max_len is an error. E and F are shared across heads (the
paper's "headwise sharing"). Linformer cannot be causal: every projected row mixes all
positions, future ones included.

Padding: masked keys and values are zeroed before projection, which is the same as
dropping their columns of E and F, so the output does not depend on masked positions.
With right padding it equals the output on the unpadded prefix exactly; with left (or
interior) padding the real tokens meet other columns of E and F than they would unpadded,
so the result differs from the unpadded run (positions are baked into E and F).

Wang et al., "Linformer: Self-Attention with Linear Complexity", arXiv:2006.04768, 2020.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.masks import key_padding


class LinformerAttention(nn.Module):
    """Linformer attention. Options: ``k`` (projected length, default 64)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        if not config.max_len:
            raise ValueError("linformer needs max_len at build time: pass AttentionConfig(max_len=...)")
        self.k = int(config.option("k", 64))
        if self.k < 1:
            raise ValueError(f"linformer: k must be >= 1, got {self.k}")
        self.max_len = int(config.max_len)
        self.proj_k = nn.Parameter(torch.empty(self.k, self.max_len))
        self.proj_v = nn.Parameter(torch.empty(self.k, self.max_len))
        # As the authors' fairseq code: a projected row then has about the norm of one key,
        # whatever max_len, so the softmax starts neither flat nor saturated.
        for weight in (self.proj_k, self.proj_v):
            nn.init.xavier_uniform_(weight, gain=1 / math.sqrt(2))
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor:
        if need_weights:
            raise NotImplementedError("linformer does not return weights (its spec says weights=False)")
        if is_causal:
            raise ValueError("linformer cannot be causal: each projected key mixes every position (causal=False)")
        length = k.shape[-2]
        if length > self.max_len:
            raise ValueError(
                f"linformer was built for max_len={self.max_len} but got key length {length}; "
                f"build it with AttentionConfig(max_len >= {length})"
            )
        keep = key_padding(attn_mask)
        if keep is not None:
            weight = keep[:, None, :, None].to(k.dtype)
            k, v = k * weight, v * weight
        # einsum, not a broadcast matmul: its backward would form a (B·H, k, L) gradient of E and F, then sum it.
        k_proj = torch.einsum("kl,bhld->bhkd", self.proj_k[:, :length].to(k.dtype), k)  # (B, H, k, D)
        v_proj = torch.einsum("kl,bhld->bhkd", self.proj_v[:, :length].to(v.dtype), v)
        # softmax(q k_projᵀ/√D) v_proj over the k projected keys: SDPA's fused kernel, never an unfused (Lq, k) pass.
        dropout = self.dropout.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k_proj, v_proj, dropout_p=dropout)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="linformer",
        build=LinformerAttention,
        summary="Softmax over keys/values projected along length to k rows by learned E, F (k × max_len)",
        complexity="O(L·k)",
        exact=False,
        causal=False,
        padding_mask=True,
        cross=True,  # any query length; key length at most max_len
        weights=False,
        needs_max_len=True,
        tolerance=None,  # learned projections do not approximate softmax at initialisation
        citation="Wang et al. 2020, Linformer: Self-Attention with Linear Complexity (arXiv:2006.04768)",
        options={"k": 64},
    ))
