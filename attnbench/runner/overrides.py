"""Changing a pairing's setup from the command line: ``--set``, ``--variant-option``, ``--sweep``.

* ``--set KEY=VALUE`` replaces a key of the task's resolved profile (``length=4096``).
* ``--variant-option NAME.KEY=VALUE`` sets an option the variant declares in its spec's
  ``options`` (``local.window=256``); it reaches ``AttentionConfig.options``.
* ``--sweep KEY=V1,V2,…`` runs the matrix once per value of a profile key.

Values are parsed as JSON where they can be (``3``, ``0.5``, ``true``, ``null``) and as
text otherwise, then converted to the type of the value they replace, so ``steps=500``
stays an int and ``lr=1e-3`` a float. Unknown keys and values of the wrong type are an
:class:`~attnbench.errors.UnknownNameError` / :class:`ValueError`-free
:class:`~attnbench.errors.AttnbenchError` that lists the valid keys. Every override is
part of the row's identity (its configuration hash), so such rows never merge with
default ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

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


def apply_task_overrides(task_name: str, config: Mapping[str, Any], overrides: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The profile ``config`` with ``overrides`` applied; unknown keys list the valid ones."""
    resolved = dict(config)
    for key, value in overrides:
        if key not in resolved:
            raise UnknownNameError(
                f"task {task_name!r} has no setting {key!r}; --set/--sweep accept: {', '.join(sorted(resolved))}"
            )
        resolved[key] = coerce(value, resolved[key], f"--set {key} (task {task_name!r})")
    return resolved


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
    """``"length=256,512"`` → ``("length", [256, 512])``."""
    key, sep, raw = text.partition("=")
    values = [parse_value(v.strip()) for v in raw.split(",") if v.strip()]
    if not sep or not key.strip() or not values:
        raise OverrideError(f"--sweep takes KEY=V1,V2,... (e.g. length=256,512,1024), got {text!r}")
    return key.strip(), values


def freeze(mapping: Mapping[str, Any]) -> Overrides:
    """A mapping as sorted, hashable (key, value) pairs (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()))
