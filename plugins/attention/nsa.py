"""nsa: Native Sparse Attention — compressed blocks, top-n selected blocks and a sliding window, gated.

Yuan et al. (DeepSeek-AI), "Native Sparse Attention: Hardware-Aligned and Natively Trainable
Sparse Attention", ACL 2025 (arXiv:2502.11089).

Keys are cut into blocks of b positions. Per head h and query t (scale 1/√D throughout)::

    compressed:  k̄_c, v̄_c = means of block c's keys, values
                 o^cmp_t = Σ_{c visible} softmax_c(q_t·k̄_c) v̄_c           (block c visible once complete: (c+1)b − 1 ≤ t)
    selected:    the n blocks with the largest compressed probability p_{t,c}, the first block and
                 the query's own and previous block always among them (importance 1);
                 o^slc_t = softmax over the tokens j ≤ t of those blocks
    window:      o^win_t = softmax over the w most recent keys
    o_t = g^cmp_t o^cmp_t + g^slc_t o^slc_t + g^win_t o^win_t,    g_t = σ(q_t W_g,h + b_g,h)  (3 gates)

What is computed from what: the three gates from the head's own **queries** by a per-head
linear map (``HeadwiseProjection``, D → 3); the paper computes them from the input by an MLP
with a sigmoid. Departures, all as flash-linear-attention's reference (``fla/ops/nsa/naive.py``)
does: the compression is a mean over each block (the paper learns an MLP with intra-block
positions over overlapping blocks, stride < block) and compression and selection share one
block size; selection is per head (the paper shares it within a GQA group, summing the group's
probabilities; here every head has its own keys). ``is_causal=False`` (an extension) makes every
non-empty block visible, forces the next block as well and uses a ±w/2 window.

Complexity: compression O(L·L/b·D), selection O(L·n·b·D) (the selected blocks' keys are gathered
per query), window O(L·w·D): sub-quadratic by the factor b, memory O(L·(L/b + n·b + w)).
Self-attention only, padding honoured (a block's mean is over its unpadded keys; an all-padded
block is never visible), no weights. Incremental decoding: a KV cache (every block may be
selected again later), each step running the three branches for its queries over the cache.
Options: ``block`` (b, 16), ``selected`` (n, 4), ``window`` (w, 64).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from attnbench_plugins.attention.local import LocalAttention
from torch import nn

import attnbench
from attnbench.nn.gate_projection import HeadwiseProjection
from attnbench.nn.kv_cache import KVCacheDecoding
from attnbench.nn.masks import key_padding


def _masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the allowed entries; a row with none allowed is all zeros (and NaN-free)."""
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * allowed.any(-1, keepdim=True)


def compress_blocks(k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None, block: int):
    """Block means of the unpadded keys and values: (B, H, nb, D) each, and (B, 1, nb) "has a key"."""
    b, h, length, _ = k.shape
    nb = math.ceil(length / block)
    kept = torch.ones(b, length, dtype=k.dtype, device=k.device) if keep is None else keep.to(k.dtype)
    kept = F.pad(kept, (0, nb * block - length)).view(b, 1, nb, block, 1)
    kb = F.pad(k, (0, 0, 0, nb * block - length)).unflatten(2, (nb, block))
    vb = F.pad(v, (0, 0, 0, nb * block - length)).unflatten(2, (nb, block))
    count = kept.sum(3)  # (B, 1, nb, 1)
    k_cmp = (kb * kept).sum(3) / count.clamp(min=1)
    v_cmp = (vb * kept).sum(3) / count.clamp(min=1)
    return k_cmp, v_cmp, count[..., 0] > 0


def compressed_attention(q, k_cmp, v_cmp, has_key, qpos, block, causal):
    """The compressed branch: output (B, H, Lq, D) and the block probabilities (B, H, Lq, nb)."""
    nb = k_cmp.shape[2]
    c = torch.arange(nb, device=q.device)
    visible = has_key[:, :, None, :]  # (B, 1, 1, nb)
    if causal:
        visible = visible & (((c + 1) * block - 1) <= qpos[:, None])
    probs = _masked_softmax((q @ k_cmp.transpose(-2, -1)) * q.shape[-1] ** -0.5, visible)
    return probs @ v_cmp, probs, visible


