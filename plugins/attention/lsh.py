"""lsh: Reformer's locality-sensitive-hashing attention: softmax over the keys hashed near each query.

Kitaev, Kaiser and Levskaya, "Reformer: The Efficient Transformer", ICLR 2020 (arXiv:2001.04451).

Angular LSH by a random rotation R (D, b/2): ``h(x) = argmax([xR ; −xR])`` puts unit vectors
pointing the same way in the same of ``b`` buckets. The number of buckets is
``(Lq + Lk) / (2·bucket_size)`` rounded to an even number (1 when that is below 2): L/bucket_size
for self-attention, as in Reformer.

What it computes, per hash round (``n_hashes`` rounds with independent rotations):

* hash the normalised queries and the normalised keys with the same rotations;
* sort the queries by (bucket, position) and, separately, the keys by (bucket, position);
* cut each bucket's queries into sub-chunks of ``h = ⌊c/2⌋`` queries (``c = bucket_size``, h = 1
  when c = 1) and its keys into sub-chunks of ``h·Lk/Lq`` keys; query sub-chunk ``j`` of a
  bucket attends, by softmax of ``q·k/√D``, to key sub-chunks ``j − w + 1 … j`` of the same bucket,
  ``w = ⌈2c/h⌉`` (4): 2c keys, its chunk and the one before, as Reformer's look-one-back. The
  half-size unit halves the padding that aligning chunks to buckets costs (below). A bucket has
  as many key sub-chunks as query sub-chunks: keys of a higher rank in their bucket are seen by no
  query in that round. When ``bucket_size ≥ Lq`` the queries are one sub-chunk that sees all keys.

Rounds are combined by their log-sum-exp, ``o = Σ_r exp(lse_r − logsumexp_r lse_r) o_r``, without
Reformer's optional duplicate correction (its default, ``allow_duplicate_attention=True``): a key
found in N rounds counts N times, i.e. the output is the softmax of ``q·k/√D + log N_ij`` over the
pairs with N_ij > 0 (N_ij = the number of rounds in which key j is in query i's window). A query
with no key in any round gets a zero output.

How this differs from reformer-pytorch's ``LSHAttention`` (at the same ``bucket_size`` and
``n_hashes``, each query scores at most 2·bucket_size keys a round in both):

  * **Separate q and k.** Reformer shares Q and K (one vector per token, keys normalised, a token
    may not attend to itself). attnbench's contract gives separate q and k, so queries and keys are
    hashed and sorted as two lists; scores are the plain ``q·k/√D``; a query may attend to the key
    at its own position.
  * **Chunks aligned to buckets, queries paired with keys by rank.** Reformer cuts the one sorted
    list into fixed chunks that straddle buckets, and attends across buckets inside them. Then a
    token's chunk depends on how many tokens, future ones included, hashed into lower buckets, so
    causal LSH attention would leak the future through the chunk boundaries. Here a query's
    candidates are fixed by its rank among its bucket's queries and the keys' ranks among its
    bucket's keys: both depend only on earlier positions. Causal: keys after the query are masked.
    Padded keys take part in no bucket. The cost is padding: each bucket's last sub-chunk is partly
    empty (about a quarter chunk per bucket: ~1.25× the query slots of Reformer's unpadded chunks),
    paid back by sorting q and k rows once per round and reading the windows of 2c keys as an
    overlapping strided view (Reformer copies its look-back keys and values).
  * The first chunk of a bucket looks back at nothing (Reformer wraps around to the last chunk).
  * Rotations are drawn once per number of buckets from a generator seeded at build (option
    ``seed``), not afresh per call, so evaluation is deterministic.

With one bucket (a ``bucket_size`` at least the sequence) every query meets every key: exact
softmax attention, the tolerance the spec states. Cross (Lq ≠ Lk) is served. Time
O(n_hashes · L · bucket_size) plus an O(L log L) sort per round; no (Lq, Lk) tensor is built.
Options: ``n_hashes`` (2; the paper evaluates 1, 2, 4 and 8 rounds, more being closer to full
attention), ``bucket_size`` (32: queries per chunk and, on average, per bucket), ``seed`` (0).
:func:`lsh_dense_reference` computes the same output from the dense (Lq, Lk) count matrix N.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.masks import key_padding


def lsh_buckets(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH: bucket ids (B, H, r, N) of ``x`` (B, H, N, D) under ``rotations`` (r, D, b/2)."""
    proj = torch.einsum("bhnd,rdk->bhrnk", F.normalize(x, dim=-1), rotations.to(x.dtype))
    return torch.cat([proj, -proj], dim=-1).argmax(dim=-1)


