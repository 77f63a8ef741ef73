"""Attention written out as weights over a score matrix, for variants that return their maps.

Such a variant computes ``weights(scores(q, k), allowed)`` for the (…, Lq, Lk) pairs, applies
dropout and multiplies by v; only the two steps differ between them (softmax: dot-product scores;
additive: MLP scores; talking-heads: a softmax between two head mixes).
:class:`ScoredAttention` is that frame, once: the forward contract (``dense_mask`` of the
padding/arbitrary mask and ``is_causal``, the weights before dropout as the attention maps) and
incremental decoding over a KV cache (:class:`~attnbench.nn.kv_cache.KVCacheDecoding`, the
newest chunk's queries scored against every cached key under
:func:`~attnbench.nn.kv_cache.chunk_causal_mask`). A subclass writes :meth:`~ScoredAttention.scores`,
and :meth:`~ScoredAttention.weights` where its weights are not the softmax of the scores: its math
stays in its own module.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.nn.kv_cache import KVCacheDecoding, chunk_causal_mask
from attnbench.nn.masks import dense_mask


def softmax_weights(scores: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim of ``scores``, disallowed entries (``allowed`` False) at −inf; None allows all."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1)


class ScoredAttention(KVCacheDecoding, nn.Module):
    """``dropout(weights(scores(q, k), allowed)) @ v``; a subclass writes ``scores`` (and ``weights``, softmax by default).

    ``forward`` follows the suite's contract and returns the weights before dropout as the maps;
    ``step`` (from :class:`KVCacheDecoding`) runs the same two steps for the newest chunk over the
    KV cache.
    """

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The (B, H, Lq, Lk) scores of every (query, key) pair."""
        raise NotImplementedError

    def weights(self, scores: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """The (B, H, Lq, Lk) weights from ``scores``; ``allowed`` (broadcastable, True = may attend) or None.

        The softmax over the allowed keys (:func:`softmax_weights`) unless a subclass says otherwise.
        """
        return softmax_weights(scores, allowed)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        allowed = dense_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
        weights = self.weights(self.scores(q, k), allowed)
        out = self.dropout(weights) @ v
        return (out, weights) if need_weights else out

    def attend_cache(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The newest chunk's weights over every cached key, causal within the chunk."""
        weights = self.weights(self.scores(q, keys), chunk_causal_mask(q.shape[-2], keys.shape[-2], q.device))
        return self.dropout(weights) @ values
