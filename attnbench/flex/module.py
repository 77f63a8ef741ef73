"""The module a flex variant builds: FlexAttention's math on the ``dense``, ``flex`` or ``compiled`` path.

It owns what its mods capture (see :mod:`attnbench.flex.capture`), binds per-batch context
at each forward (:mod:`attnbench.flex.context`), evaluates mods element-wise on the dense
path (:mod:`attnbench.flex.elementwise`) and, under the harness's FLOP counter, runs
``flex_attention`` outside it and counts its FLOPs itself (:mod:`attnbench.flops`), so a
``flex`` row's FLOPs, latency and memory are flex's.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.errors import PluginError
from attnbench.flex import capture
from attnbench.flex.context import current_context
from attnbench.flex.definition import BACKENDS, FlexDefinition, _is_tensor
from attnbench.flex.elementwise import evaluate, indices
from attnbench.flops import active_flop_counter, add_flops, outside_flop_counter
from attnbench.nn.masks import dense_mask
from attnbench.specs import AttentionConfig


class _Shared(list):
    """A list that copies as itself: it holds module globals dicts, which a deep copy of the model
    (an EMA copy, a best checkpoint) must share, not duplicate."""

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self

    def __copy__(self) -> _Shared:
        return self


class _Owned:
    """A value the module registered (a parameter, buffer or submodule), looked up at each forward."""

    def __init__(self, attr: str) -> None:
        self.attr = attr


class FlexAttention(nn.Module):
    """FlexAttention with a variant's ``score_mod`` / ``mask_mod``; see :mod:`attnbench.flex`.

    ``last_backend`` says which path the latest forward took (``compiled``, ``flex`` or
    ``dense``) and ``backend_calls`` counts the forwards each path took; ``fallback_reason`` holds
    why ``auto`` abandoned ``flex_attention``, if it did.
    """

    def __init__(self, definition: FlexDefinition, config: AttentionConfig) -> None:
        super().__init__()
        self.definition, self.variant = definition, definition.name
        self.backend = config.option("backend", definition.backend)
        if self.backend not in BACKENDS:
            raise PluginError(
                f"flex variant {self.variant!r}: option backend={self.backend!r} is not one of {', '.join(BACKENDS)}; "
                f"pass e.g. --variant-option {self.variant}.backend=dense"
            )
        self.dropout = config.dropout
        self.last_backend: str | None = None
        self.backend_calls: Counter[str] = Counter()
        self.fallback_reason: str | None = None
        self._calls = 0
        self._captured: dict[int, str] = {}  # id(tensor or module a mod captured) -> attribute holding ours
        self._labels: dict[str, str] = {}  # attribute -> how messages name it
        self._values = self._static_values(config)
        mods = {"score_mod": definition.score_mod, "mask_mod": definition.mask_mod}
        if definition.factory is not None and not definition.per_call("factory"):
            mods = self._split(self._call_factory(self._resolve(self._values)))
        self._mods = mods
        self._globals: _Shared = _Shared()
        for role, mod in (*mods.items(), ("output_mod", definition.output_mod)):
            if mod is not None:
                self._own_captured(role, mod)
                self._globals += [(g, n, id(g[n])) for g, n in capture.global_uses(mod) if id(g[n]) in self._captured]
        self._cache: tuple[Any, ...] | None = None

    # -- building --------------------------------------------------------------------------------------------

    def _register(self, attr: str, value: Any, what: str) -> _Owned:
        attr = self._free_name(attr)
        if isinstance(value, nn.Module):
            self.add_module(attr, value)
        elif isinstance(value, nn.Parameter):
            self.register_parameter(attr, value)
        else:
            self.register_buffer(attr, value, persistent=False)
        self._labels[attr] = what
        return _Owned(attr)

    def _free_name(self, base: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in base).strip("_") or "captured"
        name, n = f"mod_{base}", 1
        while hasattr(self, name):
            n += 1
            name = f"mod_{base}_{n}"
        return name

    def _static_values(self, config: AttentionConfig) -> dict[str, Any]:
        """Every parameter value fixed at build: config fields, options, learnable params."""
        d, values = self.definition, {}
        names = {n for role in d.wants for n in d.wants[role]}
        for name in sorted(names):
            kind = d.kind(name)
            if kind == "config":
                values[name] = getattr(config, d.from_config.get(name, name))
            elif kind == "param":
                made = d.params[name](config)
                if not isinstance(made, torch.Tensor):
                    raise PluginError(f"flex variant {self.variant!r}: params[{name!r}](config) returned "
                                      f"{type(made).__name__}, expected a tensor")
                values[name] = self._register(name, nn.Parameter(made.detach().clone()), f"parameter {name!r}")
            elif kind == "option":
                default = d.knobs[name]
                if _is_tensor(default):
                    values[name] = self._register(name, capture.owned_copy(default), f"option tensor {name!r}")
                else:
                    values[name] = config.option(name, default)
        return values

    def _own_captured(self, role: str, mod: Any) -> None:
        for path, value in capture.walk(mod, capture.label(mod)):
            if id(value) in self._captured:
                continue
            mine = next((a for a in self._labels if getattr(self, a, None) is value), None)
            if mine is not None:  # an option tensor or parameter a factory captured: follow it when it moves
                self._captured[id(value)] = mine
                continue
            if isinstance(value, torch.Tensor) and value.requires_grad and not value.is_leaf:
                raise PluginError(
                    f"flex variant {self.variant!r}: {role} captures {path!r}, a tensor computed from a parameter "
                    f"({capture.describe(value)}, grad_fn {type(value.grad_fn).__name__}); its graph is freed after "
                    "the first backward, so it cannot train. Capture the nn.Parameter itself and index it inside "
                    "the mod, or declare it with params="
                )
            owned = self._register(path.rsplit(".", 1)[-1], capture.owned_copy(value), f"captured {path!r}")
            self._captured[id(value)] = owned.attr

    def _split(self, made: Any) -> dict[str, Any]:
        """A factory's result as {"score_mod": ..., "mask_mod": ...}, told apart by arguments."""
        if isinstance(made, dict):
            unknown = set(made) - {"score_mod", "mask_mod"}
            if unknown:
                raise PluginError(f"flex variant {self.variant!r}: factory returned keys {sorted(unknown)}; "
                                  "expected score_mod and/or mask_mod")
            return {"score_mod": made.get("score_mod"), "mask_mod": made.get("mask_mod")}
        if not callable(made):
            raise PluginError(f"flex variant {self.variant!r}: factory returned {type(made).__name__}, expected a "
                              "score_mod or mask_mod function (or a dict of them)")
        import inspect

        try:
            positional = [p for p in inspect.signature(made).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
        except (TypeError, ValueError):
            positional = []
        if len(positional) == 5:
            return {"score_mod": made, "mask_mod": None}
        if len(positional) == 4:
            return {"score_mod": None, "mask_mod": made}
        raise PluginError(f"flex variant {self.variant!r}: the factory's result {capture.label(made)} takes "
                          f"{len(positional)} arguments; a score_mod takes 5 (score, b, h, q_idx, kv_idx), "
                          "a mask_mod 4 (b, h, q_idx, kv_idx); return a dict to say which")

    def _call_factory(self, values: dict[str, Any]) -> Any:
        d = self.definition
        kwargs = {n: values[n] for n in d.wants["factory"]}
        try:
            return d.factory(**kwargs)
        except PluginError:
            raise
        except Exception as exc:
            shown = ", ".join(f"{k}={capture.describe(v) if isinstance(v, torch.Tensor) else v!r}"
                              for k, v in kwargs.items())
            raise PluginError(f"flex variant {self.variant!r}: its factory {capture.label(d.factory)}({shown}) failed: "
                              f"{type(exc).__name__}: {exc}") from exc

    # -- binding at each forward -----------------------------------------------------------------------------

    def _resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: getattr(self, v.attr) if isinstance(v, _Owned) else v for k, v in values.items()}

    def _per_call(self, batch: int, q_len: int, kv_len: int, device: torch.device) -> dict[str, Any]:
        d = self.definition
        names = {n for role in d.wants for n in d.per_call(role)}
        values: dict[str, Any] = {}
        given = current_context()
        sizes = {"batch_size": batch, "q_len": q_len, "kv_len": kv_len}
        for name in names:
            if d.kind(name) == "call":
                values[name] = sizes[name]
            elif name in given:
                values[name] = given[name]
            elif d.context[name] is not None:
                values[name] = d.context[name](batch_size=batch, q_len=q_len, kv_len=kv_len, device=device)
            else:
                raise PluginError(
                    f"flex variant {self.variant!r} reads per-batch {name!r}, which this task does not provide; a task "
                    f"provides it by running the model inside attnbench.flex.batch_context({name}=...), or the "
                    f"variant declares a default with context={{{name!r}: default}}"
                )
        return values

    def bound_mods(self, batch: int, q_len: int, kv_len: int, device: torch.device) -> dict[str, Any]:
        """The mods of one call, taking FlexAttention's positional arguments only: knobs, parameters and
        per-batch context bound, captured tensors replaced by this module's (public for the kit)."""
        d = self.definition
        per_call = self._per_call(batch, q_len, kv_len, device)
        replace = {orig: getattr(self, attr) for orig, attr in self._captured.items()}
        key = (tuple(id(v) for v in replace.values()), tuple((k, id(v)) for k, v in per_call.items()),
               tuple(id(getattr(self, v.attr)) for v in self._values.values() if isinstance(v, _Owned)))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        self._per_call_values = per_call
        values = {**self._resolve(self._values), **per_call}
        mods = dict(self._mods)
        if d.factory is not None and d.per_call("factory"):
            mods = self._split(self._call_factory(values))
        else:
            mods = {role: capture.rebind(mod, replace) for role, mod in mods.items()}
        bound: dict[str, Any] = {}
        for role in ("score_mod", "mask_mod"):
            mod, wanted = mods[role], d.wants.get(role, ()) if d.factory is None else ()
            bound[role] = functools.partial(mod, **{n: values[n] for n in wanted}) if mod is not None and wanted else mod
        if d.output_mod is not None:
            output_mod = capture.rebind(d.output_mod, replace)
            bound["output_mod"] = functools.partial(output_mod, **{n: values[n] for n in d.wants["output_mod"]})
        self._cache = (key, bound)
        return bound

    def names(self, extra: dict[str, Any] | None = None) -> dict[int, str]:
        """``id(tensor) -> name`` of every tensor the mods may index, for error messages."""
        named = {id(getattr(self, attr)): what for attr, what in self._labels.items()}
        given = {**getattr(self, "_per_call_values", {}), **current_context(), **(extra or {})}
        for key, value in given.items():
            if isinstance(value, torch.Tensor):
                named[id(value)] = f"per-batch context {key!r}"
        return named

    @contextmanager
    def own_tensors(self) -> Iterator[None]:
        """Within the block, module globals a mod reads name this module's copies (forward enters it)."""
        saved = [(g, name, g[name]) for g, name, _ in self._globals]
        try:
            for g, name, original in self._globals:
                g[name] = getattr(self, self._captured[original])
            yield
        finally:
            for g, name, value in saved:
                g[name] = value

    # -- forward ---------------------------------------------------------------------------------------------

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        if not self._globals:
            return self._forward(q, k, v, attn_mask, is_causal, need_weights)
        with self.own_tensors():
            return self._forward(q, k, v, attn_mask, is_causal, need_weights)

    def _forward(self, q, k, v, attn_mask, is_causal, need_weights):
        dropout = self.dropout if self.training else 0.0
        self._calls += 1
        backend = self.backend
        if backend == "auto":
            backend = "compiled" if q.device.type == "cuda" and self.fallback_reason is None else "dense"
        mods = self.bound_mods(q.shape[0], q.shape[-2], k.shape[-2], q.device)
        if backend != "dense" and not need_weights and dropout == 0.0:
            try:
                out = self._flex(q, k, v, attn_mask, is_causal, mods, compiled=backend == "compiled")
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of flex_attention is reported or, once, fallen back from
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self._evaluate_mods(q, k, mods)  # a mod that fails element-wise too is reported with its own cause
                if self.backend != "auto" or self._calls > 1:
                    raise PluginError(
                        f"flex variant {self.variant!r}: flex_attention ({backend}) failed on {q.device.type} "
                        f"({reason}); a row named for this backend must measure it, so it is not replaced. "
                        f"Run the same math densely with --variant-option {self.variant}.backend=dense"
                    ) from exc
                self.fallback_reason = reason
                warnings.warn(
                    f"flex variant {self.variant!r}: backend auto: flex_attention ({backend}) failed on "
                    f"{q.device.type} ({reason}); this module computes the same math densely from now on",
                    RuntimeWarning, stacklevel=2,
                )
            else:
                self.last_backend = backend
                self.backend_calls[backend] += 1
                return out
        self.last_backend = "dense"
        self.backend_calls["dense"] += 1
        out, weights = self._dense(q, k, v, attn_mask, is_causal, dropout, mods)
        return (out, weights) if need_weights else out

    def _evaluate_mods(self, q, k, mods) -> None:
        idx = indices(q.shape[0], q.shape[1], q.shape[-2], k.shape[-2], q.device)
        with torch.no_grad():
            if mods["score_mod"] is not None:
                scores = torch.zeros(*(len(i) for i in idx), dtype=q.dtype, device=q.device)
                evaluate(self.variant, "score_mod", mods["score_mod"], scores, idx, self.names())
            if mods["mask_mod"] is not None:
                evaluate(self.variant, "mask_mod", mods["mask_mod"], None, idx, self.names())

    def _dense(self, q, k, v, attn_mask, is_causal, dropout, mods):
        """The math written out: (out, weights), the scores materialised as (B, H, Lq, Lk)."""
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        idx = indices(q.shape[0], q.shape[1], q.shape[-2], k.shape[-2], q.device)
        names = self.names()
        if mods["score_mod"] is not None:
            scores = evaluate(self.variant, "score_mod", mods["score_mod"], scores, idx, names).to(scores.dtype)
        mask = dense_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
        if mods["mask_mod"] is not None:
            user = evaluate(self.variant, "mask_mod", mods["mask_mod"], None, idx, names)
            mask = user if mask is None else mask & user
        if mask is None:
            weights = torch.softmax(scores, dim=-1)
        else:
            # A row with no key left would be 0/0; like flex_attention it gets weights 0 (and no NaN gradient).
            alive = mask.any(-1, keepdim=True)
            scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~alive, 0.0)
            weights = torch.softmax(scores, dim=-1).masked_fill(~alive, 0.0)
        out = F.dropout(weights, dropout, training=dropout > 0) @ v
        if "output_mod" in mods:
            lse = torch.logsumexp(scores, dim=-1)
            if mask is not None:
                lse = lse.masked_fill(~alive[..., 0].expand_as(lse), float("-inf"))
            v_sum = (mask.to(v.dtype) @ v) if mask is not None else v.sum(-2, keepdim=True).expand_as(out)
            out = self._output(mods["output_mod"], out, lse, v_sum)
        return out, weights

    def _output(self, output_mod, out, lse, v_sum):
        wanted = self.definition.wants.get("output_mod", ())
        import inspect

        takes = inspect.signature(self.definition.output_mod).parameters
        given = {"out": out, "lse": lse, "v_sum": v_sum}
        result = output_mod(**{n: t for n, t in given.items() if n in takes and n not in wanted})
        if not isinstance(result, torch.Tensor) or result.shape != out.shape:
            got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
            raise PluginError(f"flex variant {self.variant!r}: output_mod returned {got}, expected {tuple(out.shape)}")
        return result

    def _flex(self, q, k, v, attn_mask, is_causal, mods, compiled: bool):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        b, h, lq, lk = q.shape[0], q.shape[1], q.shape[-2], k.shape[-2]
        parts = []
        if mods["mask_mod"] is not None:
            parts.append(mods["mask_mod"])
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
        scale = 1.0 / math.sqrt(q.shape[-1])
        want_lse = "output_mod" in mods

        def call(score_mod):
            # Eager flex_attention still traces the mods with dynamo; a float knob that changed between
            # modules (cap=50, then cap=5) would otherwise become a SymFloat, which flex_attention rejects.
            with warnings.catch_warnings(), torch._dynamo.config.patch(specialize_float=True):
                warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
                warnings.filterwarnings("ignore", message=".*return_lse.*deprecated.*")
                return run(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale, return_lse=want_lse)

        counter = active_flop_counter()
        if counter is None:
            result = call(mods["score_mod"])
        else:
            # The counter cannot dispatch flex_attention's higher-order op: run it outside, count its two
            # matrix products as torch counts SDPA's, and the score_mod's own work by evaluating it here.
            with outside_flop_counter(), _eager_hop(not torch.is_grad_enabled()):
                result = call(mods["score_mod"])
            add_flops(counter, "flex_attention", 2 * b * h * lq * lk * (q.shape[-1] + v.shape[-1]))
            if mods["score_mod"] is not None:
                self._evaluate_mods(q, k, {"score_mod": mods["score_mod"], "mask_mod": None})
        if not want_lse:
            return result
        out, lse = result
        with outside_flop_counter() if counter is not None else _nothing(), _eager_hop(
                counter is not None and not torch.is_grad_enabled()):
            zero_out, zero_lse = run(q, k, v, score_mod=_zero_score, block_mask=block_mask, scale=scale,
                                     return_lse=True)
        v_sum = zero_out * zero_lse.exp().unsqueeze(-1)
        return self._output(mods["output_mod"], out, lse, v_sum)


@contextmanager
def _eager_hop(enabled: bool) -> Iterator[None]:
    """Without gradients, run flex_attention's higher-order op eagerly, not through torch.compile:
    compiling it beside a FLOP counter left torch.compile's cache so that the next call with
    gradients failed (``Unsupported: Attempted to inline function marked as skipped``, torch 2.9)."""
    import torch.nn.attention.flex_attention as flex_module

    if not enabled or not hasattr(flex_module, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG"):
        yield
        return
    saved = flex_module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG
    flex_module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = True
    try:
        yield
    finally:
        flex_module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = saved


def _zero_score(score, b, h, q_idx, kv_idx):
    """Every attended key scores 0: flex_attention then returns the mean of the attended values."""
    return score * 0.0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)
