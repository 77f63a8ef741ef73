"""What a flex variant is made of — mods, a factory, knobs, parameters, context — and its spec.

:func:`variant` checks the parts when a plugin registers them (a wrong signature is refused,
naming the variant) and returns an :class:`~attnbench.AttentionSpec` whose ``build`` is a
:class:`FlexDefinition`; the conformance kit reads the mods from there
(:func:`definition_of`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attnbench.errors import PluginError
from attnbench.flex.capture import describe, label
from attnbench.flex.context import CALL_FIELDS
from attnbench.specs import AttentionConfig, AttentionSpec

#: What ``score_mod`` and ``mask_mod`` are called with, in order (FlexAttention's signatures).
SCORE_MOD_ARGS: tuple[str, ...] = ("score", "b", "h", "q_idx", "kv_idx")
MASK_MOD_ARGS: tuple[str, ...] = ("b", "h", "q_idx", "kv_idx")
#: What an ``output_mod`` may take by name, besides knobs.
OUTPUT_MOD_ARGS: tuple[str, ...] = ("out", "lse", "v_sum")
#: The values of the ``backend`` option.
BACKENDS: tuple[str, ...] = ("auto", "compiled", "dense", "flex")
#: Parameters filled from the :class:`AttentionConfig` field of the same name.
CONFIG_FIELDS: tuple[str, ...] = ("num_heads", "head_dim", "max_len", "causal", "cross")
_SIMPLE = (bool, int, float, str, type(None))


class TensorKnob:
    """A tensor-valued option as ``attnbench list attention`` shows it: by shape and dtype."""

    def __init__(self, tensor: Any) -> None:
        self.text = describe(tensor)

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorKnob) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


@dataclass(frozen=True, kw_only=True, eq=False)
class FlexDefinition:
    """A flex variant's parts; calling it with an :class:`AttentionConfig` builds the module.

    ``wants`` maps each callable's role (``score_mod``, ``mask_mod``, ``factory``,
    ``output_mod``) to the names of the parameters attnbench fills; ``knobs`` holds the default
    of every option, tensors included.
    """

    name: str
    score_mod: Callable[..., Any] | None = None
    mask_mod: Callable[..., Any] | None = None
    factory: Callable[..., Any] | None = None
    output_mod: Callable[..., Any] | None = None
    knobs: Mapping[str, Any] = field(default_factory=dict)
    from_config: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Callable[[AttentionConfig], Any]] = field(default_factory=dict)
    context: Mapping[str, Callable[..., Any] | None] = field(default_factory=dict)
    wants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    backend: str = "auto"

    def kind(self, name: str) -> str:
        """Where parameter ``name`` gets its value: config, call, context, param or option."""
        if name in self.from_config or name in CONFIG_FIELDS:
            return "config"
        if name in self.params:
            return "param"
        if name in self.context:
            return "context"
        if name in CALL_FIELDS:
            return "call"
        return "option"

    def per_call(self, role: str) -> tuple[str, ...]:
        """The parameters of ``role`` whose values change with every batch."""
        return tuple(n for n in self.wants.get(role, ()) if self.kind(n) in ("call", "context"))

    def __call__(self, config: AttentionConfig) -> Any:
        from attnbench.flex.module import FlexAttention

        return FlexAttention(self, config)


def variant(
    name: str,
    summary: str,
    *,
    score_mod: Callable[..., Any] | None = None,
    mask_mod: Callable[..., Any] | None = None,
    factory: Callable[..., Any] | None = None,
    options: Mapping[str, Any] | None = None,
    from_config: Mapping[str, str] | None = None,
    params: Mapping[str, Callable[[AttentionConfig], Any]] | None = None,
    context: Mapping[str, Callable[..., Any] | None] | None = None,
    output_mod: Callable[..., Any] | None = None,
    complexity: str = "O(L^2)",
    exact: bool | None = None,
    causal: bool = True,
    cross: bool = True,
    weights: bool = True,
    backend: str = "auto",
    citation: str = "",
) -> AttentionSpec:
    """An :class:`AttentionSpec` whose module computes FlexAttention with the given mods.

    :param score_mod: ``score_mod(score, b, h, q_idx, kv_idx, *, knob=default) -> score``, or None.
    :param mask_mod: ``mask_mod(b, h, q_idx, kv_idx, *, knob=default) -> bool``, or None.
    :param factory: instead of fixed mods, a function returning one (a score_mod or a mask_mod,
        told apart by its arguments) or a dict ``{"score_mod": ..., "mask_mod": ...}``, as
        attention-gym's ``generate_*`` functions do; its parameters are filled like a mod's knobs.
        It is called once per built module, or at every forward if it takes per-batch context.
    :param options: defaults of knobs (a mod's keyword-only parameters, a factory's or output_mod's
        parameters), overriding the signature's; plain values become spec options
        (``--variant-option NAME.KEY=VALUE``), tensors are registered on each built module
        (an ``nn.Parameter`` is trained) and listed by shape.
    :param from_config: parameters filled from an :class:`AttentionConfig` field,
        ``{"H": "num_heads"}``; parameters named like a field (``num_heads``, ``head_dim``,
        ``max_len``, ``causal``, ``cross``) are filled without asking.
    :param params: learnable tensors made per built module, ``{"bias": lambda config:
        torch.zeros(config.num_heads, 32)}``: registered as parameters and passed by name.
    :param context: per-batch values the mods or factory read by name, each with a default
        ``default(batch_size=, q_len=, kv_len=, device=)`` for tasks that do not provide it, or None
        to require it (see :mod:`attnbench.flex.context`).
    :param output_mod: ``output_mod(out, lse, v_sum, *, knobs) -> out`` applied to the attention
        output, for mods that change what softmax means (attention-gym's ``undo_softmax``): ``lse``
        is the log-sum-exp of the modified, masked scores (B, H, Lq) and ``v_sum`` the sum of the
        attended values (B, H, Lq, D); it takes only those it names. The variant then returns no
        weights.
    :param exact: whether the output is plain softmax attention; by default True only without mods.
    :param causal, cross, weights: the capabilities to declare (all honoured by the module);
        padding and arbitrary masks are always honoured.
    :param backend: the default of the ``backend`` option, one of :data:`BACKENDS`.
    :raises PluginError: naming the variant, when a part does not take the arguments it is
        called with, a required parameter has no source, two parts give one knob different
        defaults, or ``backend`` is unknown.
    """
    if backend not in BACKENDS:
        raise PluginError(f"flex variant {name!r}: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if factory is not None and (score_mod is not None or mask_mod is not None):
        raise PluginError(f"flex variant {name!r}: pass either factory= or score_mod=/mask_mod=, not both")
    options, from_config = dict(options or {}), dict(from_config or {})
    params, context = dict(params or {}), dict(context or {})
    draft = FlexDefinition(name=name, from_config=from_config, params=params, context=context)
    wants: dict[str, tuple[str, ...]] = {}
    knobs: dict[str, Any] = {}
    parts = (("score_mod", score_mod, SCORE_MOD_ARGS), ("mask_mod", mask_mod, MASK_MOD_ARGS),
             ("factory", factory, ()), ("output_mod", output_mod, OUTPUT_MOD_ARGS))
    for role, fn, fixed in parts:
        if fn is None:
            continue
        wants[role], defaults = _parameters(name, role, fn, fixed, draft, options)
        for key, default in defaults.items():
            if key in knobs and not _same(knobs[key], default):
                raise PluginError(
                    f"flex variant {name!r}: two parts take option {key!r} with different defaults "
                    f"({knobs[key]!r} vs {default!r}); give them one default with options={{{key!r}: ...}}"
                )
            knobs[key] = default
    unused = sorted(set(options) - set(knobs))
    if unused:
        raise PluginError(f"flex variant {name!r}: options {', '.join(map(repr, unused))} are not parameters of "
                          f"its mods, factory or output_mod; remove them or fix the name")
    definition = FlexDefinition(
        name=name, score_mod=score_mod, mask_mod=mask_mod, factory=factory, output_mod=output_mod, knobs=knobs,
        from_config=from_config, params=params, context=context, wants=wants, backend=backend,
    )
    shown = {key: TensorKnob(value) if _is_tensor(value) else value
             for key, value in knobs.items() if isinstance(value, _SIMPLE) or _is_tensor(value)}
    plain = score_mod is None and mask_mod is None and factory is None and output_mod is None
    reads_max_len = any(from_config.get(n, n) == "max_len" for names in wants.values() for n in names)
    return AttentionSpec(
        name=name,
        build=definition,
        summary=summary,
        complexity=complexity,
        exact=plain if exact is None else exact,
        causal=causal,
        padding_mask=True,
        arbitrary_mask=True,
        cross=cross,
        weights=weights and output_mod is None,
        needs_max_len=reads_max_len,
        citation=citation,
        options={**shown, "backend": backend},
        not_incremental="attnbench.flex evaluates mods over the whole (q_idx, kv_idx) grid; no KV-cache step form yet",
    )


def definition_of(spec: AttentionSpec) -> FlexDefinition | None:
    """The parts of a variant made by :func:`variant` (for the conformance kit), else None."""
    build = spec.build
    return build if isinstance(build, FlexDefinition) else None


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "shape") and hasattr(value, "dtype")


def _same(a: Any, b: Any) -> bool:
    if _is_tensor(a) or _is_tensor(b):
        return a is b
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a usable ==
        return a is b


def _parameters(name: str, role: str, fn: Callable[..., Any], fixed: tuple[str, ...], draft: FlexDefinition,
                options: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The names attnbench fills for ``fn`` and the defaults of those that are options."""
    if not callable(fn):
        raise PluginError(f"flex variant {name!r}: {role} is a {type(fn).__name__}, not a function")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"flex variant {name!r}: cannot read the signature of {role} {label(fn)}: {exc}") from None
    params = list(signature.parameters.values())
    if role in ("score_mod", "mask_mod"):
        expected = f"def {role}({', '.join(fixed)}, *, knob=default)"
        keyword_only = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        try:
            signature.bind(*fixed, **dict.fromkeys(keyword_only))
        except TypeError as exc:
            hint = ""
            if role == "score_mod" and _takes(signature, len(MASK_MOD_ARGS)):
                hint = " (it looks like a mask_mod: pass it as mask_mod=)"
            elif role == "mask_mod" and _takes(signature, len(SCORE_MOD_ARGS)):
                hint = " (it looks like a score_mod: pass it as score_mod=)"
            raise PluginError(f"flex variant {name!r}: {role} {label(fn)}{signature} cannot be called as "
                              f"{role}({', '.join(fixed)}): {exc}{hint}; expected {expected}") from None
        filled = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    elif role == "output_mod":
        missing = [n for n in ("out",) if n not in signature.parameters]
        if missing:
            raise PluginError(f"flex variant {name!r}: output_mod {label(fn)}{signature} must take `out` (and may "
                              f"take `lse`, `v_sum`), as attention-gym's undo_softmax(out, lse, v_sum, offset)")
        filled = [p for p in params if p.name not in fixed and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    else:
        filled = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    wants, defaults = [], {}
    for param in filled:
        kind = draft.kind(param.name)
        if kind != "option":
            wants.append(param.name)
            continue
        if param.name in options:
            defaults[param.name] = options[param.name]
        elif param.default is not inspect.Parameter.empty:
            if not isinstance(param.default, _SIMPLE) and not _is_tensor(param.default):
                continue  # a function or object default (activation=F.gelu) stays the part's own
            defaults[param.name] = param.default
        else:
            raise PluginError(
                f"flex variant {name!r}: {role} {label(fn)} has parameter {param.name!r} without a value; give it "
                f"with options={{{param.name!r}: ...}} (it becomes option {name}.{param.name}), "
                f"from_config={{{param.name!r}: 'num_heads'}} for a config field ({', '.join(CONFIG_FIELDS)}), "
                f"params= for a learnable tensor, or context= for a per-batch value"
            )
        wants.append(param.name)
    return tuple(wants), defaults


def _takes(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True
