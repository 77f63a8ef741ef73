"""local: sliding-window softmax attention computed block by block, in O(L·w) time and memory.

Each query attends only to keys within ``±⌊w/2⌋`` positions of it (w + 1 keys for even w),
or to the ``w`` most recent keys (itself included) when causal. Queries are cut into blocks and
each block attends to its own block plus the neighbouring ones, so the largest tensor is
(L, span) with span ≈ 1.5·w, never a masked (L, L) score matrix.

``forward`` hands the blocks to ``F.scaled_dot_product_attention`` (the fused CPU flash kernel,
or a GPU kernel) with each block's keys and values as overlapping views of the padded ones and
an (n, block, span) mask: the (L, span) scores are never materialised, in either pass.
``reference`` is the same computation written out (products, masked softmax, products); a
test holds the two equal in outputs and gradients.

Beltagy et al., "Longformer: The Long-Document Transformer", arXiv:2004.05150, 2020
(sliding-window attention); Parmar et al., "Image Transformer", ICML 2018 (blocked local attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.kv_cache import RingBuffer
from attnbench.nn.masks import key_padding


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor, empty_rows: bool = True) -> torch.Tensor:
    """Softmax over the last dim restricted to ``allowed``; a row with nothing allowed is all zeros.

    ``scores`` is overwritten (callers pass a fresh tensor), which saves one score-sized
    buffer. A finite fill (not -inf) keeps fully masked rows free of NaN in both passes; with
    ``empty_rows`` they are then zeroed, so their output is 0 and ignores the masked keys.
    Pass ``empty_rows=False`` only when every row is known to allow some key.
    """
    weights = torch.softmax(scores.masked_fill_(~allowed, torch.finfo(scores.dtype).min), dim=-1)
    return weights * allowed.any(dim=-1, keepdim=True) if empty_rows else weights


def _blocks(x: torch.Tensor, block: int, left: int, right: int, nblocks: int) -> torch.Tensor:
    """``x`` (…, L, D) zero-padded by ``left`` blocks before and to ``nblocks + right`` blocks
    after, as (…, left + nblocks + right, block, D): query block n's keys are blocks n … n+left+right."""
    length = x.shape[-2]
    x = F.pad(x, (0, 0, left * block, nblocks * block - length + right * block))
    return x.unflatten(-2, (nblocks + left + right, block))


def _windows(x: torch.Tensor, block: int, left: int, right: int, nblocks: int) -> torch.Tensor:
    """``x`` (B, H, L, D) as (B·H, n, span, D) overlapping views of one padded copy: query block
    n's keys are padded rows ``n·block … n·block + span``, span = (left + 1 + right)·block."""
    batch, heads, _, dim = x.shape
    padded = _blocks(x, block, left, right, nblocks).reshape(batch * heads, -1, dim)
    return padded.unfold(1, (left + 1 + right) * block, block).transpose(-1, -2)


