"""Softmax attention plus a position bias: the core the positional variants share (alibi, relative, rope, mla).

* :func:`biased_attention` — ``softmax(q kᵀ/√D + bias + mask) v`` for any dense bias (or none):
  through fused SDPA, or written out when weights are wanted.
* :func:`offset_biased_attention` — the same for a bias that depends only on the offset j - i,
  given as one (H, Lq+Lk-1) vector (:func:`offset_positions`). A bias of the offset is a
  Toeplitz matrix; with the keys taken in reverse order it becomes a Hankel matrix,
  bias[h, i, j'] = b[h, i+j'], a zero-copy strided view of the per-offset vector (all strides
  positive). Fused SDPA takes that view as its float ``attn_mask``, so the (H, Lq, Lk) bias is
  never built; causality is -inf on the future offsets of the same vector.
* :class:`OffsetBiasedAttention` — a variant module around :func:`offset_biased_attention`,
  with incremental decoding over a KV cache: a subclass writes its bias per offset and per
  decoding chunk (alibi's -m_h·|i-j|, relative's learned buckets) and nothing else.

Queries sit at positions 0..Lq-1 and keys at 0..Lk-1 (top-left aligned, like ``is_causal``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.nn.kv_cache import KVCacheDecoding, softmax_over_cache
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


class OffsetBiasedAttention(KVCacheDecoding, nn.Module):
    """Softmax attention plus a bias of the offset j - i; a subclass writes :meth:`offset_bias` and :meth:`cache_bias`.

    ``forward`` runs :func:`offset_biased_attention` (no (H, Lq, Lk) bias unless weights or a mask
    need it); decoding steps the newest chunk over the KV cache with the bias of its positions.
    ``dropout`` is the probability on the attention weights, in training mode only.
    """

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout

    def offset_bias(self, lq: int, lk: int) -> torch.Tensor:
        """The (H, Lq+Lk-1) bias of each offset j - i of ``offset_positions(Lq, Lk)``."""
        raise NotImplementedError

    def cache_bias(self, t: int, total: int, device: torch.device) -> torch.Tensor:
        """The (H, T, total) bias of a decoding chunk: queries at ``total-T … total-1`` over keys ``0 … total-1``."""
        raise NotImplementedError

    def bias(self, lq: int, lk: int) -> torch.Tensor:
        """The dense (H, Lq, Lk) bias for queries at 0..Lq-1 and keys at 0..Lk-1 (for inspection; forward
        does not build it unless asked for weights)."""
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

    def attend_cache(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The newest chunk over every cached key, plus the bias of its positions."""
        bias = self.cache_bias(q.shape[-2], keys.shape[-2], q.device)
        dropout = self.dropout if self.training else 0.0
        return softmax_over_cache(q, keys, values, bias=bias, dropout=dropout)
