"""One pairing — a task, a variant, a profile and a seed — executed in the current process.

:func:`execute` is what a worker process runs, and what the conformance kit calls
in-process. It never raises for the pairing's own failures: it returns a
:class:`ResultRow` whose status says what happened (``ok``, ``unsupported``,
``diverged``, ``failed`` with the traceback kept).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnbench import __version__, plugins
from attnbench.errors import DataError, UnknownNameError
from attnbench.nn.attention import build_attention
from attnbench.runner.device import describe, reset_peak_memory
from attnbench.runner.meter import Meter
from attnbench.runner.overrides import Overrides, apply_task_overrides, setting_choices
from attnbench.specs import PROFILES, AttentionConfig, AttentionSpec, ResultRow, RunContext, Task
from attnbench.training.seeding import seed_everything


@dataclass(frozen=True, kw_only=True)
class Pairing:
    """What to run: names and plain values, so it crosses process boundaries as data.

    ``overrides`` replace keys of the task's profile (``--set``, ``--sweep``);
    ``variant_options`` reach the variant's ``AttentionConfig.options``
    (``--variant-option``). Both are sorted ``(key, value)`` pairs. ``budget_s``
    (``--budget``) trains for that many seconds instead of the profile's steps: it enters
    the resolved configuration as ``time_budget_s``, so such rows hash, and rank, apart.
    """

    task: str
    variant: str
    profile: str
    seed: int
    data_dir: str | None = None
    overrides: Overrides = ()
    variant_options: Overrides = ()
    budget_s: float | None = None


class Diverged(Exception):
    """Raised from progress reporting when a task's loss becomes NaN or Inf."""


class NullProgress:
    """Progress that shows nothing but still guards against divergence."""

    def start(self, total: int, description: str = "") -> None:
        pass

    def advance(self, steps: int = 1, **info: float) -> None:
        check_finite(info)


def check_finite(info: Mapping[str, float]) -> None:
    """Raise :class:`Diverged` when a reported ``loss`` is NaN or Inf."""
    loss = info.get("loss")
    if loss is not None and not math.isfinite(float(loss)):
        raise Diverged(f"training loss became {loss}")


def profile_config(task: Task, profile: str) -> Mapping[str, Any]:
    """The task's resolved configuration for ``profile``, or a clear error."""
    if profile not in task.profiles:
        known = ", ".join(task.profiles) or "none"
        raise UnknownNameError(f"task {task.name!r} has no profile {profile!r} (it has: {known}; "
                               f"the suite's profiles are {', '.join(PROFILES)})")
    return task.profiles[profile]


def resolved_config(task: Task, pairing: Pairing) -> dict[str, Any]:
    """The task's configuration for the pairing: its profile with the ``--set`` overrides applied
    (and ``time_budget_s`` under ``--budget``).

    A setting a task lists in its optional ``neutral_settings`` (``{"pack": 1}``) is left out
    while it holds that value: such a setting was added after results were recorded, and at
    that value the task behaves as before, so the configuration (and its hash) stays what it
    was and old rows keep matching. The task reads it with that default.
    """
    config = apply_task_overrides(task.name, profile_config(task, pairing.profile), pairing.overrides,
                                  setting_choices(task))
    for key, neutral in getattr(task, "neutral_settings", {}).items():
        if key in config and config[key] == neutral:
            del config[key]
    if pairing.budget_s is not None:
        config["time_budget_s"] = float(pairing.budget_s)
    return config


def row_config(task: Task, pairing: Pairing) -> dict[str, Any]:
    """What the row stores as its setup: the resolved task configuration, plus variant options if any."""
    config = resolved_config(task, pairing)
    if pairing.data_dir:
        config["data_dir"] = str(Path(pairing.data_dir).resolve())
    if pairing.variant_options:
        config["variant_options"] = dict(pairing.variant_options)
    return config


def config_hash(task: Task, pairing: Pairing) -> str:
    """A short hash of everything that defines the pairing's setup, so differing rows never merge.

    It covers the resolved task configuration (overrides included), the data directory and
    the variant options; a pairing without overrides or options hashes as it always has.
    """
    payload: dict[str, Any] = {
        "task": task.name, "profile": pairing.profile, "config": resolved_config(task, pairing),
        "data_dir": str(Path(pairing.data_dir).resolve()) if pairing.data_dir else None,
    }
    if pairing.variant_options:
        payload["variant_options"] = dict(pairing.variant_options)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (host or device)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def with_options(spec: AttentionSpec, options: Overrides) -> AttentionSpec:
    """``spec`` whose modules are built with ``options`` merged over the model's own (user's win)."""
    if not options:
        return spec
    extra = dict(options)

    def merged(config: AttentionConfig) -> AttentionConfig:
        return dataclasses.replace(config, options={**config.options, **extra})

    changes: dict[str, Any] = {"build": lambda config: spec.build(merged(config))}
    if spec.kv_heads is not None:  # the model sizes its k/v projections from the same options (gqa.kv_heads)
        changes["kv_heads"] = lambda config: spec.kv_heads(merged(config))
    return dataclasses.replace(spec, **changes)


