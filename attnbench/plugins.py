"""Loading plugins from the ``attnbench`` entry-point group, one at a time, never fatally.

Each entry point is imported and registered on its own: a plugin that fails to import,
implements a misspelt hook, raises while registering, or registers a taken name is
recorded in :attr:`Plugins.infos` with its distribution, entry point and error, and the
rest still load. ``ATTNBENCH_DISABLE_PLUGINS=a,b`` skips plugins by entry-point or
distribution name; ``ATTNBENCH_TRACE_PLUGINS=1`` prints pluggy's hook-call trace.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from attnbench import hookspecs
from attnbench.errors import AttnbenchError, PluginError
from attnbench.registry import Registry
from attnbench.specs import AttentionSpec, Task

ENTRY_POINT_GROUP = "attnbench"
DISABLE_ENV = "ATTNBENCH_DISABLE_PLUGINS"
TRACE_ENV = "ATTNBENCH_TRACE_PLUGINS"


@dataclass(kw_only=True)
class PluginInfo:
    """One entry point of the ``attnbench`` group and what became of it."""

    name: str
    value: str
    distribution: str
    version: str
    attention: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    error: str | None = None
    disabled: bool = False

    @property
    def source(self) -> str:
        """How errors name this plugin: ``distribution:entry-point``."""
        return f"{self.distribution}:{self.name}"


@dataclass(kw_only=True)
class Plugins:
    """The loaded plugin set: the registries and a record of every plugin."""

    attention: Registry[AttentionSpec]
    tasks: Registry[Task]
    infos: list[PluginInfo]
    manager: pluggy.PluginManager

    def info_for(self, kind: str, name: str) -> PluginInfo:
        """The plugin that registered attention or task ``name``."""
        registry = self.attention if kind == "attention" else self.tasks
        source = registry.source(name)
        return next(i for i in self.infos if i.source == source)

    @property
    def errors(self) -> list[PluginInfo]:
        """Plugins that failed to load or register."""
        return [i for i in self.infos if i.error]


def _entry_points() -> list[tuple[metadata.EntryPoint, str, str]]:
    """Entry points of the group with their distribution, built-ins first, deduplicated."""
    seen: set[tuple[str, str]] = set()
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else ""
        if (dist, ep.name) in seen:
            continue
        seen.add((dist, ep.name))
        found.append((ep, dist, version))
    found.sort(key=lambda t: (t[1] != "attnbench", t[1], t[0].name))
    return found


def _short_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _register_module(pm: pluggy.PluginManager, module: ModuleType, info: PluginInfo) -> None:
    pm.register(module, name=info.source)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(module)
        raise PluginError(f"{exc} (hooks are: {', '.join(_hook_names(pm))})") from None


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(n for n in dir(hookspecs) if isinstance(getattr(pm.hook, n, None), pluggy.HookCaller))


def _call_registrations(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> tuple[Registry, Registry]:
    attention: Registry[AttentionSpec] = Registry("attention", "attnbench list attention")
    tasks: Registry[Task] = Registry("task", "attnbench list tasks")
    for hook_name, registry, kind in (
        ("register_attention", attention, "attention"),
        ("register_tasks", tasks, "tasks"),
    ):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():  # registration order
            info = infos[impl.plugin_name]
            if info.error:
                continue
            added: list[str] = []

            def register(item: Any, _info: PluginInfo = info, _registry: Registry = registry,
                         _added: list[str] = added, _kind: str = kind) -> None:
                _validate(item, _kind, _info)
                _registry.add(item.name, item, source=_info.source)
                _added.append(item.name)

            try:
                impl.function(register=register)
            except Exception as exc:  # a broken plugin must not take the suite down
                info.error = f"{hook_name} failed: {_short_error(exc)}"
            getattr(info, kind).extend(added)
    return attention, tasks


def _validate(item: Any, kind: str, info: PluginInfo) -> None:
    if kind == "attention" and not isinstance(item, AttentionSpec):
        raise PluginError(f"{info.source} registered {item!r}, expected an attnbench.AttentionSpec")
    if kind == "tasks" and not isinstance(item, Task):
        raise PluginError(
            f"{info.source} registered {item!r}, which lacks the Task protocol's fields "
            "(name, domain, description, metric, requires, profiles, run)"
        )


@functools.cache
def load() -> Plugins:
    """Load every plugin of the ``attnbench`` entry-point group (once per process)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    disabled = {s.strip() for s in os.environ.get(DISABLE_ENV, "").split(",") if s.strip()}
    infos: dict[str, PluginInfo] = {}
    for ep, dist, version in _entry_points():
        info = PluginInfo(name=ep.name, value=ep.value, distribution=dist, version=version)
        infos[info.source] = info
        if ep.name in disabled or dist in disabled:
            info.disabled = True
            continue
        try:
            module = ep.load()
            _register_module(pm, module, info)
        except Exception as exc:  # noqa: BLE001 — any import-time failure is the plugin's
            info.error = f"failed to load: {_short_error(exc)}"
    attention, tasks = _call_registrations(pm, infos)
    return Plugins(attention=attention, tasks=tasks, infos=list(infos.values()), manager=pm)


def reset() -> None:
    """Forget the loaded plugin set, so the next :func:`load` reads entry points again."""
    load.cache_clear()


def get_attention(name: str) -> AttentionSpec:
    """The registered variant called ``name`` (an error with suggestions otherwise)."""
    return load().attention.get(name)


def get_task(name: str) -> Task:
    """The registered task called ``name`` (an error with suggestions otherwise)."""
    return load().tasks.get(name)


__all__ = ["AttnbenchError", "PluginInfo", "Plugins", "get_attention", "get_task", "load", "reset"]
