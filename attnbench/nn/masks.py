"""Mask helpers shared by variants: one meaning everywhere, True = may attend."""

from __future__ import annotations

import torch


def causal_mask(lq: int, lk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(Lq, Lk) bool mask, query i may attend key j iff j <= i (top-left aligned, as SDPA)."""
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril()


def dense_mask(
    attn_mask: torch.Tensor | None, is_causal: bool, lq: int, lk: int, device: torch.device
) -> torch.Tensor | None:
    """Combine a boolean ``attn_mask`` and ``is_causal`` into one broadcastable mask, or None."""
    mask = None if attn_mask is None else attn_mask.to(torch.bool)
    if is_causal:
        tri = causal_mask(lq, lk, device)
        mask = tri if mask is None else mask & tri
    return mask


def key_padding(attn_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The (B, Lk) key-padding mask inside an (B, 1, 1, Lk) mask, or None.

    For variants that honour padding without building Lq×Lk: raises if the mask varies
    over heads or queries, since such a variant cannot honour that.
    """
    if attn_mask is None:
        return None
    if attn_mask.dim() != 4 or attn_mask.shape[1] != 1 or attn_mask.shape[2] != 1:
        raise ValueError(
            f"expected a key-padding mask of shape (B, 1, 1, Lk), got {tuple(attn_mask.shape)}; "
            "this variant does not declare arbitrary_mask"
        )
    return attn_mask[:, 0, 0, :].to(torch.bool)
