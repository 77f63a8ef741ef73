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

Complexity: compression O(L·L/b·D), selection O(L·n·b·D), window O(L·w·D): sub-quadratic by
the factor b, memory O(L·(L/b + n·b + w)). How it is computed (``fused``, the default): the
block probabilities and the top-n choice exactly as written out (bit for bit, so ties fall the
same way); the selected branch through ``F.scaled_dot_product_attention``, each group of G (32)
consecutive queries attending the union of its queries' U selected blocks (n ≤ U ≤ min(L/b, G·n),
gathered once per group: O(L·U·b·D)), and when every block is selected (n ≥ L/b, as at MQAR's
quick L 64, b 16, n 4) simply as softmax attention over every key a query may see; the
compressed branch's gate applied to its (L, L/b) probabilities. ``fused = False`` runs the
written-out reference (every query's n·b keys gathered, (B, H, L, n·b, D)); a test holds the
two equal in outputs and gradients.
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


def compress_blocks_fast(k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None, block: int):
    """:func:`compress_blocks` bit for bit (the top-n choice sees the same probabilities), without
    the multiplication by ones (or the zero padding) when nothing is padded."""
    if keep is not None:
        return compress_blocks(k, v, keep, block)
    b, h, length, _ = k.shape
    nb = math.ceil(length / block)
    kept = F.pad(torch.ones(b, length, dtype=k.dtype, device=k.device), (0, nb * block - length))
    count = kept.view(b, 1, nb, block, 1).sum(3)  # (B, 1, nb, 1)
    if nb * block == length:
        kb, vb = k.contiguous().unflatten(2, (nb, block)), v.contiguous().unflatten(2, (nb, block))
    else:
        kb = F.pad(k, (0, 0, 0, nb * block - length)).unflatten(2, (nb, block))
        vb = F.pad(v, (0, 0, 0, nb * block - length)).unflatten(2, (nb, block))
    return kb.sum(3) / count.clamp(min=1), vb.sum(3) / count.clamp(min=1), count[..., 0] > 0


def compressed_probs(q, k_cmp, has_key, qpos, block, causal):
    """The compressed branch's block probabilities (B, H, Lq, nb) and which blocks are visible."""
    nb = k_cmp.shape[2]
    c = torch.arange(nb, device=q.device)
    visible = has_key[:, :, None, :]  # (B, 1, 1, nb)
    if causal:
        visible = visible & (((c + 1) * block - 1) <= qpos[:, None])
    return _masked_softmax((q @ k_cmp.transpose(-2, -1)) * q.shape[-1] ** -0.5, visible), visible


def compressed_attention(q, k_cmp, v_cmp, has_key, qpos, block, causal):
    """The compressed branch: output (B, H, Lq, D) and the block probabilities (B, H, Lq, nb)."""
    probs, visible = compressed_probs(q, k_cmp, has_key, qpos, block, causal)
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
    """Softmax over the tokens of the selected blocks (those a query may see), gathered per query.

    The reference form of the selected branch: every query's n·b keys and values copied out
    (B, H, Lq, n·b, D). :func:`selected_attention_fused` computes the same through SDPA."""
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


def _softmax_attention(q, k, v, keep, qpos, causal):
    """Softmax attention over the keys each query may see (j ≤ its position when causal, j unpadded);
    a query that may see none gives 0."""
    nq, length = q.shape[-2], k.shape[-2]
    if keep is None:
        if not causal:
            return F.scaled_dot_product_attention(q, k, v)
        if nq == length:  # qpos is 0 … L−1: SDPA's own (top-left) causal mask
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    allowed = torch.ones(1, 1, 1, length, dtype=torch.bool, device=q.device) if keep is None else keep[:, None, None, :]
    if causal:
        allowed = allowed & (torch.arange(length, device=q.device) <= qpos[:, None])
    empty = ~allowed.any(-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | empty)
    return out.masked_fill(empty, 0.0)


def _bucket_widths(width: torch.Tensor, nb: int) -> list[int]:
    """At most two key widths (in blocks) to pad the query groups' unions to: the widest, and
    below it the one that minimises Σ padded width (a few wide groups do not widen every group),
    if that saves at least an eighth of padding every group to the widest (a second SDPA call
    and its gathers are not free)."""
    counts = torch.bincount(width.cpu(), minlength=nb + 1).tolist()
    widest = max(w for w, c in enumerate(counts) if c)
    best, best_cost, below = widest, None, 0
    for w, c in enumerate(counts):
        below += c
        cost = below * w + (len(width) - below) * widest
        if c and (best_cost is None or cost < best_cost):
            best, best_cost = w, cost
    return [best, widest] if best < widest and 8 * best_cost <= 7 * len(width) * widest else [widest]


#: Queries per group in :func:`selected_attention_fused`: a group gathers the union of its queries'
#: blocks once. Fewer queries give smaller unions but more, smaller SDPA tiles; 32 (one query tile
#: of torch's CPU flash kernel at this length) measured fastest on CPU at L 512–1k (2–16 slower).
GROUP = 32


def selected_attention_fused(q, k, v, keep, index, usable, qpos, block, causal, group=None):
    """:func:`selected_attention` through ``F.scaled_dot_product_attention``, nothing gathered per query.

    The selection becomes a mask: query t may see key j iff j's block is among t's usable
    selected blocks (and j ≤ t when causal, j unpadded). Queries are grouped by ``group``
    (:data:`GROUP`) consecutive positions, and a group attends the union of its queries'
    selected blocks, gathered once per group (not once per query). The unions are padded (with
    blocks the mask hides) to one of at most two widths, so the few groups whose queries chose
    many different blocks do not widen the rest. With every block selected the branch is the
    softmax over every key a query may see, computed as such. A query with nothing to see (all
    its keys padded) gives 0, as in the reference.
    """
    batch, heads, length, dim = k.shape
    nq = q.shape[-2]
    nb = math.ceil(length / block)
    device = q.device
    if index.shape[-1] == nb:  # every block selected: the softmax over every key the query may see
        return _softmax_attention(q, k, v, keep, qpos, causal)
    group = GROUP if group is None else group
    groups = math.ceil(nq / group)
    extra = groups * group - nq
    sel = torch.zeros(*index.shape[:-1], nb, dtype=torch.bool, device=device).scatter_(-1, index, usable)
    sel = F.pad(sel, (0, 0, 0, extra)).view(batch * heads * groups, group, nb)  # per group of queries
    union = sel.any(1)  # (N, nb): the blocks some query of the group selected
    width = union.sum(-1)
    qg = F.pad(q, (0, 0, 0, extra)).reshape(-1, group, dim)  # (N, G, D)
    qpos_g = F.pad(qpos, (0, extra)).view(groups, group)
    kb = F.pad(k, (0, 0, 0, nb * block - length)).reshape(batch * heads * nb, block * dim)
    vb = F.pad(v, (0, 0, 0, nb * block - length)).reshape(batch * heads * nb, block * dim)
    kept = None if keep is None else F.pad(keep, (0, nb * block - length))
    out, lower = None, 0
    for bucket in _bucket_widths(width, nb):
        ids = ((width > lower) & (width <= bucket)).nonzero()[:, 0]
        lower = bucket
        whole = len(ids) == len(width)
        ublk = (union if whole else union[ids]).float().topk(bucket, dim=-1, sorted=False).indices  # (n, U)
        bh = (torch.arange(len(width), device=device) if whole else ids) // groups
        flat = (bh[:, None] * nb + ublk).flatten()
        # F.embedding: its backward (a sorted accumulation) is cheaper than index_select's scatter
        kg = F.embedding(flat, kb).view(-1, bucket * block, dim)
        vg = F.embedding(flat, vb).view(-1, bucket * block, dim)
        # (n, b, U) -> (n, b, U·b): whether each query selected each gathered block, per key
        allowed = (sel if whole else sel[ids]).gather(-1, ublk[:, None, :].expand(-1, group, -1))
        allowed = allowed.repeat_interleave(block, dim=-1)
        kpos = (ublk[..., None] * block + torch.arange(block, device=device)).flatten(-2)  # (n, U·b)
        ok = kpos < length
        if kept is not None:
            ok = ok & kept[(bh // heads)[:, None], kpos]
        allowed = allowed & ok[:, None, :]
        if causal:
            qpos_n = qpos_g.repeat(batch * heads, 1) if whole else qpos_g[ids % groups]  # (n, b)
            allowed = allowed & (kpos[:, None, :] <= qpos_n[..., None])
        # A row with nothing allowed (a padded row of the last group, or a query whose keys are all
        # padded) sees every key instead (no NaN in either pass) and its output is zeroed.
        empty = ~allowed.any(-1, keepdim=True)
        o = F.scaled_dot_product_attention((qg if whole else qg[ids])[None], kg[None], vg[None],
                                           attn_mask=(allowed | empty)[None])[0].masked_fill(empty, 0.0)
        if whole:
            out = o
        else:
            out = (qg.new_zeros(qg.shape) if out is None else out).index_copy(0, ids, o)
    return out.view(batch, heads, groups * group, dim)[:, :, :nq]


class NativeSparseAttention(KVCacheDecoding, nn.Module):
    """NSA's three gated branches; see the module docstring."""

    #: The fast path (:meth:`mix`: the selected branch through SDPA, the gates folded into the
    #: compressed branch's probabilities); False computes everything as :meth:`reference_mix`,
    #: with the per-query gathers of :func:`selected_attention` (tests, comparisons).
    fused: bool = True

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
        """The compressed and selected branches for queries at positions ``qpos`` over keys 0 … Lk−1
        (the reference form)."""
        k_cmp, v_cmp, has_key = compress_blocks(k, v, keep, self.block)
        o_cmp, probs, visible = compressed_attention(q, k_cmp, v_cmp, has_key, qpos, self.block, causal)
        index, usable = select_blocks(probs, visible, qpos, self.block, self.selected, causal)
        o_slc = selected_attention(q, k, v, keep, index, usable, qpos, self.block, causal)
        return o_cmp, o_slc

    def reference_mix(self, q, k, v, keep, qpos, causal, o_win):
        """The gated sum of the three branches, each written out (``o_win`` the window branch's output)."""
        o_cmp, o_slc = self.branches(q, k, v, keep, qpos, causal)
        g = torch.sigmoid(self.gates(q))
        return g[..., 0:1] * o_cmp + g[..., 1:2] * o_slc + g[..., 2:3] * o_win

    def mix(self, q, k, v, keep, qpos, causal, o_win):
        """:meth:`reference_mix` computed fast: the same block probabilities and top-n choice, the
        selected branch by :func:`selected_attention_fused`, the compressed branch's gate applied
        to its (Lq, nb) probabilities rather than its (Lq, D) output, the rest by two addcmuls."""
        if not self.fused:
            return self.reference_mix(q, k, v, keep, qpos, causal, o_win)
        k_cmp, v_cmp, has_key = compress_blocks_fast(k, v, keep, self.block)
        probs, visible = compressed_probs(q, k_cmp, has_key, qpos, self.block, causal)
        if self.selected >= k_cmp.shape[2]:  # every block selected: no choice to make
            o_slc = _softmax_attention(q, k, v, keep, qpos, causal)
        else:
            index, usable = select_blocks(probs, visible, qpos, self.block, self.selected, causal)
            o_slc = selected_attention_fused(q, k, v, keep, index, usable, qpos, self.block, causal)
        g = torch.sigmoid(self.gates(q))
        out = (g[..., 0:1] * probs) @ v_cmp
        return torch.addcmul(torch.addcmul(out, g[..., 1:2], o_slc), g[..., 2:3], o_win)

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
        o_win = self.local(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.mix(q, k, v, keep, qpos, is_causal, o_win)

    def attend_cache(self, q, keys, values):
        """The three branches for the newest chunk's queries over every cached key."""
        t = q.shape[-2]
        start = keys.shape[-2] - t
        qpos = torch.arange(start, start + t, device=q.device)
        lo = max(0, start - self.window + 1)
        kpos = torch.arange(lo, start + t, device=q.device)
        near = (kpos <= qpos[:, None]) & (kpos > qpos[:, None] - self.window)
        scores = (q @ keys[..., lo:, :].transpose(-2, -1)) * q.shape[-1] ** -0.5
        o_win = _masked_softmax(scores, near) @ values[..., lo:, :]
        return self.mix(q, keys, values, None, qpos, True, o_win)

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
