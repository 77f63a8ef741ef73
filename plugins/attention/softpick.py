"""softpick: attention weights by the rectified softmax replacement "softpick" — no sum-to-one, no sink.

Zuhri, Fuadi & Aji, "Softpick: No Attention Sink, No Massive Activations with Rectified
Softmax", arXiv:2504.20966, 2025.

Per query i over its visible keys V(i), with ``x_ij = q_i·k_j/√D``::

    softpick(x)_ij = ReLU(e^{x_ij} − 1) / (Σ_{l∈V(i)} |e^{x_il} − 1| + ε)
    o_i = Σ_j softpick(x)_ij v_j

A key with a non-positive score gets weight exactly 0 and the row may sum to less than 1, so
a head can attend to nothing instead of parking weight on a sink token. Computed as the
authors' reference does, stably: numerator and denominator are both multiplied by ``e^{−m}``
(m the row's largest visible score), i.e. ``ReLU(e^{x−m} − e^{−m}) / (Σ |e^{x−m} − e^{−m}| + ε)``
with ε = 1e-8 on that scale; masked keys count in neither sum. Nothing is computed from the
input beyond the scores; no parameters.

Complexity: O(L²) time and memory (the dense score matrix, as the paper's naive form; its
FlashAttention-2 kernel is CUDA-only). Honours causality, padding and arbitrary masks, cross-
attention, returns its weights (rows need not sum to 1). Incremental decoding: a KV cache.
"""

from __future__ import annotations

import torch
from torch import nn

import attnbench
from attnbench.nn.kv_cache import KVCacheDecoding, chunk_causal_mask
from attnbench.nn.masks import dense_mask

#: The authors' ε (on the e^{−m} scale): only an all-zero row needs it.
EPS = 1e-8


def softpick(scores: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Softpick over the last dim of ``scores``, restricted to ``allowed`` (True = visible; None = all)."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    peak = scores.amax(dim=-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).min)  # a fully masked row
    shifted = torch.exp(scores - peak) - torch.exp(-peak)
    magnitude = shifted.abs()
    if allowed is not None:
        magnitude = magnitude.masked_fill(~allowed, 0)
    return torch.relu(shifted) / (magnitude.sum(dim=-1, keepdim=True) + EPS)


class SoftpickAttention(KVCacheDecoding, nn.Module):
    """Dense attention with softpick weights; see the module docstring."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        allowed = dense_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
        weights = self.dropout(softpick(scores, allowed))
        out = weights @ v
        return (out, weights) if need_weights else out

    def attend_cache(self, q, keys, values):
        """Softpick of the newest chunk's scores over every cached key."""
        scores = (q @ keys.transpose(-2, -1)) * q.shape[-1] ** -0.5
        weights = self.dropout(softpick(scores, chunk_causal_mask(q.shape[-2], keys.shape[-2], q.device)))
        return weights @ values


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="softpick",
        build=SoftpickAttention,
        summary="Softpick: ReLU(e^x − 1) / Σ|e^x − 1| in place of softmax — rows may sum below 1, no sink",
        complexity="O(L^2)",
        exact=False,
        causal=True,
        padding_mask=True,
        arbitrary_mask=True,
        cross=True,
        weights=True,
        tolerance=None,  # a different normalisation, not an approximation of softmax
        citation="Zuhri, Fuadi & Aji 2025, Softpick: No Attention Sink, No Massive Activations (arXiv:2504.20966)",
        incremental=True,
    ))