class LocalAttention(nn.Module):
    """Sliding-window attention. Options: ``window`` (keys per query, default 64)."""

    #: ``forward`` through SDPA on the blocks; False computes it with :meth:`reference` (tests, comparisons).
    fused: bool = True

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.window = int(config.option("window", 64))
        if self.window < 1:
            raise ValueError(f"local attention: window must be >= 1, got {self.window}")
        self.dropout = nn.Dropout(config.dropout)

    def offsets(self, length: int, is_causal: bool) -> tuple[int, int]:
        """The key offsets ``[lo, hi]`` (key − query position) a query may attend to."""
        if is_causal:
            lo, hi = -(self.window - 1), 0
        else:
            lo, hi = -(self.window // 2), self.window // 2
        # A window wider than the sequence is the whole sequence: clamp so blocks stay small.
        return max(lo, -(length - 1)), min(hi, length - 1)

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
            raise NotImplementedError("local attention does not return weights (its spec says weights=False)")
        length = q.shape[-2]
        if k.shape[-2] != length:
            raise ValueError(
                f"local attention is self-attention only (cross=False): query length {length} "
                f"!= key length {k.shape[-2]}"
            )
        lo, hi = self.offsets(length, is_causal)
        keep = key_padding(attn_mask)
        if self.fused:
            return self._fused(q, k, v, lo, hi, keep)
        return self.reference(q, k, v, lo, hi, keep)

    @staticmethod
    def geometry(length: int, lo: int, hi: int) -> tuple[int, int, int, int]:
        """``(block, left, right, nblocks)``: query blocks of ``block`` positions, each reading key
        blocks ``n − left … n + right``; ``nblocks`` blocks cover the sequence."""
        # Blocks of about half the window: a query block then needs ~1 neighbour block on
        # each side it looks at, so the span is ~1.5·w keys (not 3·w with blocks of w).
        block = max(1, (hi - lo + 1) // 2)
        return block, math.ceil(-lo / block), math.ceil(hi / block), math.ceil(length / block)

    @staticmethod
    def allowed(length: int, lo: int, hi: int, keep: torch.Tensor | None, device=None) -> torch.Tensor:
        """Which of each query block's ``span`` keys a query may attend to: (n, block, span), or
        (B, n, block, span) with a (B, L) ``keep`` mask of keys."""
        block, left, right, nblocks = LocalAttention.geometry(length, lo, hi)
        span = (left + 1 + right) * block
        j = torch.arange(span, device=device)
        rel = j - left * block - torch.arange(block, device=device)[:, None]  # key − query position
        kpos = (torch.arange(nblocks, device=device) * block - left * block)[:, None] + j  # (n, span)
        allowed = ((rel >= lo) & (rel <= hi)) & ((kpos >= 0) & (kpos < length))[:, None, :]
        if keep is not None:  # (B, L) -> (B, n, span): each block's keys
            keep_w = F.pad(keep, (left * block, (nblocks + right) * block - length)).unfold(1, span, block)
            allowed = allowed & keep_w[:, :, None, :]
        return allowed

    def _fused(self, q, k, v, lo: int, hi: int, keep: torch.Tensor | None) -> torch.Tensor:
        """The blocks through ``F.scaled_dot_product_attention``: (B·H, n) batches of block queries
        against their span of keys, views of one padded copy of k and v."""
        batch, heads, length, dim = q.shape
        block, left, right, nblocks = self.geometry(length, lo, hi)
        padded = nblocks * block
        qb = (F.pad(q, (0, 0, 0, padded - length)) if padded > length else q).reshape(batch * heads, nblocks, block, dim)
        allowed = self.allowed(length, lo, hi, keep, device=q.device)
        empty = None
        if keep is not None:
            # A query with no key left gives 0: let it see its whole span (no -inf-only row, no NaN
            # in either pass) and zero its output, which also zeroes its gradients.
            empty = ~allowed.any(dim=-1, keepdim=True)  # (B, n, block, 1)
            allowed = allowed | empty
            if batch > 1 and heads > 1:  # SDPA's batch is B·H: the mask repeated over heads
                allowed = allowed[:, None].expand(-1, heads, -1, -1, -1).flatten(0, 1)
        else:
            allowed = allowed[None]
        out = F.scaled_dot_product_attention(
            qb, _windows(k, block, left, right, nblocks), _windows(v, block, left, right, nblocks),
            attn_mask=allowed, dropout_p=self.dropout.p if self.training else 0.0,
        ).view(batch, heads, nblocks, block, -1)
        if empty is not None:
            out = out.masked_fill(empty[:, None], 0.0)
        return out.flatten(2, 3)[..., :length, :]

    def reference(self, q, k, v, lo: int, hi: int, keep: torch.Tensor | None) -> torch.Tensor:
        """The blocked computation written out: per-offset products, masked softmax, products."""
        length = q.shape[-2]
        # Blocks of about half the window: a query block then needs ~1 neighbour block on
        # each side it looks at, so the span is ~1.5·w keys (not 3·w with blocks of w).
        block = max(1, (hi - lo + 1) // 2)
        left, right = math.ceil(-lo / block), math.ceil(hi / block)
        nblocks = math.ceil(length / block)

        nwin = left + 1 + right
        span = nwin * block
        q = q * q.shape[-1] ** -0.5  # scaled here, on (L, D), not on the (L, span) scores
        qb = (F.pad(q, (0, 0, 0, nblocks * block - length)) if nblocks * block > length else q).unflatten(-2, (nblocks, block))
        kb = _blocks(k, block, left, right, nblocks)  # (B, H, n + left + right, block, D)
        vb = _blocks(v, block, left, right, nblocks)
        # One product per neighbour offset, on views of the padded keys: the windows are never
        # copied out as an (n, span, D) tensor; only the (n, block, span) scores are formed.
        scores = torch.cat([qb @ kb[..., i : i + nblocks, :, :].transpose(-2, -1) for i in range(nwin)], dim=-1)

        device = q.device
        qpos = torch.arange(nblocks * block, device=device).view(nblocks, block, 1)
        kpos = (torch.arange(nblocks, device=device) * block - left * block).view(nblocks, 1, 1) + torch.arange(
            span, device=device
        )
        rel = kpos - qpos
        allowed = (rel >= lo) & (rel <= hi) & (kpos >= 0) & (kpos < length)  # (n, block, span)
        if keep is not None:  # (B, L) -> (B, 1, n, 1, span): the keys' windows
            keep_b = _blocks(keep[:, :, None], block, left, right, nblocks)[..., 0]
            keep_b = torch.cat([keep_b[:, i : i + nblocks] for i in range(nwin)], dim=-1)
            allowed = allowed & keep_b[:, None, :, None, :]

        # Without padding every query sees at least itself, so no row can be empty.
        weights = self.dropout(masked_softmax(scores, allowed, empty_rows=keep is not None))
        out = weights[..., :block] @ vb[..., :nblocks, :, :]
        for i in range(1, nwin):
            out = out + weights[..., i * block : (i + 1) * block] @ vb[..., i : i + nblocks, :, :]
        return out.flatten(-3, -2)[..., :length, :]

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """A ring buffer of the ``window`` most recent keys and values: memory bounded by the window."""
        return RingBuffer.empty(batch_size, self.window, device=device, dtype=dtype)

    def state_nbytes(self, state):
        """Bytes of the keys and values in the window (at most ``window`` positions)."""
        return state.nbytes

    def step(self, q, k, v, state):
        """Each new query attends the ``window`` most recent keys, itself included.

        A long chunk (a prefill) goes through in pieces of at most ``max(window, 64)`` positions,
        so a piece's scores are (piece, window + piece): a prefill costs O(T·w), not O(T²).
        """
        outs = []
        piece = max(self.window, 64)
        for start in range(0, q.shape[-2], piece):
            part = slice(start, start + piece)
            keys, values, positions = state.attend_keys(k[..., part, :], v[..., part, :])
            qpos = torch.arange(state.seen, state.seen + q[..., part, :].shape[-2], device=q.device)[:, None]
            allowed = (positions >= 0) & (positions <= qpos) & (positions > qpos - self.window)
            scores = (q[..., part, :] @ keys.transpose(-2, -1)) * q.shape[-1] ** -0.5
            weights = self.dropout(masked_softmax(scores, allowed, empty_rows=False))
            outs.append(weights @ values)
            state.append(k[..., part, :], v[..., part, :])
        return torch.cat(outs, dim=-2), state


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="local",
        build=LocalAttention,
        summary="Sliding-window softmax attention (±w/2, or the w previous keys when causal), blocked",
        complexity="O(L·w)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        # A window wider than the sequence sees every key: exact softmax up to rounding.
        tolerance=1e-5,
        tolerance_options={"window": 10_000},
        citation="Beltagy et al. 2020, Longformer (arXiv:2004.05150); Parmar et al. 2018, Image Transformer",
        options={"window": 64},
        incremental=True,
    ))
