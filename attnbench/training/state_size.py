"""What a causal model's mixers carry per sequence: the figure behind "recall versus state size".

Based (Arora et al. 2024) plots recall against the bytes a layer must keep to decode the
next token: softmax keeps a KV cache that grows with the context, a sliding window keeps its
window, linear attention, retention and state-space layers keep a constant state.

:func:`state_figures` measures it where it can: a variant whose spec says ``incremental``
(DESIGN.md, "Incremental decoding") is stepped through the training length in one prefill
chunk and asked ``state_nbytes(state)``. Other variants get an analytic figure from the
shape of their math (:func:`analytic_state_elements`), marked as such with
``state_bytes_measured = 0``, until they implement the incremental contract.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnbench.nn.attention import MultiheadAttention

#: The analytic state of variants that carry something other than a KV cache, per attention
#: layer and sequence, in elements, from (inner module, length L, heads H, kv heads, head dim D).
#: Everything not named here is assumed to need every key and value: a KV cache of 2·L·H_kv·D.
_CONSTANT_OR_BOUNDED: dict[str, Callable[[nn.Module, int, int, int, int], int]] = {
    # the w most recent keys and values
    "local": lambda m, L, H, Hkv, D: 2 * min(int(getattr(m, "window", L)), L) * Hkv * D,
    # S = Σ φ(k) vᵀ (D×D) and z = Σ φ(k) (D) per head
    "linear": lambda m, L, H, Hkv, D: H * (D * D + D),
    # the same sums in m random features: m×D and m per head
    "performer": lambda m, L, H, Hkv, D: H * (int(m.features.shape[0]) * (D + 1)),
    # cos and sin halves of the re-weighted linear state
    "cosformer": lambda m, L, H, Hkv, D: 2 * H * (D * D + D),
    # the decayed D×D state per head
    "retention": lambda m, L, H, Hkv, D: H * D * D,
    # N/2 complex modes (N reals) per channel, H·D channels
    "s4d": lambda m, L, H, Hkv, D: H * D * 2 * int(m.log_a_real.shape[1]),
}


def _inner(layer: MultiheadAttention) -> nn.Module:
    """The variant's own module inside the layer's contract check."""
    return getattr(layer.attention, "inner", layer.attention)


def analytic_state_elements(layer: MultiheadAttention, length: int) -> int:
    """Elements one attention layer keeps per sequence after ``length`` positions (see the table above)."""
    inner, spec = _inner(layer), layer.spec
    h, h_kv, d = layer.num_heads, layer.num_kv_heads, layer.head_dim
    rule = _CONSTANT_OR_BOUNDED.get(spec.name)
    if rule is not None:
        try:
            return int(rule(inner, length, h, h_kv, d))
        except (AttributeError, IndexError, TypeError, ValueError):
            pass  # a re-implementation under the same name: fall back to the cache it would at most need
    return 2 * length * h_kv * d


def measured_state_nbytes(layer: MultiheadAttention, length: int, device: torch.device, dtype: torch.dtype) -> int | None:
    """``state_nbytes`` after one prefill chunk of ``length`` positions (batch 1), or None when the
    variant has no incremental form (its spec does not say ``incremental``)."""
    if not getattr(layer.spec, "incremental", False):
        return None
    module = layer.attention if hasattr(layer.attention, "init_state") else _inner(layer)
    if not all(hasattr(module, name) for name in ("init_state", "step", "state_nbytes")):
        return None
    q = torch.zeros(1, layer.num_heads, length, layer.head_dim, device=device, dtype=dtype)
    kv = torch.zeros(1, layer.num_kv_heads, length, layer.head_dim, device=device, dtype=dtype)
    with torch.no_grad():
        state = module.init_state(1, device=device, dtype=dtype)
        _, state = module.step(q, kv, kv.clone(), state)
        return int(module.state_nbytes(state))


def state_figures(layers: list[MultiheadAttention], length: int, device: torch.device,
                  dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Per-sequence state of all ``layers`` at ``length`` positions, and the mixers' parameters.

    ``state_bytes`` sums the layers; ``state_bytes_measured`` is 1 when every layer reported
    it through ``state_nbytes``, 0 when the analytic figure was used; ``mixer_params`` counts
    the attention layers' parameters (projections and the variant's own).
    """
    element = torch.empty((), dtype=dtype).element_size()
    total, measured = 0, True
    for layer in layers:
        nbytes = measured_state_nbytes(layer, length, device, dtype)
        if nbytes is None:
            measured = False
            nbytes = analytic_state_elements(layer, length) * element
        total += nbytes
    params = sum(p.numel() for layer in layers for p in layer.parameters())
    return {"state_bytes": float(total), "state_bytes_measured": float(measured), "mixer_params": float(params)}
