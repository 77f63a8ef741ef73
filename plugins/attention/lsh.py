"""lsh: Reformer's locality-sensitive-hashing attention: softmax over the keys hashed near each query.

Kitaev, Kaiser and Levskaya, "Reformer: The Efficient Transformer", ICLR 2020 (arXiv:2001.04451).

Angular LSH by a random rotation R (D, b/2): ``h(x) = argmax([xR ; −xR])`` puts unit vectors
pointing the same way in the same of ``b`` buckets. Reformer shares Q and K, so it hashes one
vector per token. attnbench's contract gives separate q and k, so this module hashes the
*normalised* queries and the normalised keys with the same rotations and sorts both kinds of
items together by (bucket, position): a query then meets the keys that share its bucket.
Scores are the ordinary ``q·k/√D`` (not the shared-QK cosine), and a query may attend to the key
at its own position (Reformer forbids that only because with shared QK it would dominate).

Per hash round: sort by (bucket, position); cut the sorted items into chunks of ``2·bucket_size``
items; each query attends, by softmax, to the keys of its bucket in its own chunk and the
previous one. Rounds (``n_hashes``) use independent rotations and are combined by their
log-sum-exp, ``o = Σ_r exp(lse_r − logsumexp_r lse_r) o_r``, with each score lowered by
log N_ij (the number of rounds in which i and j met), as the paper's multi-round formula does
so that a pair found twice is not counted twice. The number of buckets is
``(Lq + Lk) / (2·bucket_size)`` rounded to an even number (1 when that is below 2).

Two deliberate departures, both needed for an honest contract:
  * Chunks are aligned to bucket starts (each bucket is padded to a whole number of chunks).
    With the paper's plain chunking a token's chunk depends on how many tokens, future ones
    included, fell into lower buckets, so causal LSH attention would leak the future through the
    chunk boundaries; aligned, a query's candidates depend only on earlier items of its bucket.
    For the same reason padded keys are hashed into a bucket of their own.
  * The first chunk of a bucket looks back at nothing (Reformer wraps around to the last chunk).

Rotations are drawn once per number of buckets from a generator seeded at build (option
``seed``), not afresh per batch as in the paper, so evaluation is deterministic.
Causal: keys after the query are masked inside the chunks. Cross (Lq ≠ Lk) is served: the two
lengths simply contribute different numbers of items. Not exact; with one bucket (a
``bucket_size`` at least the sequence) and one chunk it is exact softmax attention, which is the
tolerance the spec states. Time O(n_hashes · L · bucket_size) plus an O(L log L) sort.
Options: ``n_hashes`` (2; the paper evaluates 1, 2, 4 and 8 rounds, more being closer to full
attention), ``bucket_size`` (32, keys per bucket on average), ``seed`` (0).
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

    def rotations(self, n_buckets: int, device: torch.device) -> torch.Tensor:
        """(n_hashes, D, n_buckets/2) Gaussian rotations, fixed per bucket count by the build seed."""
        key = (n_buckets, device)
        if key not in self._rotations:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + n_buckets)
            rot = torch.randn(self.n_hashes, self.head_dim, max(1, n_buckets // 2), generator=g)
            self._rotations[key] = rot.to(device)
        return self._rotations[key]

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
        lk, dev = k.shape[-2], q.device
        n, r = lq + lk, self.n_hashes
        chunk = min(2 * self.bucket_size, n)  # a chunk longer than all items only adds empty slots
        nb = self.n_buckets(n)
        keep = key_padding(attn_mask)
        keep = torch.ones(b, lk, dtype=torch.bool, device=dev) if keep is None else keep.expand(b, lk)

        # Items 0..Lq-1 are the queries, Lq..N-1 the keys; item N is an empty filler.
        x = torch.cat([q, k], dim=-2)
        is_key = torch.cat([torch.zeros(lq, dtype=torch.bool, device=dev), torch.ones(lk, dtype=torch.bool, device=dev)])
        pos = torch.cat([torch.arange(lq, device=dev), torch.arange(lk, device=dev)])
        valid = torch.cat([torch.ones(b, lq, dtype=torch.bool, device=dev), keep], dim=1)  # (B, N)
        if nb == 1:
            bucket = torch.zeros(b, h, r, n, dtype=torch.long, device=dev)
        else:
            bucket = lsh_buckets(x, self.rotations(nb, dev))
        bucket = bucket.masked_fill(~valid[:, None, None, :], nb)  # padded keys: a bucket of their own

        # Sort by (bucket, position, query after key), then give each bucket whole chunks.
        order = bucket * (2 * n + 2) + 2 * pos + (~is_key)
        perm = order.argsort(dim=-1)  # sorted index -> item
        sorted_bucket = bucket.gather(-1, perm)
        counts = torch.zeros(b, h, r, nb + 1, dtype=torch.long, device=dev)
        counts = counts.scatter_add_(-1, bucket, torch.ones_like(bucket))  # items per bucket
        first = counts.cumsum(-1) - counts  # sorted index of each bucket's first item
        start = (counts + chunk - 1) // chunk * chunk
        start = start.cumsum(-1) - start  # slot of each bucket's first item
        rank = torch.arange(n, device=dev) - first.gather(-1, sorted_bucket)
        slot = start.gather(-1, sorted_bucket) + rank  # (B, H, r, N)
        # Slots actually used by the fullest (batch, head, round); a data-dependent size, read once.
        slots = int((start[..., -1] + counts[..., -1]).max())
        slots = max(chunk, math.ceil(slots / chunk) * chunk)
        item_at = torch.full((b, h, r, slots), n, dtype=torch.long, device=dev).scatter(-1, slot, perm)
        slot_of = torch.empty_like(slot).scatter(-1, perm, slot)  # item -> slot

        # Per-slot data: the filler item N has a zero vector, no key, no position, bucket -1.
        x_f = F.pad(x, (0, 0, 0, 1))
        v_f = F.pad(torch.cat([torch.zeros_like(q[..., :1, :]).expand(b, h, lq, v.shape[-1]), v], -2), (0, 0, 0, 1))
        key_f = F.pad(is_key[None] & valid, (0, 1))  # (B, N + 1)
        pos_f = F.pad(pos, (0, 1))
        bucket_f = F.pad(bucket, (0, 1), value=-1)
        chunk_f = F.pad((slot_of // chunk).int(), (0, 1), value=-1)  # (B, H, r, N + 1); int32 halves `behind`
        nchunks = slots // chunk

        def gather_items(t: torch.Tensor) -> torch.Tensor:  # (B, H, N+1, E) -> (B, H, r, slots, E)
            idx = item_at[..., None].expand(*item_at.shape, t.shape[-1])
            return t[:, :, None].expand(b, h, r, *t.shape[-2:]).gather(-2, idx)

        def look_back(t: torch.Tensor, fill: float = 0) -> torch.Tensor:
            # (…, n, C, E) -> (…, n, 2C, E): the previous chunk, then the own one
            prev = F.pad(t, (0, 0, 0, 0, 1, 0), value=fill)[..., :-1, :, :]
            return torch.cat([prev, t], dim=-2)

        qs = gather_items(x_f).unflatten(-2, (nchunks, chunk))  # (B, H, r, n, C, D)
        ks = look_back(qs)
        vs = look_back(gather_items(v_f).unflatten(-2, (nchunks, chunk)))
        qi = item_at.unflatten(-1, (nchunks, chunk))  # (B, H, r, n, C) item ids
        ki = look_back(qi[..., None], fill=n)[..., 0]  # the first chunk looks back at fillers
        bidx = torch.arange(b, device=dev)[:, None, None, None, None]
        allowed = key_f[bidx, ki][..., None, :]  # (B, H, r, n, 1, 2C)
        same = bucket_f.gather(-1, qi.flatten(-2)).unflatten(-1, qi.shape[-2:])
        kb = bucket_f.gather(-1, ki.flatten(-2)).unflatten(-1, ki.shape[-2:])
        allowed = allowed & (same[..., :, None] == kb[..., None, :])
        if is_causal:
            allowed = allowed & (pos_f[ki][..., None, :] <= pos_f[qi][..., :, None])

        scores = qs @ ks.transpose(-2, -1) / math.sqrt(d)
        if r > 1:
            # N_ij: the rounds in which query i and key j share a bucket with j's chunk i's or the
            # one before. One round at a time, so no (…, C, 2C, r) tensor is ever held.
            hi = torch.arange(h, device=dev)[None, :, None, None, None]
            times_met = torch.zeros_like(scores)
            for other in range(r):
                cq, cb = chunk_f[:, :, other], bucket_f[:, :, other]  # (B, H, N + 1)
                behind = cq[bidx, hi, qi][..., :, None] - cq[bidx, hi, ki][..., None, :]
                met = (cb[bidx, hi, qi][..., :, None] == cb[bidx, hi, ki][..., None, :]) & (behind >= 0) & (behind <= 1)
                times_met += met
            scores = scores - times_met.clamp_(min=1).log_()
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        lse = scores.logsumexp(dim=-1)  # (B, H, r, n, C)
        weights = torch.exp(scores - lse[..., None]) * allowed.any(dim=-1, keepdim=True)  # the softmax
        out = self.dropout(weights) @ vs  # (B, H, r, n, C, Dv)

        # Back to item order: the queries are items 0..Lq-1.
        q_slot = slot_of[..., :lq]  # (B, H, r, Lq)
        out = out.flatten(-3, -2).gather(-2, q_slot[..., None].expand(*q_slot.shape, out.shape[-1]))
        lse = lse.flatten(-2).gather(-1, q_slot)
        # A query with no key in a round has lse ≈ finfo.min there and a zero output: weight ~0.
        round_w = torch.softmax(lse, dim=2)
        return (round_w[..., None] * out).sum(dim=2)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="lsh",
        build=LSHAttention,
        summary="Reformer LSH attention: angular hashing of q and k, softmax within bucket-aligned chunks",
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
        options={"n_hashes": 2, "bucket_size": 32, "seed": 0},
    ))
