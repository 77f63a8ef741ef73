"""local: sliding-window softmax attention computed block by block, in O(L·w) time and memory.

Each query attends only to keys within a window of ``w`` positions: ``±w/2`` around it, or
the ``w`` most recent keys (itself included) when causal. Queries are cut into blocks and
each block attends to its own block plus the neighbouring ones, so the largest tensor is
(L, span) with span ≈ 1.5·w, never a masked (L, L) score matrix.

Beltagy et al., "Longformer: The Long-Document Transformer", arXiv:2004.05150, 2020
(sliding-window attention); Parmar et al., "Image Transformer", ICML 2018 (blocked local attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.masks import key_padding


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``allowed``; a row with nothing allowed is all zeros.

    A finite fill (not -inf) keeps fully masked rows free of NaN in both passes, and the final
    multiply zeroes them, so their output is 0 and does not depend on the masked keys.
    """
    filled = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * allowed.any(dim=-1, keepdim=True)


def _windows(x: torch.Tensor, block: int, left: int, right: int, nblocks: int) -> torch.Tensor:
    """Cut ``x`` (…, L, D) into ``nblocks`` overlapping spans of ``left + 1 + right`` blocks.

    Span ``n`` covers positions ``[(n - left)·block, (n + 1 + right)·block)``; positions
    outside the sequence are zero-padded (and masked by the caller).
    """
    length = x.shape[-2]
    x = F.pad(x, (0, 0, left * block, nblocks * block - length + right * block))
    x = x.unflatten(-2, (nblocks + left + right, block))
    return torch.cat([x[..., i : i + nblocks, :, :] for i in range(left + 1 + right)], dim=-2)


class LocalAttention(nn.Module):
    """Sliding-window attention. Options: ``window`` (keys per query, default 64)."""

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
        # Blocks of about half the window: a query block then needs ~1 neighbour block on
        # each side it looks at, so the span is ~1.5·w keys (not 3·w with blocks of w).
        block = max(1, (hi - lo + 1) // 2)
        left, right = math.ceil(-lo / block), math.ceil(hi / block)
        nblocks = math.ceil(length / block)

        qb = F.pad(q, (0, 0, 0, nblocks * block - length)).unflatten(-2, (nblocks, block))
        kb = _windows(k, block, left, right, nblocks)  # (B, H, n, span, D)
        vb = _windows(v, block, left, right, nblocks)
        scores = (qb @ kb.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, n, block, span)

        span = kb.shape[-2]
        device = q.device
        qpos = torch.arange(nblocks * block, device=device).view(nblocks, block, 1)
        kpos = (torch.arange(nblocks, device=device) * block - left * block).view(nblocks, 1, 1) + torch.arange(
            span, device=device
        )
        rel = kpos - qpos
        allowed = (rel >= lo) & (rel <= hi) & (kpos >= 0) & (kpos < length)  # (n, block, span)
        keep = key_padding(attn_mask)
        if keep is not None:  # (B, L) -> (B, 1, n, 1, span), same windows as the keys
            keep_b = _windows(keep[:, :, None], block, left, right, nblocks)[..., 0]
            allowed = allowed & keep_b[:, None, :, None, :]

        weights = self.dropout(masked_softmax(scores, allowed))
        out = weights @ vb  # (B, H, n, block, D)
        return out.flatten(-3, -2)[..., :length, :]


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
    ))
