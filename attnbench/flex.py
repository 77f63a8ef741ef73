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

The math is FlexAttention's: ``softmax(score_mod(q kᵀ/√D) masked by mask_mod ∧ attn_mask ∧ causal) v``,
with ``score_mod(score, b, h, q_idx, kv_idx) -> score`` and ``mask_mod(b, h, q_idx, kv_idx) -> bool``
(True = may attend), indices top-left aligned as ``is_causal``. The model's masks are ANDed with
``mask_mod``: a key-padding mask (B, 1, 1, Lk), a full (…, Lq, Lk) mask (the spec declares
``arbitrary_mask``) and ``is_causal``. A query row with no key left gets output 0 and weights 0,
as ``flex_attention`` gives. Keyword-only parameters of a mod are knobs: one named like an
:class:`~attnbench.AttentionConfig` field (``num_heads``, ``head_dim``, ``max_len``, ``causal``,
``cross``) receives that field; any other needs a default and becomes a spec option
(``attnbench run --variant-option softcap.cap=30``).

Backends (option ``backend``, default ``auto``), chosen from measurements on torch 2.9.1:

* ``compiled`` — ``torch.compile(flex_attention)``, the fused kernel with block sparsity from
  ``create_block_mask``. ``auto`` picks it on CUDA (not yet measured there). On a shared 2-core
  CPU its first call took 46 s to compile (forward only, B=2, H=2, L=32, no mask), every new
  sequence length compiles again, and at ListOps' shape (B=32, H=4, L=128, D=16) with a
  key-padding block mask, or with gradients, inductor failed after 23–29 s (``InductorError:
  IndexError``): a smoke pairing of seconds cannot afford it there. If asked for anyway, a failure
  falls back to ``dense`` with one ``RuntimeWarning``.
* ``dense`` — the same math written out: the scores are materialised (B, H, Lq, Lk), the mods are
  evaluated once on broadcast index grids (``b`` (B,1,1,1), ``h`` (1,H,1,1), ``q_idx`` (1,1,Lq,1),
  ``kv_idx`` (1,1,1,Lk)), masked, softmaxed. ``auto`` picks it off CUDA. It is 2.7× faster than
  eager ``flex_attention`` on CPU (forward+backward, B=32, H=4, L=128, D=16: 118 ms vs 321 ms).
  It also serves ``need_weights=True`` and attention dropout in training (FlexAttention has no
  dropout) on every backend, and it is the fallback when ``flex_attention`` fails on a device.
* ``flex`` — eager ``flex_attention`` (unfused: it materialises the scores with ``torch.vmap``).

A mod must therefore be written with torch operations that work both elementwise under ``vmap``
and on broadcast grids — which is what FlexAttention asks anyway (``torch.where``, not ``if``;
indexing captured tensors like ``bias[h, q_idx - kv_idx]`` is fine).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from attnbench.errors import PluginError
from attnbench.specs import AttentionConfig, AttentionSpec

if TYPE_CHECKING:
    from torch import nn

#: What ``score_mod`` and ``mask_mod`` are called with, in order (FlexAttention's signatures).
SCORE_MOD_ARGS: tuple[str, ...] = ("score", "b", "h", "q_idx", "kv_idx")
MASK_MOD_ARGS: tuple[str, ...] = ("b", "h", "q_idx", "kv_idx")
#: The values of the ``backend`` option.
BACKENDS: tuple[str, ...] = ("auto", "compiled", "dense", "flex")
#: Keyword-only mod parameters filled from the :class:`AttentionConfig` rather than from options.
CONFIG_FIELDS: tuple[str, ...] = ("num_heads", "head_dim", "max_len", "causal", "cross")


