"""The plain reference for flex variants: each mod called once per element, in Python loops.

FlexAttention's definition, written without vmap, grids or kernels: for every (b, h, q_idx,
kv_idx) the ``score_mod`` is called with the score and 0-d index tensors and the ``mask_mod``
with the indices; the kept scores are softmaxed per query row (a row with no key left gives 0)
and applied to v. O(B·H·Lq·Lk) Python calls: for small shapes in tests and the conformance kit,
which compares every backend of a flex module with it.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from attnbench.nn.masks import dense_mask


def elementwise_reference(
    mods: Mapping[str, Callable[..., Any] | None],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, weights)`` of FlexAttention with ``mods`` (``score_mod``, ``mask_mod``, optional
    ``output_mod``, as :meth:`FlexAttention.bound_mods` returns them), element by element."""
    batch, heads, q_len, dim = q.shape
    kv_len = k.shape[-2]
    score_mod, mask_mod = mods.get("score_mod"), mods.get("mask_mod")
    with torch.no_grad():
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(dim)
        keep = torch.ones(batch, heads, q_len, kv_len, dtype=torch.bool, device=q.device)
        outer = dense_mask(attn_mask, is_causal, q_len, kv_len, q.device)
        if outer is not None:
            keep = keep & outer
        as_index = [torch.tensor(i, device=q.device) for i in range(max(batch, heads, q_len, kv_len))]
        for b, h, i, j in itertools.product(range(batch), range(heads), range(q_len), range(kv_len)):
            point = (as_index[b], as_index[h], as_index[i], as_index[j])
            if score_mod is not None:
                scores[b, h, i, j] = score_mod(scores[b, h, i, j], *point)
            if mask_mod is not None:
                keep[b, h, i, j] &= bool(mask_mod(*point))
        alive = keep.any(-1, keepdim=True)
        masked = scores.masked_fill(~keep, float("-inf")).masked_fill(~alive, 0.0)
        weights = torch.softmax(masked, dim=-1).masked_fill(~alive, 0.0)
        out = weights @ v
        output_mod = mods.get("output_mod")
        if output_mod is not None:
            lse = torch.logsumexp(masked, dim=-1).masked_fill(~alive[..., 0], float("-inf"))
            given = {"out": out, "lse": lse, "v_sum": keep.to(v.dtype) @ v}
            takes = inspect.signature(output_mod).parameters
            out = output_mod(**{n: t for n, t in given.items() if n in takes})
    return out, weights