def select_blocks(probs, visible, qpos, block, selected, causal):
    """The top-``selected`` blocks per query (B, H, Lq, n) and whether each may be used."""
    nb = probs.shape[-1]
    c = torch.arange(nb, device=probs.device)
    qblk = (qpos // block)[:, None]
    forced = (c == 0) | (c == qblk) | (c == qblk - 1)
    if not causal:
        forced = forced | (c == qblk + 1)
    importance = torch.where(forced, torch.ones_like(probs), probs)
    index = importance.topk(min(selected, nb), dim=-1).indices
    usable = torch.gather((visible | forced).expand_as(probs), -1, index)
    return index, usable


def selected_attention(q, k, v, keep, index, usable, qpos, block, causal):
    """Softmax over the tokens of the selected blocks (those a query may see), gathered per query."""
    b, h, length, d = k.shape
    nb = math.ceil(length / block)
    kb = F.pad(k, (0, 0, 0, nb * block - length)).unflatten(2, (nb, block))
    vb = F.pad(v, (0, 0, 0, nb * block - length)).unflatten(2, (nb, block))
    bi = torch.arange(b, device=q.device).view(b, 1, 1, 1)
    hi = torch.arange(h, device=q.device).view(1, h, 1, 1)
    k_sel = kb[bi, hi, index].flatten(3, 4)  # (B, H, Lq, n·b, D)
    v_sel = vb[bi, hi, index].flatten(3, 4)
    pos = (index[..., None] * block + torch.arange(block, device=q.device)).flatten(3)  # (B, H, Lq, n·b)
    ok = usable.repeat_interleave(block, dim=-1) & (pos < length)
    if causal:
        ok = ok & (pos <= qpos[:, None])
    if keep is not None:
        kept = F.pad(keep, (0, nb * block - length))
        ok = ok & kept[torch.arange(b, device=q.device).view(b, 1, 1, 1), pos]
    scores = torch.einsum("bhqd,bhqmd->bhqm", q, k_sel) * d ** -0.5
    return torch.einsum("bhqm,bhqmd->bhqd", _masked_softmax(scores, ok), v_sel)


class NativeSparseAttention(KVCacheDecoding, nn.Module):
    """NSA's three gated branches; see the module docstring."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.block = int(config.option("block", 16))
        self.selected = int(config.option("selected", 4))
        self.window = int(config.option("window", 64))
        if self.block < 1 or self.selected < 1 or self.window < 1:
            raise ValueError(
                f"nsa: block, selected and window must be >= 1, got {self.block}, {self.selected}, {self.window}; "
                "pass e.g. options={'block': 16, 'selected': 4, 'window': 64}"
            )
        self.gates = HeadwiseProjection(config.num_heads, config.head_dim, 3)
        self.local = LocalAttention(dataclasses.replace(config, options={"window": self.window}))

    def branches(self, q, k, v, keep, qpos, causal):
        """The compressed and selected branches for queries at positions ``qpos`` over keys 0 … Lk−1."""
        k_cmp, v_cmp, has_key = compress_blocks(k, v, keep, self.block)
        o_cmp, probs, visible = compressed_attention(q, k_cmp, v_cmp, has_key, qpos, self.block, causal)
        index, usable = select_blocks(probs, visible, qpos, self.block, self.selected, causal)
        o_slc = selected_attention(q, k, v, keep, index, usable, qpos, self.block, causal)
        return o_cmp, o_slc

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        if need_weights:
            raise NotImplementedError("nsa does not return weights (its spec says weights=False)")
        length = q.shape[-2]
        if k.shape[-2] != length:
            raise ValueError(
                f"nsa is self-attention only (cross=False): query length {length} != key length {k.shape[-2]}"
            )
        keep = key_padding(attn_mask)
        qpos = torch.arange(length, device=q.device)
        o_cmp, o_slc = self.branches(q, k, v, keep, qpos, is_causal)
        o_win = self.local(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        g = torch.sigmoid(self.gates(q))
        return g[..., 0:1] * o_cmp + g[..., 1:2] * o_slc + g[..., 2:3] * o_win

    def attend_cache(self, q, keys, values):
        """The three branches for the newest chunk's queries over every cached key."""
        t = q.shape[-2]
        start = keys.shape[-2] - t
        qpos = torch.arange(start, start + t, device=q.device)
        o_cmp, o_slc = self.branches(q, keys, values, None, qpos, True)
        lo = max(0, start - self.window + 1)
        kpos = torch.arange(lo, start + t, device=q.device)
        near = (kpos <= qpos[:, None]) & (kpos > qpos[:, None] - self.window)
        scores = (q @ keys[..., lo:, :].transpose(-2, -1)) * q.shape[-1] ** -0.5
        o_win = _masked_softmax(scores, near) @ values[..., lo:, :]
        g = torch.sigmoid(self.gates(q))
        return g[..., 0:1] * o_cmp + g[..., 1:2] * o_slc + g[..., 2:3] * o_win


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="nsa",
        build=NativeSparseAttention,
        summary="Native sparse attention: gated mean-compressed blocks + top-n selected blocks + a sliding window",
        complexity="O(L²/b + L·(n·b + w))",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        tolerance=None,  # a sparse, gated mixture of three branches, not an approximation of softmax
        citation="Yuan et al. 2025, Native Sparse Attention (ACL, arXiv:2502.11089)",
        options={"block": 16, "selected": 4, "window": 64},
        incremental=True,
    ))
