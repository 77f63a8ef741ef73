"""stickbreaking: stick-breaking attention — each key takes a share of what nearer keys left, no positions.

Tan, Shen, Peng, Courville & Panda, "Scaling Stick-Breaking Attention: An Efficient
Implementation and In-depth Study", ICLR 2025 (arXiv:2410.17980).

Per query i, with ``β_ij = σ(q_i·k_j/√D)``, the nearest visible key breaks the stick first::

    A_ij = β_ij · Π_{j<l≤i, l visible} (1 − β_il)          o_i = Σ_j A_ij v_j

computed in log space (``log A_ij = logσ(z_ij) + Σ_{l>j} logσ(−z_il)``, a reversed cumulative
sum), as the authors' reference. The weights sum to at most 1 and favour recent keys by
construction, so no positional encoding is needed. No parameters.

Departures: by default a query's own key is visible and breaks first (flash-linear-attention's
``attend_current=True``); the paper's decoder attends strictly to earlier keys
(``attend_current=False``, an option), which leaves the first query with nothing. The paper's
remainder-to-the-current-value is not added. ``is_causal=False`` (an extension for encoder
tasks) averages two sticks, one broken leftwards from the query (keys j ≤ i) and one rightwards
(keys j ≥ i).

Complexity: O(L²) time and memory (the dense score matrix; the authors' Triton kernel is
CUDA-only). Self-attention only (the order needs one position axis), padding honoured (a
padded key is skipped and breaks nothing), returns its weights. Incremental decoding: a KV cache.
Options: ``attend_current`` (True).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.kv_cache import KVCacheDecoding
from attnbench.nn.masks import key_padding


def stick_breaking(z: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``A_ij = σ(z_ij) Π_{l>j, allowed} (1 − σ(z_il))`` over the visible keys (keys ordered by position)."""
    log_rest = F.logsigmoid(-z).masked_fill(~allowed, 0)
    after = log_rest.flip(-1).cumsum(-1).flip(-1) - log_rest  # Σ over visible l > j
    return (F.logsigmoid(z) + after).masked_fill(~allowed, float("-inf")).exp()


class StickBreakingAttention(KVCacheDecoding, nn.Module):
    """Stick-breaking attention; see the module docstring."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.attend_current = bool(config.option("attend_current", True))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        length = q.shape[-2]
        if k.shape[-2] != length:
            raise ValueError(
                f"stickbreaking is self-attention only (cross=False): query length {length} != key length "
                f"{k.shape[-2]}; the stick is broken in key order relative to the query's position"
            )
        z = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        left = torch.ones(length, length, dtype=torch.bool, device=q.device).tril(0 if self.attend_current else -1)
        keep = key_padding(attn_mask)
        pad = keep[:, None, None, :] if keep is not None else torch.ones(1, 1, 1, length, dtype=torch.bool, device=q.device)
        weights = stick_breaking(z, left & pad)
        if not is_causal:  # the mirror-image stick: keys to the right, the nearest first
            right_ok = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(0 if self.attend_current else 1)
            right = stick_breaking(z.flip(-1), (right_ok & pad).flip(-1)).flip(-1)
            weights = (weights + right) / 2
        weights = self.dropout(weights)
        out = weights @ v
        return (out, weights) if need_weights else out

    def attend_cache(self, q, keys, values):
        """Break the newest chunk's sticks over every cached key, nearest first."""
        t, total = q.shape[-2], keys.shape[-2]
        allowed = torch.ones(t, total, dtype=torch.bool, device=q.device).tril(total - t - (0 if self.attend_current else 1))
        z = (q @ keys.transpose(-2, -1)) * q.shape[-1] ** -0.5
        return self.dropout(stick_breaking(z, allowed)) @ values


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="stickbreaking",
        build=StickBreakingAttention,
        summary="Stick-breaking attention: σ(q·k) shares broken from the nearest key outwards, no positions",
        complexity="O(L^2)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=True,
        tolerance=None,  # a different normalisation, not an approximation of softmax
        citation="Tan et al. 2025, Scaling Stick-Breaking Attention (ICLR, arXiv:2410.17980)",
        options={"attend_current": True},
        incremental=True,
    ))
