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

This module also holds the softmax-plus-bias core that the other positional variants share:
:func:`biased_attention` (any dense bias; ``rope`` passes none) and :func:`offset_biased_attention`
(a bias given per offset j-i; ``alibi`` and ``relative``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.kv_cache import KVCache, softmax_over_cache
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
    while float_mask.dim() < 4:  # 4-D keeps CPU SDPA on its fused kernel (see offset_biased_attention)
        float_mask = float_mask.unsqueeze(0)
    mask = dense_mask(attn_mask, is_causal, lq, lk, q.device)
    if mask is not None:
        float_mask = float_mask.masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, dropout_p=dropout)


def offset_positions(lq: int, lk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The offsets j - i that an (Lq, Lk) score matrix holds, in order: -(Lq-1) … Lk-1 (Lq+Lk-1 of them)."""
    return torch.arange(-(lq - 1), lk, device=device)


def toeplitz_bias(offset_bias: torch.Tensor, lq: int, lk: int) -> torch.Tensor:
    """The dense (…, Lq, Lk) bias ``offset_bias[…, j - i + Lq - 1]`` from a per-offset (…, Lq+Lk-1) vector."""
    if offset_bias.shape[-1] != lq + lk - 1:
        raise ValueError(
            f"offset bias has {offset_bias.shape[-1]} offsets, expected Lq+Lk-1 = {lq + lk - 1} for Lq={lq}, "
            f"Lk={lk}; build it over offset_positions(Lq, Lk)"
        )
    return _hankel(offset_bias, lq, lk).flip(-1)


def _hankel(offset_bias: torch.Tensor, lq: int, lk: int) -> torch.Tensor:
    """A zero-copy view (…, Lq, Lk) whose [i, j'] is the bias of key Lk-1-j' for query i (keys reversed)."""
    flipped = offset_bias.flip(-1).contiguous()  # entry t = i + j' holds offset (Lk-1-j') - i = Lk-1-t
    lead = flipped.shape[:-1]
    lead_strides = flipped.stride()[:-1]
    return flipped.as_strided((*lead, lq, lk), (*lead_strides, 1, 1))


def offset_biased_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    offset_bias: torch.Tensor,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    dropout: float,
    need_weights: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q kᵀ/√D + bias + mask) v`` for a bias that depends only on the offset j - i.

    ``offset_bias`` is (H, Lq+Lk-1) (or broadcastable leading dims), entry ``o + Lq - 1`` the bias
    of offset ``o = j - i`` (see :func:`offset_positions`). Without a mask and without weights the
    bias reaches fused SDPA as a strided Hankel view over reversed keys: no (H, Lq, Lk) tensor.
    """
    lq, lk = q.shape[-2], k.shape[-2]
    offset_bias = offset_bias.to(q.dtype)
    if need_weights:
        return biased_attention(q, k, v, toeplitz_bias(offset_bias, lq, lk), attn_mask, is_causal, dropout, True)
    if is_causal:  # keys after the query (offset > 0) may not be attended: -inf on those offsets
        future = offset_positions(lq, lk, q.device) > 0
        offset_bias = offset_bias.masked_fill(future, float("-inf"))
    # 4-D on purpose: torch's CPU SDPA takes its fused kernel only for a 4-D mask (a 3-D one sends it to
    # the unfused math path, which builds the scores and scans the mask: 3-4x slower, O(H·L²) memory).
    float_mask = _hankel(offset_bias, lq, lk)
    while float_mask.dim() < 4:
        float_mask = float_mask.unsqueeze(0)  # a view: still no (H, Lq, Lk) tensor
    if attn_mask is not None:  # one dense float mask, like SDPA with a float bias and a bool mask
        float_mask = float_mask.masked_fill(~attn_mask.to(torch.bool).flip(-1), float("-inf"))
    return F.scaled_dot_product_attention(q, k.flip(-2), v.flip(-2), attn_mask=float_mask, dropout_p=dropout)


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

    def offset_bias(self, lq: int, lk: int) -> torch.Tensor:
        """The (H, Lq+Lk-1) bias -m_h·|o| for each offset o = j - i of :func:`offset_positions`: O(H·L)."""
        return -self.slopes[:, None] * offset_positions(lq, lk, self.slopes.device).abs()

    def bias(self, lq: int, lk: int) -> torch.Tensor:
        """The dense (H, Lq, Lk) bias -m_h·|i-j| (for inspection; forward never builds it unless asked for weights)."""
        return toeplitz_bias(self.offset_bias(lq, lk), lq, lk)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        bias = self.offset_bias(q.shape[-2], k.shape[-2])
        dropout = self.dropout if self.training else 0.0
        return offset_biased_attention(q, k, v, bias, attn_mask, is_causal, dropout, need_weights)

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """An empty KV cache (DESIGN.md, "Incremental decoding")."""
        return KVCache.empty(batch_size, device=device, dtype=dtype)

    def state_nbytes(self, state):
        """Bytes of the cached keys and values: linear in the context."""
        return state.nbytes

    def step(self, q, k, v, state):
        """The newest chunk (positions ``length … length+T-1``) over every cached key, biased by -m_h·|i-j|."""
        keys, values = state.append(k, v)
        t, total = q.shape[-2], keys.shape[-2]
        qpos = torch.arange(total - t, total, device=q.device)
        distance = (torch.arange(total, device=q.device)[None, :] - qpos[:, None]).abs()
        bias = -self.slopes.to(q.device)[:, None, None] * distance  # (H, T, total)
        dropout = self.dropout if self.training else 0.0
        return softmax_over_cache(q, keys, values, bias=bias, dropout=dropout), state


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