def _sorted_ranks(bucket: torch.Tensor, n_buckets: int):
    """Sort one list by (bucket, position); each item's bucket and rank within it, in sorted order.

    Returns ``order`` (sorted index -> item), ``sorted_bucket``, ``rank`` and ``counts`` (…, n_buckets).
    """
    sorted_bucket, order = torch.sort(bucket, dim=-1, stable=True)  # stable: positions stay ascending
    counts = torch.zeros(*bucket.shape[:-1], n_buckets, dtype=torch.long, device=bucket.device)
    counts.scatter_add_(-1, bucket, torch.ones_like(bucket))
    first = counts.cumsum(-1) - counts
    rank = torch.arange(bucket.shape[-1], device=bucket.device) - first.gather(-1, sorted_bucket)
    return order, sorted_bucket, rank, counts


class LSHAttention(nn.Module):
    """Reformer LSH attention. Options: ``n_hashes`` (2), ``bucket_size`` (32), ``seed`` (0)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.n_hashes = int(config.option("n_hashes", 2))
        self.bucket_size = int(config.option("bucket_size", 32))
        self.seed = int(config.option("seed", 0))
        if self.n_hashes < 1:
            raise ValueError(f"lsh attention: n_hashes must be >= 1, got {self.n_hashes}; the paper uses 1 to 8")
        if self.bucket_size < 1:
            raise ValueError(f"lsh attention: bucket_size must be >= 1, got {self.bucket_size}; try 32 or 64")
        self.head_dim = config.head_dim
        self.dropout = nn.Dropout(config.dropout)
        self._rotations: dict[tuple[int, torch.device], torch.Tensor] = {}

    def n_buckets(self, items: int) -> int:
        """Buckets for ``items`` queries + keys: about ``bucket_size`` keys each, even, or 1."""
        b = items // (2 * self.bucket_size)
        return 1 if b < 2 else b + (b % 2)

    def chunk_sizes(self, lq: int, lk: int) -> tuple[int, int, int]:
        """(queries per sub-chunk h, keys per sub-chunk, sub-chunks per window w).

        A chunk is ``c = bucket_size`` queries; it is cut in two sub-chunks of ``h = ⌊c/2⌋`` (1 when
        c = 1), and a query sub-chunk's window is the ``w = ⌈2c/h⌉`` key sub-chunks ending at its own:
        2c keys, its chunk and the one before, as in Reformer. Halving the unit halves the padding
        that aligning chunks to buckets costs. Key sub-chunks hold ``h·Lk/Lq`` keys. When
        ``bucket_size ≥ Lq`` all queries are one sub-chunk whose window is all Lk keys.
        """
        if self.bucket_size >= lq:  # one chunk holds every query and sees every key
            return lq, lk, 1
        h = max(1, self.bucket_size // 2)
        return h, math.ceil(h * lk / lq), math.ceil(2 * self.bucket_size / h)

    def rotations(self, n_buckets: int, device: torch.device) -> torch.Tensor:
        """(n_hashes, D, n_buckets/2) Gaussian rotations, fixed per bucket count by the build seed."""
        key = (n_buckets, device)
        if key not in self._rotations:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + n_buckets)
            rot = torch.randn(self.n_hashes, self.head_dim, max(1, n_buckets // 2), generator=g)
            self._rotations[key] = rot.to(device)
        return self._rotations[key]

    def hash(self, q: torch.Tensor, k: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Bucket ids (B, H, r, Lq) and (B, H, r, Lk), and the bucket count; padded keys get bucket ``nb``."""
        b, h, lq, _ = q.shape
        lk, r = k.shape[-2], self.n_hashes
        nb = self.n_buckets(lq + lk)
        if nb == 1:
            qb = torch.zeros(b, h, r, lq, dtype=torch.long, device=q.device)
            kb = torch.zeros(b, h, r, lk, dtype=torch.long, device=q.device)
        else:
            rot = self.rotations(nb, q.device)
            qb, kb = lsh_buckets(q, rot), lsh_buckets(k, rot)
        if keep is not None:
            kb = kb.masked_fill(~keep[:, None, None, :], nb)  # a bucket no query is in
        return qb, kb, nb

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
            raise NotImplementedError("lsh attention does not return weights (its spec says weights=False)")
        b, h, lq, d = q.shape
        lk, dv, r, dev = k.shape[-2], v.shape[-1], self.n_hashes, q.device
        cq, ck, w = self.chunk_sizes(lq, lk)
        keep = key_padding(attn_mask)
        keep = None if keep is None else keep.expand(b, lk)
        with torch.no_grad():
            # Every (batch, head, round) is one layout ℓ; layouts are laid one after another in one flat
            # list of sub-chunks, so none pays for another's padding.
            qb, kb, nb = self.hash(q, k, keep)
            qb, kb = qb.flatten(0, 2), kb.flatten(0, 2)  # (P, Lq), (P, Lk), P = B·H·r
            q_order, q_sb, q_rank, q_count = _sorted_ranks(qb, nb + 1)
            k_order, k_sb, k_rank, _ = _sorted_ranks(kb, nb + 1)
            chunks = (q_count + cq - 1) // cq  # sub-chunks per bucket, set by its queries (0: padding bucket)
            per_layout = chunks.sum(-1)
            n_chunks = int(per_layout.sum())  # the one host sync: the flat list's length
            first = (per_layout.cumsum(0) - per_layout)[:, None] + chunks.cumsum(-1) - chunks  # bucket's 1st chunk
            layout = torch.arange(qb.shape[0], device=dev)[:, None]
            bucket_id = layout * (nb + 1) + torch.arange(nb + 1, device=dev)  # unique across layouts
            src_q = (layout // r) * lq + q_order  # row of q flattened to (B·H·Lq, D)
            src_k = (layout // r) * lk + k_order
            q_slot = first.gather(-1, q_sb) * cq + q_rank
            k_chunk = k_rank // ck
            placed = k_chunk < chunks.gather(-1, k_sb)  # keys past the bucket's last query sub-chunk: unseen
            # Key sub-chunk G is stored at G + w − 1: query sub-chunk G's window is stored sub-chunks G … G+w−1.
            k_slots = (n_chunks + w - 1) * ck
            k_slot = torch.where(placed, (first.gather(-1, k_sb) + k_chunk + w - 1) * ck + k_rank % ck, k_slots)
            q_at = _scatter_flat(n_chunks * cq, q_slot, src_q, b * h * lq)  # slot -> row; the last row is zero
            k_at = _scatter_flat(k_slots + 1, k_slot, src_k, b * h * lk)[:-1]
            k_bucket = _scatter_flat(k_slots + 1, k_slot, bucket_id.gather(-1, k_sb), -1)[:-1]
            q_bucket = _scatter_flat(n_chunks, q_slot // cq, bucket_id.gather(-1, q_sb), -1)  # per query sub-chunk
            allowed = _windows(k_bucket, n_chunks, ck, w) == q_bucket[:, None]  # (n, W): same layout and bucket
            allowed = allowed[:, None, :]
            if is_causal:  # key j visible to query i iff j <= i
                q_pos = (q_at % lq).view(n_chunks, cq)
                k_pos = _windows(k_at % max(lk, 1), n_chunks, ck, w)
                allowed = allowed & (k_pos[:, None, :] <= q_pos[:, :, None])

        q_rows = F.pad((q * d ** -0.5).flatten(0, 2), (0, 0, 0, 1))  # a zero row for empty slots
        k_rows = F.pad(k.flatten(0, 2), (0, 0, 0, 1))[k_at]  # (slots, D): keys sorted once per round
        v_rows = F.pad(v.flatten(0, 2), (0, 0, 0, 1))[k_at]
        k_blocks = k_rows.view(n_chunks + w - 1, ck, d)
        v_blocks = v_rows.view(n_chunks + w - 1, ck, dv)
        scores = WindowedMatmul.apply(q_rows[q_at].view(n_chunks, cq, d), k_blocks, w, True)  # (n, cq, w·ck)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        # softmax and log-sum-exp with one pass of exp: lse = max − log(max p), max p ≥ 1/(w·ck), so
        # well conditioned. About finfo.min where no key is allowed.
        weights = torch.softmax(scores, dim=-1)
        lse = LogSumExpOfSoftmax.apply(scores, weights)  # (n, cq)
        out = WindowedMatmul.apply(self.dropout(weights), v_blocks, w, False)  # (n, cq, Dv)

        # Back to query order, then the rounds by their log-sum-exp.
        slot_of = torch.empty_like(q_slot).scatter_(-1, q_order, q_slot)  # (P, Lq)
        out = out.view(-1, dv)[slot_of].view(b, h, r, lq, dv)
        lse = lse.flatten()[slot_of].view(b, h, r, lq)
        found = lse.amax(dim=2) > torch.finfo(q.dtype).min / 2  # (B, H, Lq): some key in some round
        round_w = torch.softmax(lse, dim=2)
        return torch.einsum("bhrl,bhrld->bhld", round_w, out) * found[..., None]


def _scatter_flat(size: int, index: torch.Tensor, src: torch.Tensor, fill: int) -> torch.Tensor:
    """A flat int64 list of ``size`` entries, ``fill`` except ``out[index] = src``."""
    out = torch.full((size,), fill, dtype=torch.long, device=index.device)
    return out.scatter_(0, index.flatten(), src.flatten())


class LogSumExpOfSoftmax(torch.autograd.Function):
    """``logsumexp(s)`` read off ``p = softmax(s)``: at the row's maximum p = exp(max − lse).

    Saves a second pass of exp over the scores; the backward is the log-sum-exp's own, ``grad · p``
    (autograd through the two maxima would build score-sized comparison masks instead).
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(p)
        return scores.amax(dim=-1) - p.amax(dim=-1).log()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        return grad[..., None] * p, None


class WindowedMatmul(torch.autograd.Function):
    """``a @ windowᵀ`` (keys) or ``a @ window`` (values), window g = stored blocks g … g+w−1, never copied.

    ``blocks`` (n + w − 1, ck, E) is contiguous; the windows are an overlapping strided view of it, which
    one batched product reads in place. The backward folds the windows' gradients back block by block
    (autograd's own backward of an overlapping view would build an int64 index as large as the windows;
    the windows' gradient itself is w times the blocks, a transient of the backward).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, blocks: torch.Tensor, w: int, keys: bool) -> torch.Tensor:
        ctx.save_for_backward(a, blocks)
        ctx.w, ctx.keys = w, keys
        win = _windows(blocks.flatten(0, 1), a.shape[0], blocks.shape[1], w)
        return torch.bmm(a, win.transpose(1, 2) if keys else win)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        a, blocks = ctx.saved_tensors
        n, ck, w = a.shape[0], blocks.shape[1], ctx.w
        win = _windows(blocks.flatten(0, 1), n, ck, w)
        grad_a = torch.bmm(grad, win) if ctx.keys else torch.bmm(grad, win.transpose(1, 2))
        # One product for every window's gradient (n, w·ck, E), then folded: window g's part t is block g + t.
        grad_win = torch.bmm(grad.transpose(1, 2), a) if ctx.keys else torch.bmm(a.transpose(1, 2), grad)
        grad_win = grad_win.view(n, w, ck, -1)
        grad_blocks = torch.zeros_like(blocks)
        for t in range(w):
            grad_blocks[t:t + n] += grad_win[:, t]
        return grad_a, grad_blocks, None, None


def _windows(rows: torch.Tensor, n_chunks: int, ck: int, w: int) -> torch.Tensor:
    """A zero-copy view (n, w·ck, …) of stored key sub-chunks: window G is stored sub-chunks G … G+w−1."""
    inner = rows.shape[1:]
    strides = rows.stride()
    return rows.as_strided((n_chunks, w * ck, *inner), (ck * strides[0], *strides))


def lsh_dense_reference(module: LSHAttention, q, k, v, attn_mask=None, causal: bool = False) -> torch.Tensor:
    """The plain formula (no chunks in memory): ``softmax(q·k/√D + log N)`` over the pairs with N > 0.

    ``N[b, h, i, j]`` counts the rounds in which key j lies in query i's window, rebuilt from the
    definition above with dense (Lq, Lk) comparisons of bucket and chunk indices.
    """
    b, h, lq, d = q.shape
    lk = k.shape[-2]
    cq, ck, w = module.chunk_sizes(lq, lk)
    keep = key_padding(attn_mask)
    qb, kb, nb = module.hash(q, k, None if keep is None else keep.expand(b, lk))
    counts = torch.zeros(b, h, lq, lk)
    for r in range(module.n_hashes):
        q_rank = _rank_in_bucket(qb[:, :, r])
        k_rank = _rank_in_bucket(kb[:, :, r])
        q_chunks = (torch.zeros(b, h, nb + 1, dtype=torch.long).scatter_add_(-1, qb[:, :, r], torch.ones_like(qb[:, :, r]))
                    + cq - 1) // cq
        j_q = q_rank // cq  # the query's sub-chunk in its bucket
        j_k = k_rank // ck
        same = qb[:, :, r, :, None] == kb[:, :, r, None, :]
        seen = q_chunks.gather(-1, kb[:, :, r])[..., None, :] > j_k[..., None, :]  # key placed at all
        behind = j_q[..., :, None] - j_k[..., None, :]
        near = (behind >= 0) & (behind < w)
        pair = same & seen & near
        if causal:
            pair &= torch.arange(lk)[None, :] <= torch.arange(lq)[:, None]
        counts += pair
    scores = q @ k.transpose(-2, -1) / math.sqrt(d) + counts.clamp(min=1).log()
    scores = scores.masked_fill(counts == 0, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a query with no pair: zero output
    return weights @ v


def _rank_in_bucket(bucket: torch.Tensor) -> torch.Tensor:
    """Each item's rank among the earlier items of its bucket, in position order (dense (L, L) count)."""
    length = bucket.shape[-1]
    earlier = torch.ones(length, length, dtype=torch.bool).tril(-1)
    return ((bucket[..., :, None] == bucket[..., None, :]) & earlier).sum(-1)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="lsh",
        build=LSHAttention,
        summary="Reformer LSH attention: angular hashing of q and k, softmax within bucket-aligned chunk pairs",
        complexity="O(L·log L)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=True,
        weights=False,
        # One bucket and one chunk: every query meets every key, i.e. softmax attention.
        tolerance=1e-5,
        tolerance_options={"bucket_size": 10_000},
        citation="Kitaev et al. 2020, Reformer: The Efficient Transformer (ICLR, arXiv:2001.04451)",
        not_incremental="its bucket count, (Lq+Lk)/(2·bucket_size), and the sorting of every position into "
        "bucket chunks depend on the whole sequence",
        options={"n_hashes": 2, "bucket_size": 32, "seed": 0},
    ))
