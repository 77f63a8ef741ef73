"""What a variant keeps between decoding steps (DESIGN.md, "Incremental decoding").

A variant that can decode one position (or one chunk) at a time implements::

    init_state(batch_size, *, device, dtype) -> state
    step(q, k, v, state) -> (out, state)     # q, k, v: (B, H, T, D), the T >= 1 newest positions
    state_nbytes(state) -> int

This module holds the pieces those methods are built from, so a variant writes only what is
specific to it:

* :class:`KVCache` — every key and value so far, for variants whose step is a softmax (or any
  score) over the cached keys: sdpa, softmax, gqa/mqa (only the key/value heads), rope (keys
  cached already rotated), alibi and relative (a bias from the offsets). Memory grows linearly
  with the context.
* :class:`KVCacheDecoding` — the three methods of the contract for a variant whose state is one
  :class:`KVCache`: the variant writes only :meth:`~KVCacheDecoding.attend_cache`, its math
  for the newest chunk over every cached key (or overrides ``step`` where it must change the
  chunk before caching it, as rope rotates its keys).
* :class:`RingBuffer` — the last ``w`` keys and values with their positions, for a sliding
  window (``local``): memory bounded by the window.
* :class:`RecurrentState` — a fixed set of tensors updated in place of a cache (linear
  attention's Σφ(k)vᵀ, retention's decayed sum, an SSM's hidden state): constant memory.
* :func:`chunk_causal_mask` — which cached keys each query of a chunk may see.
* :func:`select_batch` — keep or reorder sequences of a batch (finished rows leaving a greedy
  decode, beams being re-ranked), for any state built from these pieces.

Rule for states: every tensor a state holds has the batch as its first dimension, so
:func:`select_batch` and :func:`state_nbytes` work on any state made of dataclasses, tuples,
lists and dicts of tensors. A new variant (issue 21's gla, deltanet, mamba2, mla…) can reuse
these pieces or bring its own state that follows the same rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def state_nbytes(state: Any) -> int:
    """Bytes held by every tensor in ``state`` (dataclasses, tuples, lists, dicts of tensors).

    :class:`KVCache` and :class:`RingBuffer` count the positions they hold, not the spare
    capacity of their buffers (see their docstrings).
    """
    if isinstance(state, (KVCache, RingBuffer)):
        return state.nbytes
    if isinstance(state, torch.Tensor):
        return _nbytes(state)
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return sum(state_nbytes(getattr(state, f.name)) for f in dataclasses.fields(state))
    if isinstance(state, (tuple, list)):
        return sum(state_nbytes(x) for x in state)
    if isinstance(state, dict):
        return sum(state_nbytes(x) for x in state.values())
    return 0


def select_batch(state: Any, index: torch.Tensor) -> Any:
    """``state`` with only the sequences ``index`` (a 1-D long or bool tensor over the batch), in that order.

    Returns a new state; the old one is left as it was. Works on any state whose tensors all
    have the batch as their first dimension (the rule of this module); an object with its own
    ``select_batch(index)`` method (one that also records its batch size) is asked to do it.
    """
    if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
        index = index.nonzero().view(-1)
    if not isinstance(state, type) and callable(getattr(state, "select_batch", None)):
        return state.select_batch(index)
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index.to(state.device))
    if isinstance(state, KVCache):
        return KVCache(keys=select_batch(state.keys, index), values=select_batch(state.values, index),
                       length=state.length)
    if isinstance(state, RingBuffer):
        return RingBuffer(keys=select_batch(state.keys, index), values=select_batch(state.values, index),
                          positions=state.positions.clone(), seen=state.seen)
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        changes = {f.name: select_batch(getattr(state, f.name), index) for f in dataclasses.fields(state)}
        return dataclasses.replace(state, **changes)
    if isinstance(state, tuple):
        return tuple(select_batch(x, index) for x in state)
    if isinstance(state, list):
        return [select_batch(x, index) for x in state]
    if isinstance(state, dict):
        return {k: select_batch(x, index) for k, x in state.items()}
    return state


def chunk_causal_mask(t: int, total: int, device: torch.device | str | None = None) -> torch.Tensor | None:
    """(T, total) bool, True where query i of the newest chunk of ``t`` may see key j of ``total``.

    The chunk holds positions ``total - t … total - 1``: query i sees keys ``j <= total - t + i``
    (causality aligned to the bottom right). None when ``t == 1``: the newest position sees every key.
    """
    if t == 1:
        return None
    return torch.ones(t, total, dtype=torch.bool, device=device).tril(total - t)


def softmax_over_cache(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, *,
                       bias: torch.Tensor | None = None, dropout: float = 0.0,
                       enable_gqa: bool = False) -> torch.Tensor:
    """``softmax(q kᵀ/√D + bias) v`` for the newest chunk ``q`` (B, H, T, D) over every cached key.

    ``keys``, ``values`` (B, H_kv, total, D) end with the chunk's own positions; causality is
    :func:`chunk_causal_mask`. ``bias`` (…, T, total) is added to the logits (alibi, relative).
    Runs through fused SDPA.
    """
    t, total = q.shape[-2], keys.shape[-2]
    if t == total and t > 1 and bias is None:  # a prefill from an empty cache: SDPA's own causal path, no mask
        return F.scaled_dot_product_attention(q, keys, values, dropout_p=dropout, is_causal=True,
                                              enable_gqa=enable_gqa)
    allowed = chunk_causal_mask(t, total, q.device)
    mask: torch.Tensor | None = allowed
    if bias is not None:
        mask = bias.to(q.dtype)
        if allowed is not None:
            mask = mask.masked_fill(~allowed, float("-inf"))
    while mask is not None and mask.dim() < 4:  # torch's CPU SDPA keeps its fused kernel only for a 4-D mask
        mask = mask.unsqueeze(0)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=dropout, enable_gqa=enable_gqa)


@dataclasses.dataclass
class KVCache:
    """Keys and values of every position so far: (B, H_kv, capacity, D) buffers, the first ``length`` valid.

    :meth:`append` writes a chunk and returns views of all valid keys and values. The buffers
    grow by doubling, so appending one position costs O(1) amortised rather than a copy of the
    whole cache (``torch.cat`` at every step would make decoding quadratic in copies).
    ``nbytes`` counts the ``length`` valid positions (the KV cache a serving system would hold);
    the buffers' spare capacity is at most as much again.
    """

    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0

    @classmethod
    def empty(cls, batch_size: int, *, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> KVCache:
        """A cache with no position yet; heads and head dim are taken from the first chunk."""
        none = torch.zeros(batch_size, 0, 0, 0, device=device, dtype=dtype)
        return cls(keys=none, values=none.clone(), length=0)

    @property
    def nbytes(self) -> int:
        """Bytes of the cached keys and values (valid positions only)."""
        b, h, _, d = self.keys.shape
        return 2 * b * h * self.length * d * self.keys.element_size()

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add ``k``, ``v`` (B, H_kv, T, D) after the cached positions; return all keys and values (views).

        Mutates the cache's buffers; callers that must keep an older state use :func:`select_batch`
        (which copies) first.
        """
        t = k.shape[-2]
        need = self.length + t
        if self.keys.shape[1] == 0:  # first chunk: take heads, dim, device and dtype from it
            cap = max(need, 16)
            self.keys = k.new_empty(k.shape[0], k.shape[1], cap, k.shape[-1])
            self.values = v.new_empty(v.shape[0], v.shape[1], cap, v.shape[-1])
        elif need > self.keys.shape[-2]:
            cap = max(need, 2 * self.keys.shape[-2])
            for name in ("keys", "values"):
                old = getattr(self, name)
                new = old.new_empty(*old.shape[:2], cap, old.shape[-1])
                new[..., : self.length, :] = old[..., : self.length, :]
                setattr(self, name, new)
        self.keys[..., self.length : need, :] = k
        self.values[..., self.length : need, :] = v
        self.length = need
        return self.keys[..., :need, :], self.values[..., :need, :]


