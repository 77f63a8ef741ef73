"""Changing a pairing's setup from the command line: ``--set``, ``--variant-option``, ``--sweep``.

* ``--set KEY=VALUE`` replaces a key of the resolved profile of every selected task that
  has it (``length=4096``); it is an error only when none has it.
* ``--set TASK.KEY=VALUE`` replaces it for that task alone (``lra-text.length=64``), and
  wins over the bare form; the task must be selected and have the key.
* ``--variant-option NAME.KEY=VALUE`` sets an option the variant declares in its spec's
  ``options`` (``local.window=256``); it reaches ``AttentionConfig.options``.
* ``--sweep KEY=V1,V2,…`` runs the matrix once per value of a profile key (``TASK.KEY``
  sweeps one task; tasks without the key run once).

Values are parsed as JSON where they can be (``3``, ``0.5``, ``true``, ``null``) and as
text otherwise, then converted to the type of the value they replace, so ``steps=500``
stays an int and ``lr=1e-3`` a float. Values of well-known keys must lie in their range
(:data:`RANGES`: ``steps`` ≥ 1, ``batch_size`` ≥ 1, ``dropout`` in [0, 1), …), and a
setting a task enumerates in its optional ``setting_choices`` (``{"positions": ("none",
"shift", "sinusoidal", "learned")}``) must be one of those values, so a setting no task can
train with is refused before any work. Unknown keys, values of the wrong type, out of range
or not among the choices are an :class:`~attnbench.errors.AttnbenchError` that names the
key, the value and what it accepts. Every override is part of the row's identity (its
configuration hash), so such rows never merge with default ones.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from attnbench.errors import AttnbenchError, UnknownNameError

#: An override as it travels in a Pairing: sorted (key, value) pairs, hashable.
Overrides = tuple[tuple[str, Any], ...]


class OverrideError(AttnbenchError, ValueError):
    """A ``--set``/``--variant-option``/``--sweep`` argument that cannot be applied."""


def parse_assignment(text: str, flag: str) -> tuple[str, Any]:
    """``"key=value"`` → ``("key", parsed value)``; a clear error for anything else."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise OverrideError(f"{flag} takes KEY=VALUE, got {text!r}")
    return key.strip(), parse_value(raw.strip())


def parse_value(raw: str) -> Any:
    """JSON where the text is JSON (numbers, true/false, null, lists), else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def coerce(value: Any, like: Any, where: str) -> Any:
    """``value`` converted to the type of ``like`` (the value it replaces)."""
    if like is None or value is None:
        return value
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        raise OverrideError(f"{where} takes true or false, got {value!r}")
    if isinstance(like, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise OverrideError(f"{where} takes an integer (like its default {like!r}), got {value!r}")
    if isinstance(like, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise OverrideError(f"{where} takes a number (like its default {like!r}), got {value!r}")
    if isinstance(like, str):
        return value if isinstance(value, str) else json.dumps(value)
    if isinstance(like, (list, tuple)) and isinstance(value, list):
        return value
    if type(value) is not type(like):
        raise OverrideError(f"{where} takes a value like {like!r}, got {value!r}")
    return value


class Range(NamedTuple):
    """The values a profile key can take: ``low``/``high`` bounds (None: unbounded), each inclusive or not."""

    low: float | None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies in the range (NaN never does)."""
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and not (value >= self.low if self.low_inclusive else value > self.low):
            return False
        return self.high is None or (value <= self.high if self.high_inclusive else value < self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'≥' if self.low_inclusive else '>'} {self.low:g}"
        return f"in {'[' if self.low_inclusive else '('}{self.low:g}, {self.high:g}{']' if self.high_inclusive else ')'}"


_COUNT = Range(1)
#: Ranges of well-known profile keys, checked on every ``--set``/``--sweep`` value (a task's
#: other keys are checked by their type only). A value of None stays allowed where the profile has None.
RANGES: dict[str, Range] = {
    **dict.fromkeys(
        ("steps", "epochs", "batch_size", "eval_batch_size", "heads", "dim", "depth", "enc_depth", "dec_depth",
         "encoder_depth", "decoder_depth", "ff_dim", "length", "max_len", "max_length", "vocab_size", "patch_size",
         "image_size", "beam", "stride", "num_queries", "n_mels"), _COUNT),
    "warmup_steps": Range(0),
    "lr": Range(0, low_inclusive=False),
    "weight_decay": Range(0),
    "clip_norm": Range(0, low_inclusive=False),
    "dropout": Range(0, 1, high_inclusive=False),
    "drop_path": Range(0, 1, high_inclusive=False),
    "label_smoothing": Range(0, 1, high_inclusive=False),
}


def check_range(key: str, value: Any, where: str) -> None:
    """Refuse ``value`` for ``key`` when it lies outside the key's :data:`RANGES` entry."""
    allowed = RANGES.get(key)
    if allowed is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not allowed.admits(value):
        kind = "an integer" if isinstance(value, int) else "a number"
        raise OverrideError(f"{where} must be {kind} {allowed}, got {value!r}")