def variant(
    name: str,
    summary: str,
    *,
    score_mod: Callable[..., Any] | None = None,
    mask_mod: Callable[..., Any] | None = None,
    complexity: str = "O(L^2)",
    exact: bool | None = None,
    causal: bool = True,
    cross: bool = True,
    weights: bool = True,
    backend: str = "auto",
    citation: str = "",
) -> AttentionSpec:
    """An :class:`AttentionSpec` whose module computes FlexAttention with ``score_mod`` and ``mask_mod``.

    :param name: the variant's name (``attnbench run --variants NAME``).
    :param summary: one line for ``attnbench list attention``.
    :param score_mod: ``score_mod(score, b, h, q_idx, kv_idx, *, knob=default) -> score``, or None.
    :param mask_mod: ``mask_mod(b, h, q_idx, kv_idx, *, knob=default) -> bool tensor``, or None.
    :param exact: whether the output is plain softmax attention; by default True only without mods.
    :param causal, cross, weights: the capabilities to declare (all honoured by the module);
        padding and arbitrary masks are always honoured.
    :param backend: the default of the ``backend`` option, one of :data:`BACKENDS`.
    :raises PluginError: naming the variant, when a mod does not take FlexAttention's arguments,
        two mods give one knob different defaults, or ``backend`` is unknown.
    """
    if backend not in BACKENDS:
        raise PluginError(f"flex variant {name!r}: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    knobs = _knobs(name, "score_mod", score_mod, SCORE_MOD_ARGS)
    for key, default in _knobs(name, "mask_mod", mask_mod, MASK_MOD_ARGS).items():
        if key in knobs and knobs[key] != default:
            raise PluginError(
                f"flex variant {name!r}: score_mod and mask_mod both take option {key!r} with different "
                f"defaults ({knobs[key]!r} vs {default!r}); give them one default or rename one"
            )
        knobs[key] = default
    options = {key: value for key, value in knobs.items() if key not in CONFIG_FIELDS}
    return AttentionSpec(
        name=name,
        build=functools.partial(_build, name, score_mod, mask_mod, backend),
        summary=summary,
        complexity=complexity,
        exact=(score_mod is None and mask_mod is None) if exact is None else exact,
        causal=causal,
        padding_mask=True,
        arbitrary_mask=True,
        cross=cross,
        weights=weights,
        citation=citation,
        options={**options, "backend": backend},
    )


def _knobs(name: str, role: str, mod: Callable[..., Any] | None, args: tuple[str, ...]) -> dict[str, Any]:
    """Check that ``mod`` takes FlexAttention's positional arguments; return its keyword-only knobs."""
    if mod is None:
        return {}
    expected = f"def {role}({', '.join(args)}, *, knob=default)"
    if not callable(mod):
        raise PluginError(f"flex variant {name!r}: {role} is a {type(mod).__name__}, not a function; expected {expected}")
    label = getattr(mod, "__qualname__", repr(mod))
    try:
        signature = inspect.signature(mod)
        keyword_only = [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        signature.bind(*args, **dict.fromkeys(keyword_only))  # keyword-only knobs are checked below
    except (TypeError, ValueError) as exc:
        hint = ""
        if role == "score_mod" and _takes(mod, len(MASK_MOD_ARGS)):
            hint = " (it looks like a mask_mod: pass it as mask_mod=)"
        elif role == "mask_mod" and _takes(mod, len(SCORE_MOD_ARGS)):
            hint = " (it looks like a score_mod: pass it as score_mod=)"
        raise PluginError(
            f"flex variant {name!r}: {role} {label}{_sig(mod)} cannot be called as {role}({', '.join(args)}): "
            f"{exc}{hint}; expected {expected}"
        ) from None
    knobs = {}
    for param in signature.parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if param.name in CONFIG_FIELDS:
            knobs[param.name] = None
        elif param.default is inspect.Parameter.empty:
            raise PluginError(
                f"flex variant {name!r}: {role} {label} has keyword-only parameter {param.name!r} without a "
                f"default; give it a default (it becomes option {name}.{param.name}) or name it after an "
                f"AttentionConfig field ({', '.join(CONFIG_FIELDS)})"
            )
        else:
            knobs[param.name] = param.default
    return knobs


def _takes(mod: Callable[..., Any], count: int) -> bool:
    try:
        inspect.signature(mod).bind(*range(count))
    except (TypeError, ValueError):
        return False
    return True


def _sig(mod: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(mod))
    except (TypeError, ValueError):
        return "(?)"


def _bind(mod: Callable[..., Any] | None, config: AttentionConfig, defaults: Mapping[str, Any]) -> Callable[..., Any] | None:
    """``mod`` with its keyword-only knobs filled from ``config`` (fields, then options)."""
    if mod is None:
        return None
    values = {}
    for param in inspect.signature(mod).parameters.values():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            key = param.name
            values[key] = getattr(config, key) if key in CONFIG_FIELDS else config.option(key, defaults[key])
    return functools.partial(mod, **values) if values else mod


def _build(name: str, score_mod, mask_mod, default_backend: str, config: AttentionConfig) -> nn.Module:
    defaults = {}
    for role, mod, args in (("score_mod", score_mod, SCORE_MOD_ARGS), ("mask_mod", mask_mod, MASK_MOD_ARGS)):
        defaults.update(_knobs(name, role, mod, args))
    backend = config.option("backend", default_backend)
    if backend not in BACKENDS:
        raise PluginError(
            f"flex variant {name!r}: option backend={backend!r} is not one of {', '.join(BACKENDS)}; "
            f"pass e.g. --variant-option {name}.backend=dense"
        )
    return _module_type()(name, _bind(score_mod, config, defaults), _bind(mask_mod, config, defaults),
                          backend, config.dropout)


@functools.cache
def _compiled_flex() -> Callable[..., Any]:
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


@functools.cache
def _module_type() -> type:
    """The module class, made on first build so ``import attnbench`` does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from attnbench.nn.masks import dense_mask

    class FlexAttention(nn.Module):
        """FlexAttention with a user's ``score_mod`` / ``mask_mod``; see :mod:`attnbench.flex`.

        ``last_backend`` says which path the latest forward took (``compiled``, ``flex`` or
        ``dense``); ``fallback_reason`` holds why ``flex_attention`` was abandoned, if it was.
        """

        def __init__(self, name: str, score_mod, mask_mod, backend: str, dropout: float) -> None:
            super().__init__()
            self.variant, self.score_mod, self.mask_mod = name, score_mod, mask_mod
            self.backend, self.dropout = backend, dropout
            self.last_backend: str | None = None
            self.fallback_reason: str | None = None

        def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
            dropout = self.dropout if self.training else 0.0
            backend = self.backend
            if backend == "auto":
                backend = "compiled" if q.device.type == "cuda" else "dense"
            if backend != "dense" and not need_weights and dropout == 0.0 and self.fallback_reason is None:
                try:
                    out = self._flex(q, k, v, attn_mask, is_causal, compiled=backend == "compiled")
                    self.last_backend = backend
                    return out
                except Exception as exc:  # noqa: BLE001 - any failure of flex_attention falls back to the same math
                    self.fallback_reason = f"{type(exc).__name__}: {exc}"
                    warnings.warn(
                        f"flex variant {self.variant!r}: flex_attention ({backend}) failed on {q.device.type} "
                        f"({self.fallback_reason}); computing the same math densely from now on",
                        RuntimeWarning, stacklevel=2,
                    )
            self.last_backend = "dense"
            out, weights = self._dense(q, k, v, attn_mask, is_causal, dropout)
            return (out, weights) if need_weights else out

        def _grids(self, q, k):
            b, h, lq, lk = q.shape[0], q.shape[1], q.shape[-2], k.shape[-2]
            return (torch.arange(b, device=q.device).view(b, 1, 1, 1), torch.arange(h, device=q.device).view(1, h, 1, 1),
                    torch.arange(lq, device=q.device).view(1, 1, lq, 1), torch.arange(lk, device=q.device).view(1, 1, 1, lk))

        def _call(self, role: str, mod, *args):
            try:
                result = mod(*args)
            except Exception as exc:
                raise PluginError(
                    f"flex variant {self.variant!r}: {role} failed on index grids ({type(exc).__name__}: {exc}); "
                    "write it with torch operations that broadcast (torch.where, not if/and/or on tensors)"
                ) from exc
            shape = args[0].shape if role == "score_mod" else torch.broadcast_shapes(*(a.shape for a in args))
            if not isinstance(result, torch.Tensor) or torch.broadcast_shapes(result.shape, shape) != shape:
                got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
                raise PluginError(
                    f"flex variant {self.variant!r}: {role} returned {got}, expected a tensor broadcastable to "
                    f"{tuple(shape)} (one value per b, h, q_idx, kv_idx)"
                )
            if role == "mask_mod" and result.dtype != torch.bool:
                raise PluginError(
                    f"flex variant {self.variant!r}: mask_mod returned dtype {result.dtype}, expected torch.bool "
                    "(True = may attend); compare, e.g. q_idx >= kv_idx"
                )
            return result

        def _dense(self, q, k, v, attn_mask, is_causal, dropout):
            """The math written out: (out, weights), the scores materialised as (B, H, Lq, Lk)."""
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            grids = self._grids(q, k)
            if self.score_mod is not None:
                scores = self._call("score_mod", self.score_mod, scores, *grids).to(scores.dtype).expand_as(scores)
            mask = dense_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
            if self.mask_mod is not None:
                user = self._call("mask_mod", self.mask_mod, *grids)
                mask = user if mask is None else mask & user
            if mask is None:
                weights = torch.softmax(scores, dim=-1)
            else:
                # A row with no key left would be 0/0; like flex_attention it gets weights 0 (and no NaN gradient).
                alive = mask.any(-1, keepdim=True)
                scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~alive, 0.0)
                weights = torch.softmax(scores, dim=-1).masked_fill(~alive, 0.0)
            return F.dropout(weights, dropout, training=dropout > 0) @ v, weights

        def _flex(self, q, k, v, attn_mask, is_causal, compiled: bool):
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            b, h, lq, lk = q.shape[0], q.shape[1], q.shape[-2], k.shape[-2]
            parts = []
            if self.mask_mod is not None:
                parts.append(self.mask_mod)
            if is_causal:
                parts.append(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx)
            if attn_mask is not None:
                allowed = attn_mask.to(torch.bool)
                if allowed.dim() == 4 and allowed.shape[1] == 1 and allowed.shape[2] == 1:
                    keys = allowed[:, 0, 0, :].expand(b, lk)
                    parts.append(lambda b, h, q_idx, kv_idx: keys[b, kv_idx])
                else:
                    full = allowed.expand(b, h, lq, lk)
                    parts.append(lambda b, h, q_idx, kv_idx: full[b, h, q_idx, kv_idx])
            block_mask = None
            if parts:
                def combined(b, h, q_idx, kv_idx):
                    keep = parts[0](b, h, q_idx, kv_idx)
                    for part in parts[1:]:
                        keep = keep & part(b, h, q_idx, kv_idx)
                    return keep

                block_mask = create_block_mask(combined, b, h, lq, lk, device=q.device)
            run = _compiled_flex() if compiled else flex_attention
            # Eager flex_attention still traces the mods with dynamo; a float knob that changed between
            # modules (cap=50, then cap=5) would otherwise become a SymFloat, which flex_attention rejects.
            with warnings.catch_warnings(), torch._dynamo.config.patch(specialize_float=True):
                warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
                return run(q, k, v, score_mod=self.score_mod, block_mask=block_mask, scale=1.0 / math.sqrt(q.shape[-1]))

    return FlexAttention