@dataclasses.dataclass
class RingBuffer:
    """The last ``window`` keys and values, each slot with the absolute position it holds (-1 = empty).

    ``keys``, ``values``: (B, H, window, D); ``positions``: (window,) long; ``seen``: how many
    positions were appended in all. Slot ``p % window`` holds position ``p``, so a step writes
    only its own chunk (no shifting). Softmax does not care in which order keys come, so
    :meth:`attend_keys` returns the slots as they lie together with the new chunk, and the
    positions say which ones a query may see. ``nbytes`` counts the filled slots: bounded by
    the window whatever the context.
    """

    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    seen: int = 0

    @classmethod
    def empty(cls, batch_size: int, window: int, *, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> RingBuffer:
        """An empty window of ``window`` slots; heads and head dim are taken from the first chunk."""
        none = torch.zeros(batch_size, 0, window, 0, device=device, dtype=dtype)
        return cls(keys=none, values=none.clone(),
                   positions=torch.full((window,), -1, dtype=torch.long, device=device), seen=0)

    @property
    def window(self) -> int:
        """How many positions the buffer holds at most."""
        return self.positions.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the keys and values in filled slots."""
        b, h, _, d = self.keys.shape
        return 2 * b * h * min(self.seen, self.window) * d * self.keys.element_size()

    def attend_keys(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The keys, values and positions a chunk ``k``, ``v`` (B, H, T, D) may draw on: the slots, then the chunk.

        Call before :meth:`append` with the same chunk. Empty slots have position -1.
        """
        t = k.shape[-2]
        chunk_pos = torch.arange(self.seen, self.seen + t, device=k.device)
        if self.keys.shape[1] == 0:
            return k, v, chunk_pos
        return (torch.cat((self.keys, k), dim=-2), torch.cat((self.values, v), dim=-2),
                torch.cat((self.positions, chunk_pos)))

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write the chunk ``k``, ``v`` (B, H, T, D) into its slots (only its last ``window`` positions matter)."""
        w, t = self.window, k.shape[-2]
        if self.keys.shape[1] == 0:
            self.keys = k.new_zeros(k.shape[0], k.shape[1], w, k.shape[-1])
            self.values = v.new_zeros(v.shape[0], v.shape[1], w, v.shape[-1])
        keep = min(t, w)
        pos = torch.arange(self.seen + t - keep, self.seen + t, device=self.positions.device)
        slots = pos % w
        self.keys[..., slots, :] = k[..., t - keep :, :]
        self.values[..., slots, :] = v[..., t - keep :, :]
        self.positions[slots] = pos
        self.seen += t


@dataclasses.dataclass
class RecurrentState:
    """A constant-size recurrent state: named tensors, each (B, …), and the positions seen so far.

    ``tensors`` holds what the variant carries (``{"kv": (B, H, F, D), "z": (B, H, F)}`` for
    linear attention); ``position`` is the index of the next position, for variants whose
    update depends on it (rotations, decays from a start). :func:`select_batch` and
    :func:`state_nbytes` see through it.
    """

    tensors: dict[str, torch.Tensor]
    position: int = 0

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]


class KVCacheDecoding:
    """Incremental decoding (DESIGN.md) over one :class:`KVCache`, for a variant module to mix in.

    Gives ``init_state`` (an empty cache), ``state_nbytes`` (the cached keys and values: linear
    in the context) and ``step`` (append the chunk, then :meth:`attend_cache`). The variant
    writes :meth:`attend_cache`; one that must transform the chunk before caching it (rope's
    rotation, gqa's pooling to its key/value heads, mla's latent) overrides ``step`` instead,
    and one that caches something other than keys and values overrides ``state_nbytes``.
    Put it before ``nn.Module`` among the bases: ``class MyAttention(KVCacheDecoding, nn.Module)``.
    """

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> KVCache:
        """An empty KV cache (DESIGN.md, "Incremental decoding")."""
        return KVCache.empty(batch_size, device=device, dtype=dtype)

    def state_nbytes(self, state: KVCache) -> int:
        """Bytes of the cached keys and values: linear in the context."""
        return state.nbytes

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             state: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Cache the newest chunk's keys and values, then :meth:`attend_cache` over all of them."""
        keys, values = state.append(k, v)
        return self.attend_cache(q, keys, values), state

    def attend_cache(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The output (B, H, T, D) of the newest chunk's queries ``q`` over every cached key.

        ``keys``, ``values`` (B, H_kv, total, D) end with the chunk's own T positions, so the
        chunk starts at position ``total - T``; a query sees the keys :func:`chunk_causal_mask` allows.
        """
        raise NotImplementedError(f"{type(self).__name__} mixes in KVCacheDecoding but writes no attend_cache")
