"""The (task × variant × seed) matrix: planning, resuming, and dispatch to an executor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.local import Display, LocalExecutor
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
    data_dir: str | Path | None = None,
) -> list[Pairing]:
    """Every pairing of the selected tasks and variants (names or globs) for each seed.

    Unknown names, unknown profiles and a missing ``data_dir`` are errors here, before any
    work starts.
    """
    loaded = plugins.load()
    chosen_tasks = loaded.tasks.select(tasks)
    chosen_variants = loaded.attention.select(variants)
    for task in chosen_tasks:
        profile_config(task, profile)
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise DataError(f"--data-dir {path} does not exist or is not a directory; point it at the task's "
                            "data in its standard format, or leave it out to use the embedded default data")
        data_dir = str(path.resolve())
    return [
        Pairing(task=t.name, variant=v.name, profile=profile, seed=seed, data_dir=data_dir)
        for t in chosen_tasks for v in chosen_variants for seed in seeds
    ]


def split_resumed(pairings: list[Pairing], store: Store, device: torch.device) -> Plan:
    """Separate the pairings the store already holds as finished from those still to run."""
    done = store.finished_keys()
    result = Plan()
    for p in pairings:
        (result.skipped if row_key(p, device) in done else result.todo).append(p)
    return result


def run_matrix(
    pairings: list[Pairing], *, store: Store, device: torch.device, display: Display,
    jobs: int = 1, timeout: float | None = None,
) -> list[ResultRow]:
    """Run ``pairings`` in worker processes, writing each row to ``store`` as it finishes."""
    rows: list[ResultRow] = []

    def on_row(row: ResultRow) -> None:
        store.write(row)
        rows.append(row)

    LocalExecutor(device, jobs=jobs, timeout=timeout).run(pairings, on_row, display)
    return rows
