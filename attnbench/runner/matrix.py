"""The (task × variant × seed) matrix: planning, resuming, and dispatch to an executor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnbench import plugins
from attnbench.errors import DataError, UnknownNameError
from attnbench.runner.local import Display, LocalExecutor
from attnbench.runner.overrides import Overrides, apply_task_overrides, check_variant_options, freeze
from attnbench.runner.pairing import Pairing, profile_config, row_key
from attnbench.specs import ResultRow
from attnbench.store import Store


@dataclass
class Plan:
    """The pairings to run, and those skipped because the store already has them."""

    todo: list[Pairing] = field(default_factory=list)
    skipped: list[Pairing] = field(default_factory=list)


def plan(
    *, tasks: Sequence[str] | None, variants: Sequence[str] | None, profile: str, seeds: Sequence[int],
    data_dir: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
    variant_options: Mapping[str, Overrides] | None = None, sweep: tuple[str, Sequence[Any]] | None = None,
) -> list[Pairing]:
    """Every pairing of the selected tasks and variants (names or globs) for each seed,
    and for each value of the ``sweep`` key when one is given.

    ``overrides`` replace profile keys of every selected task (``--set``);
    ``variant_options`` map a variant name to its options (``--variant-option``). Unknown
    names, profiles, keys, options, values of the wrong type and a missing ``data_dir``
    are errors here, before any work starts.
    """
    loaded = plugins.load()
    chosen_tasks = loaded.tasks.select(tasks)
    chosen_variants = loaded.attention.select(variants)
    options = dict(variant_options or {})
    chosen_names = {v.name for v in chosen_variants}
    for name, opts in options.items():
        if name not in chosen_names:
            raise UnknownNameError(f"--variant-option names {name!r}, which is not among the selected variants "
                                   f"({', '.join(sorted(chosen_names))})")
        options[name] = freeze(check_variant_options(name, loaded.attention.get(name).options, opts))
    points: list[dict[str, Any]] = [dict(overrides or {})]
    if sweep is not None:
        key, values = sweep
        points = [{**points[0], key: value} for value in values]
    per_task: dict[str, list[Overrides]] = {}
    for task in chosen_tasks:
        config = profile_config(task, profile)
        per_task[task.name] = [freeze(_changed(config, apply_task_overrides(task.name, config, p.items())))
                               for p in points]
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise DataError(f"--data-dir {path} does not exist or is not a directory; point it at the task's "
                            "data in its standard format, or leave it out to use the embedded default data")
        data_dir = str(path.resolve())
    return [
        Pairing(task=t.name, variant=v.name, profile=profile, seed=seed, data_dir=data_dir,
                overrides=point, variant_options=options.get(v.name, ()))
        for t in chosen_tasks for point in per_task[t.name] for v in chosen_variants for seed in seeds
    ]


def _changed(config: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The keys whose resolved value differs from the profile's (an override equal to it changes nothing)."""
    return {k: v for k, v in resolved.items() if config[k] != v}


def split_resumed(pairings: list[Pairing], store: Store, device: torch.device) -> Plan:
    """Separate the pairings the store already holds as finished from those still to run."""
    done = store.finished_keys()
    result = Plan()
    for p in pairings:
        (result.skipped if row_key(p, device) in done else result.todo).append(p)
    return result


def run_matrix(
    pairings: list[Pairing], *, store: Store, device: torch.device, display: Display,
    jobs: int = 1, timeout: float | None = None, executor: str = "local", address: str | None = None,
    max_memory_mb: float | None = None, on_row: Callable[[ResultRow], None] | None = None,
) -> list[ResultRow]:
    """Run ``pairings`` on ``executor`` (``local`` worker processes or ``ray`` tasks), writing
    each row to ``store`` as it finishes; ``address`` is the Ray cluster's (None: a local Ray).
    ``on_row`` is then called with the stored row, in this process, whichever the executor."""
    rows: list[ResultRow] = []

    def record(row: ResultRow) -> None:
        store.write(row)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    artifacts = store.path.parent / "artifacts"
    if executor == "ray":
        from attnbench.runner.ray_cluster import RayExecutor

        runner: LocalExecutor | RayExecutor = RayExecutor(device, jobs=jobs, timeout=timeout, artifacts=artifacts,
                                                          address=address)
    else:
        runner = LocalExecutor(device, jobs=jobs, timeout=timeout, artifacts=artifacts, max_memory_mb=max_memory_mb)
    runner.run(pairings, record, display)
    return rows