def environment(device: torch.device) -> str:
    """The environment identity of a row: device, torch and Python versions."""
    return f"{describe(device)} | torch {torch.__version__} | py {platform.python_version()}"


def unsupported_reason(task: Task, spec: AttentionSpec, device: torch.device) -> str | None:
    """Why this variant cannot serve this task on this device, or None."""
    reason = spec.missing(task.requires)
    if reason:
        return f"{reason}, which task {task.name!r} requires"
    if spec.available is not None:
        why = spec.available(device)
        if why:
            return f"attention {spec.name!r} is not available on {device}: {why}"
    return None


def base_fields(pairing: Pairing, device: torch.device) -> dict[str, Any]:
    """The identity and provenance fields of the pairing's row (everything but the outcome)."""
    loaded = plugins.load()
    task = loaded.tasks.get(pairing.task)
    spec = loaded.attention.get(pairing.variant)
    info = loaded.info_for("attention", spec.name)
    return dict(
        task=task.name, variant=spec.name, profile=pairing.profile, seed=pairing.seed,
        environment=environment(device), config_hash=config_hash(task, pairing),
        attnbench_version=__version__, plugin=info.source, distribution=info.distribution,
        distribution_version=info.version, torch_version=torch.__version__, device=describe(device),
        config=row_config(task, pairing),
    )


def row_key(pairing: Pairing, device: torch.device) -> tuple:
    """The store key the pairing's row will have (for --resume)."""
    base = base_fields(pairing, device)
    return tuple(base[k] for k in ("task", "variant", "profile", "seed", "environment", "config_hash"))


def without_files_in(row: ResultRow, folder: str | Path) -> ResultRow:
    """``row`` minus the artifacts that lie inside ``folder`` (a scratch folder about to be removed)."""
    root = Path(folder).resolve()
    kept = {k: v for k, v in row.artifacts.items() if not Path(v).resolve().is_relative_to(root)}
    return row if len(kept) == len(row.artifacts) else dataclasses.replace(row, artifacts=kept)


def execute(pairing: Pairing, device: torch.device, *, progress: Any = None,
            workdir: Path | None = None) -> ResultRow:
    """Run one pairing here and return its row (status says how it went).

    Without ``workdir`` the task writes into a temporary folder that is removed when the
    pairing finishes, and the row names no file from it; pass ``workdir`` to keep the files
    (``attnbench run`` keeps them beside the store, for the report).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=f"attnbench-{pairing.task}-{pairing.variant}-") as scratch:
            row = execute(pairing, device, progress=progress, workdir=Path(scratch))
        return without_files_in(row, scratch)
    task = plugins.get_task(pairing.task)
    spec = with_options(plugins.get_attention(pairing.variant), pairing.variant_options)
    base = base_fields(pairing, device)
    start = time.perf_counter()

    def row(status: str, **extra: Any) -> ResultRow:
        return ResultRow(**base, status=status, finished_at=time.time(),
                         duration_s=round(time.perf_counter() - start, 3), **extra)

    reason = unsupported_reason(task, spec, device)
    if reason:
        return row("unsupported", error=reason)
    seed_everything(pairing.seed)
    reset_peak_memory(device)
    meter = Meter(device)
    ctx = RunContext(
        attention=spec, make_attention=lambda config: build_attention(spec, config), device=device,
        seed=pairing.seed, profile=pairing.profile, config=resolved_config(task, pairing),
        data_dir=Path(pairing.data_dir) if pairing.data_dir else None,
        progress=progress or NullProgress(), workdir=workdir, meter=meter,
    )
    try:
        metrics = {k: float(v) for k, v in dict(task.run(ctx)).items()}
    except Diverged as exc:
        return row("diverged", error=str(exc), efficiency=meter.figures(), artifacts=meter.artifacts)
    except DataError:
        raise  # bad input is the user's to fix, not a pairing result
    except Exception as exc:  # noqa: BLE001 — any failure of the pairing becomes a 'failed' row
        error = traceback.format_exc()
        if out_of_memory(exc):
            error += "out of memory: the pairing needed more memory than it may use (see --max-memory)"
        return row("failed", error=error, artifacts=meter.artifacts)
    if task.metric.name not in metrics:
        return row("failed", metrics=metrics,
                   error=f"task {task.name!r} returned no {task.metric.name!r} metric (got {sorted(metrics)})")
    if not all(math.isfinite(v) for v in metrics.values()):
        return row("diverged", metrics=metrics, error="a metric is NaN or Inf", efficiency=meter.figures(),
                   artifacts=meter.artifacts)
    return row("ok", metrics=metrics, efficiency=meter.figures(), artifacts=meter.artifacts)


__all__ = [
    "Diverged", "Pairing", "base_fields", "config_hash", "environment", "execute", "resolved_config", "row_config",
    "row_key", "with_options", "without_files_in",
]
