"""attnbench.flex: turn a FlexAttention ``score_mod`` / ``mask_mod`` into a benchmarked variant.

attention-gym's mods (``torch.nn.attention.flex_attention``) are a few lines each; :func:`variant`
wraps them in an :class:`~attnbench.AttentionSpec`, so a third-party package registers one and
``attnbench run`` trains it on every task::

    import torch
    import attnbench
    from attnbench.flex import variant

    def softcap(score, b, h, q_idx, kv_idx, *, cap=50.0):   # keyword-only -> option softcap.cap
        return cap * torch.tanh(score / cap)

    @attnbench.hookimpl
    def register_attention(register):
        register(variant("softcap", "Gemma 2 tanh soft-capping of the logits", score_mod=softcap))
        # attention-gym's factories keep their signature; their parameters become options:
        register(variant("sliding-window", "causal window", factory=generate_sliding_window,
                         options={"window_size": 8}))            # --variant-option sliding-window.window_size=16
        register(variant("alibi", "ALiBi", factory=generate_alibi_bias, from_config={"H": "num_heads"}))

The math is FlexAttention's: ``softmax(score_mod(q kᵀ/√D) masked by mask_mod ∧ attn_mask ∧ causal) v``,
with ``score_mod(score, b, h, q_idx, kv_idx) -> score`` and ``mask_mod(b, h, q_idx, kv_idx) -> bool``
(True = may attend), indices top-left aligned as ``is_causal``. The model's masks are ANDed with
``mask_mod``: a key-padding mask (B, 1, 1, Lk), a full (…, Lq, Lk) mask (the spec declares
``arbitrary_mask``) and ``is_causal``. A query row with no key left gets output 0 and weights 0,
as ``flex_attention`` gives.

**Semantics.** Mods are evaluated element by element, as FlexAttention does (``torch.vmap`` over
the four index dimensions, indexing captured tensors with the 0-d indices): ``torch.dot`` of
gathered rows, ``interval[0]`` of a gathered pair and ``torch.where`` all work on every backend.
A failing mod is reported with its cause — which captured tensor was indexed out of range with
which index, or that Python control flow on a tensor cannot be vmapped
(:mod:`attnbench.flex.elementwise`).

**Parameters a mod fills by name** (a mod's keyword-only parameters; every parameter of a
factory or output_mod): a field of :class:`~attnbench.AttentionConfig` (``num_heads``,
``head_dim``, ``max_len``, ``causal``, ``cross``, or any name mapped with ``from_config``); a
learnable tensor from ``params=``; a per-batch value from ``context=``; the call's
``batch_size``, ``q_len``, ``kv_len``; otherwise an option with a default (the signature's or
``options=``), which ``--variant-option NAME.KEY=VALUE`` changes. Tensor options are listed by
shape.

**Captured tensors belong to the module**: every tensor, ``nn.Parameter`` and ``nn.Module`` a mod
captures (closure, default, partial, global) is registered on the built module — each module its
own copy of a parameter — so it moves to the device, counts in ``params`` and trains
(:mod:`attnbench.flex.capture`).

**Per-batch context**: a task hands per-batch tensors (``document_ids`` of packed sequences …) to
mods with ``with attnbench.flex.batch_context(document_ids=ids): model(...)``
(:mod:`attnbench.flex.context`).

**Output post-processing**: ``output_mod(out, lse, v_sum)`` (attention-gym's ``undo_softmax``)
is applied to the output on every backend, with the log-sum-exp of the modified scores.

Backends (option ``backend``, default ``auto``), chosen from measurements on torch 2.9.1:

* ``compiled`` — ``torch.compile(flex_attention)``, the fused kernel with block sparsity from
  ``create_block_mask``. ``auto`` picks it on CUDA (not yet measured there). On a shared 2-core
  CPU its first call took 46 s to compile (forward only, B=2, H=2, L=32, no mask), every new
  sequence length compiles again, and at ListOps' shape (B=32, H=4, L=128, D=16) with a
  key-padding block mask, or with gradients, inductor failed after 23–29 s (``InductorError:
  IndexError``): a smoke pairing of seconds cannot afford it there.
* ``dense`` — the same math written out: the scores are materialised (B, H, Lq, Lk) and the mods
  evaluated element-wise over them, masked, softmaxed. ``auto`` picks it off CUDA. It also serves
  ``need_weights=True`` and attention dropout in training (FlexAttention has no dropout) on every
  backend.
* ``flex`` — eager ``flex_attention`` (unfused: it materialises the scores with ``torch.vmap``).

A row measures the backend it names: an explicit ``flex`` or ``compiled`` that fails raises an
error naming the variant and the cause (never a silent switch to ``dense``); ``auto`` may fall back
to ``dense`` once, on its first call, with a warning, and not later. Under the harness's
FlopCounterMode (which cannot run flex_attention's higher-order op) the module runs
``flex_attention`` outside the counter and counts its two matrix products as torch counts SDPA's,
plus the score_mod's own work, so a ``flex`` row's FLOPs, latency and memory are flex's.
"""

from __future__ import annotations

from attnbench.flex.context import CALL_FIELDS, STANDARD_CONTEXT, batch_context, current_context
from attnbench.flex.definition import (
    BACKENDS,
    CONFIG_FIELDS,
    MASK_MOD_ARGS,
    OUTPUT_MOD_ARGS,
    SCORE_MOD_ARGS,
    FlexDefinition,
    TensorKnob,
    definition_of,
    variant,
)

__all__ = [
    "BACKENDS", "CALL_FIELDS", "CONFIG_FIELDS", "MASK_MOD_ARGS", "OUTPUT_MOD_ARGS", "SCORE_MOD_ARGS",
    "STANDARD_CONTEXT", "FlexDefinition", "TensorKnob", "batch_context", "current_context", "definition_of",
    "variant",
]
