"""alibi: softmax attention with per-head linear distance penalties -m_h·|i-j| added to the logits.

Press, Smith & Lewis, "Train Short, Test Long: Attention with Linear Biases Enables Input Length
Extrapolation", ICLR 2022.

The paper's causal bias is -m_h·(i-j) for j <= i; on every position a causal query may attend
that equals -m_h·|i-j|, so one symmetric bias serves causal and bidirectional attention.
Queries sit at positions 0..Lq-1 and keys at 0..Lk-1 (top-left aligned, like ``is_causal``).

Cost: O(L²·D) time like softmax attention, O(H·L) extra memory without a padding mask. A bias
that depends only on the offset j-i is a Toeplitz matrix; with the keys taken in reverse order it
becomes a Hankel matrix, bias[h, i, j'] = b[h, i+j'], which is a zero-copy strided view of the
(H, Lq+Lk-1) per-offset vector (all strides positive). Fused SDPA takes that view as its float
``attn_mask``, so the (H, Lq, Lk) bias is never built; causality is -inf on the future offsets of
the same vector. A padding or arbitrary mask is combined into one dense float mask (as SDPA with a
float bias would need anyway), and ``need_weights=True`` takes the written-out path.

The softmax-plus-bias core that the positional variants share (``alibi``, ``relative``, ``rope``,
``mla``) lives in :mod:`attnbench.nn.biased_attention`; this module writes only alibi's bias.
"""

from __future__ import annotations

import math

import torch

import attnbench
from attnbench.nn.biased_attention import OffsetBiasedAttention, offset_positions


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


class ALiBiAttention(OffsetBiasedAttention):
    """Softmax attention with the fixed, non-learned bias -m_h·|i-j| per head."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config.dropout)
        self.register_buffer("slopes", alibi_slopes(config.num_heads), persistent=False)

    def offset_bias(self, lq: int, lk: int) -> torch.Tensor:
        """The (H, Lq+Lk-1) bias -m_h·|o| for each offset o = j - i of :func:`offset_positions`: O(H·L)."""
        return -self.slopes[:, None] * offset_positions(lq, lk, self.slopes.device).abs()

    def cache_bias(self, t: int, total: int, device: torch.device) -> torch.Tensor:
        """-m_h·|i-j| for a decoding chunk: queries at ``total-T … total-1``, keys ``0 … total-1``, (H, T, total)."""
        qpos = torch.arange(total - t, total, device=device)
        distance = (torch.arange(total, device=device)[None, :] - qpos[:, None]).abs()
        return -self.slopes.to(device)[:, None, None] * distance


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
        incremental=True,
    ))
