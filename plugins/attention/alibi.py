"""alibi: softmax attention with per-head linear distance penalties -m_h·|i-j| added to the logits.

Press, Smith & Lewis, "Train Short, Test Long: Attention with Linear Biases Enables Input Length
Extrapolation", ICLR 2022.

The paper's causal bias is -m_h·(i-j) for j <= i; on every position a causal query may attend
that equals -m_h·|i-j|, so one symmetric bias serves causal and bidirectional attention.
Queries sit at positions 0..Lq-1 and keys at 0..Lk-1 (top-left aligned, like ``is_causal``).
This module also holds :func:`biased_attention`, the softmax-plus-bias core that the other
positional variants (``relative``, ``rope``) share.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.masks import dense_mask


def biased_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    dropout: float,
    need_weights: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q kᵀ/√D + bias + mask) v``: through fused SDPA, or written out when weights are wanted.

    ``bias`` is a float tensor broadcastable to (B, H, Lq, Lk); masked positions get -inf.
    ``dropout`` is the probability to apply (the caller passes 0.0 in eval mode).
    """
    lq, lk = q.shape[-2], k.shape[-2]
    bias = None if bias is None else bias.to(q.dtype)
    if need_weights:
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if bias is not None:
            scores = scores + bias
        mask = dense_mask(attn_mask, is_causal, lq, lk, q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return F.dropout(weights, dropout, training=dropout > 0) @ v, weights
    if bias is None:
        if attn_mask is not None and is_causal:  # SDPA accepts a mask or is_causal, not both
            attn_mask, is_causal = dense_mask(attn_mask, True, lq, lk, q.device), False
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal)
    # SDPA adds a float attn_mask to the scaled logits: exactly a bias, with -inf where masked.
    float_mask = bias
    mask = dense_mask(attn_mask, is_causal, lq, lk, q.device)
    if mask is not None:
        float_mask = float_mask.masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, dropout_p=dropout)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The paper's head slopes: for n heads (a power of 2) the geometric sequence 2^(-8/n), 2^(-16/n)….

    Otherwise, as in the reference code: the slopes for the closest smaller power of 2, then
    every other slope of the sequence for twice that many heads.
    """

    def power_of_2(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if num_heads & (num_heads - 1) == 0:
        slopes = power_of_2(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_2(closest) + power_of_2(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBiAttention(nn.Module):
    """Softmax attention with the fixed, non-learned bias -m_h·|i-j| per head."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.dropout = config.dropout
        self.register_buffer("slopes", alibi_slopes(config.num_heads), persistent=False)

    def bias(self, lq: int, lk: int) -> torch.Tensor:
        """The (H, Lq, Lk) bias -m_h·|i-j|, built on the fly: O(H·Lq·Lk), like the logits it is added to."""
        i = torch.arange(lq, device=self.slopes.device)[:, None]
        j = torch.arange(lk, device=self.slopes.device)[None, :]
        return -self.slopes[:, None, None] * (i - j).abs()

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        bias = self.bias(q.shape[-2], k.shape[-2])
        dropout = self.dropout if self.training else 0.0
        return biased_attention(q, k, v, bias, attn_mask, is_causal, dropout, need_weights)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="alibi",
        build=ALiBiAttention,
        summary="Softmax attention with per-head linear distance biases -m_h·|i-j| (no position embeddings)",
        complexity="O(L^2)",
        exact=False,
        arbitrary_mask=True,
        weights=True,
        citation="Press et al. 2022, Train Short, Test Long: Attention with Linear Biases (ICLR)",
    ))