def check_choice(key: str, value: Any, choices: Mapping[str, Sequence[Any]], where: str) -> None:
    """Refuse ``value`` for ``key`` when the task enumerates ``key``'s values (``choices``) and it is not one."""
    allowed = choices.get(key)
    if allowed is not None and value not in allowed:
        raise OverrideError(f"{where} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def setting_choices(task: Any) -> Mapping[str, Sequence[Any]]:
    """The values each enumerated setting of ``task`` accepts: its optional ``setting_choices`` ({} without)."""
    return getattr(task, "setting_choices", None) or {}


def apply_task_overrides(task_name: str, config: Mapping[str, Any], overrides: Iterable[tuple[str, Any]],
                         choices: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """The profile ``config`` with ``overrides`` applied; unknown keys list the valid ones, values
    outside a well-known key's range (:data:`RANGES`) are refused with that range, and values of a
    setting the task enumerates (``choices``: its ``setting_choices``) with the values it accepts."""
    resolved = dict(config)
    for key, value in overrides:
        if key not in resolved:
            raise UnknownNameError(
                f"task {task_name!r} has no setting {key!r}; --set/--sweep accept: {', '.join(sorted(resolved))}"
            )
        where = f"--set {key} (task {task_name!r})"
        resolved[key] = coerce(value, resolved[key], where)
        check_range(key, resolved[key], where)
        check_choice(key, resolved[key], choices or {}, where)
    return resolved


def per_task(assignments: Iterable[tuple[str, Any]], configs: Mapping[str, Mapping[str, Any]],
             flag: str = "--set") -> dict[str, dict[str, Any]]:
    """Split ``KEY``/``TASK.KEY`` assignments into each selected task's own (``configs``: task → profile).

    A bare ``KEY`` goes to every task whose profile has it, and is an error only when none
    has it; ``TASK.KEY`` goes to that task (which must be selected and have the key) and
    wins over the bare form whatever the order.
    """
    bare: dict[str, Any] = {}
    targeted: dict[str, dict[str, Any]] = {}
    for target, value in assignments:
        task, dot, key = target.rpartition(".")
        if not dot:
            holders = [name for name, config in configs.items() if key in config]
            if not holders:
                raise UnknownNameError(_no_such_key(key, configs, flag))
            bare[key] = value
            continue
        if not task or not key:
            raise OverrideError(f"{flag} takes KEY=VALUE or TASK.KEY=VALUE, got {target!r}")
        if task not in configs:
            close = difflib.get_close_matches(task, list(configs), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"{flag} {target}=… names task {task!r}, which is not among the selected tasks "
                                   f"({', '.join(configs)}){hint}")
        if key not in configs[task]:
            raise UnknownNameError(f"task {task!r} has no setting {key!r}; {flag} accepts: {', '.join(sorted(configs[task]))}")
        targeted.setdefault(task, {})[key] = value
    return {name: {**{k: v for k, v in bare.items() if k in config}, **targeted.get(name, {})}
            for name, config in configs.items()}


def _no_such_key(key: str, configs: Mapping[str, Mapping[str, Any]], flag: str) -> str:
    if len(configs) == 1:
        ((name, config),) = configs.items()
        return f"task {name!r} has no setting {key!r}; --set/--sweep accept: {', '.join(sorted(config))}"
    return (f"none of the selected tasks ({', '.join(configs)}) has a setting {key!r}; {flag} KEY=VALUE changes "
            "every selected task that has KEY, TASK.KEY=VALUE one task (see `attnbench list --settings PROFILE`)")


def check_variant_options(variant: str, declared: Mapping[str, Any], options: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``options`` checked against the variant's declared ones and converted to their types."""
    checked = {}
    for key, value in options:
        if key not in declared:
            valid = ", ".join(sorted(declared)) or "none (its spec declares no options)"
            raise UnknownNameError(f"attention {variant!r} has no option {key!r}; its options: {valid}")
        checked[key] = coerce(value, declared[key], f"--variant-option {variant}.{key}")
    return checked


def parse_variant_options(items: Iterable[str]) -> dict[str, Overrides]:
    """``["local.window=256", …]`` → ``{"local": (("window", 256),), …}``."""
    by_variant: dict[str, dict[str, Any]] = {}
    for item in items:
        target, value = parse_assignment(item, "--variant-option")
        variant, dot, key = target.rpartition(".")
        if not dot or not variant or not key:
            raise OverrideError(f"--variant-option takes NAME.KEY=VALUE (e.g. local.window=256), got {item!r}")
        by_variant.setdefault(variant, {})[key] = value
    return {v: tuple(sorted(opts.items())) for v, opts in by_variant.items()}


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"length=256,512"`` → ``("length", [256, 512])`` (the key may be ``TASK.KEY``)."""
    key, sep, raw = text.partition("=")
    values = [parse_value(v.strip()) for v in raw.split(",") if v.strip()]
    if not sep or not key.strip() or not values:
        raise OverrideError(f"--sweep takes KEY=V1,V2,... (e.g. length=256,512,1024), got {text!r}")
    return key.strip(), values


def freeze(mapping: Mapping[str, Any]) -> Overrides:
    """A mapping as sorted, hashable (key, value) pairs (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()))
