"""The (task × variant × seed) matrix: planning, resuming, and dispatch to an executor."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnbench import plugins
from attnbench.errors import DataError, UnknownNameError, UsageError
from attnbench.runner.local import Display, LocalExecutor
from attnbench.runner.overrides import (
    OverrideError,
    Overrides,
    apply_task_overrides,
    check_variant_options,
    freeze,
    per_task,
    setting_choices,
)
from attnbench.runner.pairing import Pairing, profile_config, row_key
from attnbench.specs import ResultRow
from attnbench.store import Store


@dataclass
class Plan:
    """The pairings to run, and those skipped because the store already has them."""

    todo: list[Pairing] = field(default_factory=list)
    skipped: list[Pairing] = field(default_factory=list)


#: The seeds a pairing may take (NumPy's seed range).
MAX_SEED = 2**32 - 1

DataDirs = str | Path | Mapping[str | None, str | Path] | None


def plan(
    *, tasks: Sequence[str] | None, variants: Sequence[str] | None, profile: str, seeds: Sequence[int],
    data_dir: DataDirs = None, overrides: Mapping[str, Any] | None = None,
    variant_options: Mapping[str, Overrides] | None = None, sweep: tuple[str, Sequence[Any]] | None = None,
    budget_s: float | None = None,
) -> list[Pairing]:
    """Every pairing of the selected tasks and variants (names or globs) for each seed,
    and for each value of the ``sweep`` key when one is given.

    ``overrides`` replace profile keys (``--set``): ``KEY`` in every selected task that has
    it, ``TASK.KEY`` in that task alone; the ``sweep`` key takes either form too, and a task
    without it runs once. ``data_dir`` is one folder for every selected task, or a mapping
    of task name to folder (the key None: every other task). ``variant_options`` map a
    variant name to its options (``--variant-option``). Unknown names, profiles, keys,
    options, values of the wrong type, out of range or not among a task's ``setting_choices``,
    seeds outside 0…2**32-1 and a
    missing data folder are errors here, before any work starts. Repeated pairings are run once.
    ``budget_s`` (``--budget``) trains every pairing for that many seconds instead of its steps.
    """
    seeds = _checked_seeds(seeds)
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
    configs = {task.name: profile_config(task, profile) for task in chosen_tasks}
    fixed = per_task((overrides or {}).items(), configs, "--set")
    points = {name: [fixed[name]] for name in configs}
    if sweep is not None:
        key, values = sweep
        if not values:
            raise OverrideError(f"--sweep {key}= names no value; give KEY=V1,V2,... (e.g. length=256,512,1024)")
        swept = [per_task([(key, value)], configs, "--sweep") for value in values]
        for name in configs:
            if swept[0][name]:  # the task has the swept key
                points[name] = [{**fixed[name], **point[name]} for point in swept]
    per_point: dict[str, list[Overrides]] = {}
    choices = {task.name: setting_choices(task) for task in chosen_tasks}
    for name, config in configs.items():
        frozen = (freeze(_changed(config, apply_task_overrides(name, config, p.items(), choices[name])))
                  for p in points[name])
        per_point[name] = list(dict.fromkeys(frozen))
    dirs = _data_dirs(data_dir, list(configs))
    pairings = (
        Pairing(task=t.name, variant=v.name, profile=profile, seed=seed, data_dir=dirs[t.name],
                overrides=point, variant_options=options.get(v.name, ()), budget_s=budget_s)
        for t in chosen_tasks for point in per_point[t.name] for v in chosen_variants for seed in seeds
    )
    return list(dict.fromkeys(pairings))


def _checked_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` without repeats, each an integer in 0…:data:`MAX_SEED`, at least one."""
    if not seeds:
        raise UsageError("no seed given; pass --seeds N[,N...] (e.g. --seeds 0,1,2), or leave it out for seed 0")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UsageError(f"seed {seed!r} is not an integer from 0 to {MAX_SEED}; pass --seeds N[,N...] "
                             "with such integers")
    return list(dict.fromkeys(seeds))


def _data_dirs(data_dir: DataDirs, tasks: list[str]) -> dict[str, str | None]:
    """Each selected task's data folder (resolved), or None for its embedded default data."""
    if data_dir is None:
        return dict.fromkeys(tasks)
    given = dict(data_dir) if isinstance(data_dir, Mapping) else {None: data_dir}
    resolved: dict[str | None, str] = {}
    for name, folder in given.items():
        flag = "--data-dir" if name is None else f"--data-dir {name}="
        shown = f"{flag} {folder}" if name is None else f"{flag}{folder}"
        if name is not None and name not in tasks:
            close = difflib.get_close_matches(name, tasks, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"{shown} names task {name!r}, which is not among the selected tasks "
                                   f"({', '.join(tasks)}){hint}")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise DataError(f"{shown} does not exist or is not a directory; point it at the task's "
                            "data in its standard format, or leave it out to use the embedded default data")
        resolved[name] = str(path.resolve())
    return {name: resolved.get(name, resolved.get(None)) for name in tasks}


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


def stored_statuses(pairings: list[Pairing], store: Store, device: torch.device) -> dict[Pairing, str]:
    """The status of each of ``pairings`` that already has a row in ``store`` (running it replaces that row)."""
    stored = store.statuses()
    keys = {p: row_key(p, device) for p in pairings}
    return {p: stored[key] for p, key in keys.items() if key in stored}


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
