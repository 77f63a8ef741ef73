"""Learning-rate fairness: each variant at its own best rate, chosen on validation (``report --best-of lr``).

One learning rate for every variant can make a variant look broken when it only needs
another rate (Zoology sweeps the rate per architecture and reports each one's best). After
``attnbench run --sweep lr=1e-3,3e-3,1e-2``, rows of one task, profile and environment whose
task setups are equal but for ``lr`` form a grid. For each variant and each seed,
:func:`best_of` picks the rate whose row scores best on the **validation** metric and reports
that row's **test** score; the table built from the picked rows is ranked by the usual rules
(intervals, paired differences per seed, ranks) and shows the rates tried and the rate picked
per seed. The test split never enters the choice: selecting on it would report the best of
several test scores, an upward-biased number.

The validation convention: a task that supports best-of reports its primary metric measured
on a held-out validation split under the primary metric's name prefixed ``val_``, in the same
direction (``val_accuracy`` beside ``accuracy``, ``val_bits_per_byte`` beside
``bits_per_byte``; :func:`validation_metric`). A grid whose rows lack it is refused with one
line saying so, and its per-rate tables are shown as usual.

Ties on validation go to the smaller value (the grid is sorted); a rate whose row did not run
ok (diverged, failed) is never picked, and is marked in the grid. Rows trained for a time
budget carry ``time_budget_s`` in their setup, so they form grids of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attnbench.leaderboard.tables import TaskTable, task_tables, variant_label
from attnbench.specs import Metric, ResultRow

#: The prefix of the validation twin of a task's primary metric.
VALIDATION_PREFIX = "val_"


def validation_metric(metric: str) -> str:
    """The name under which a task reports ``metric`` measured on its validation split."""
    return f"{VALIDATION_PREFIX}{metric}"


def format_value(value: Any) -> str:
    """A grid value as the tables show it (``0.003``, ``1e-05``)."""
    return f"{value:g}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


@dataclass(frozen=True, kw_only=True)
class Choice:
    """The value picked for one variant and seed, with the validation score it was picked on and its test score."""

    value: Any
    validation: float
    test: float


@dataclass(kw_only=True)
class BestOfTable(TaskTable):
    """A task table whose rows are each variant's best ``key`` per seed, picked on ``validation_metric``.

    ``grid`` is every value the rows tried; ``tried[variant][value]`` the statuses of that
    variant's rows at that value; ``chosen[variant][seed]`` the :class:`Choice`.
    """

    key: str = "lr"
    validation_metric: str = ""
    grid: list[Any] = field(default_factory=list)
    tried: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    chosen: dict[str, dict[int, Choice]] = field(default_factory=dict)

    def protocol(self) -> list[str]:
        """The heading says which values were tried and what picked among them."""
        grid = ", ".join(format_value(v) for v in self.grid)
        return [*super().protocol(),
                f"best of {self.key} ∈ {{{grid}}} per variant and seed, picked on {self.validation_metric}"]

    def tag(self) -> str:
        """``best of lr``, for the overall matrix's column."""
        return f"best of {self.key}"

    def extra_columns(self) -> list[tuple[str, dict[str, str]]]:
        """The values each variant tried (a value whose rows did not all run ok says so) and the value picked per seed."""
        tried = {}
        for variant, by_value in self.tried.items():
            cells = []
            for value, statuses in by_value.items():
                bad = sorted({s for s in statuses if s != "ok"})
                cells.append(format_value(value) + (f" ({', '.join(bad)})" if bad else ""))
            tried[variant] = ", ".join(cells)
        picked = {}
        for variant, by_seed in self.chosen.items():
            seeds: dict[str, list[int]] = defaultdict(list)
            for seed, choice in sorted(by_seed.items()):
                seeds[format_value(choice.value)].append(seed)
            picked[variant] = "; ".join(f"{v} (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
                                        for v, s in seeds.items())
        return [(f"{self.key} tried", tried), (f"{self.key} picked", picked)]


@dataclass(frozen=True, kw_only=True)
class BestOf:
    """What :func:`best_of` found: the best-of tables, the grids it refused (one line each, why),
    and the rows that belong to no best-of table (to be tabulated as usual)."""

    tables: list[BestOfTable]
    refused: list[str]
    rest: list[ResultRow]


def _setup_without(row: ResultRow, key: str) -> str:
    setup = {k: v for k, v in (row.config or {}).items() if k not in ("variant_options", key)}
    return hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sorted_values(values: Iterable[Any]) -> list[Any]:
    return sorted(set(values), key=lambda v: (str(type(v)), v))


def best_of(rows: Iterable[ResultRow], metrics: Mapping[str, Metric], key: str = "lr") -> BestOf:
    """Pick each variant's ``key`` per seed on validation, in every grid the rows hold (see the module docs)."""
    groups: dict[tuple[str, str, str, str], list[ResultRow]] = defaultdict(list)
    rest: list[ResultRow] = []
    for r in rows:
        if r.config and key in r.config:
            groups[(r.task, r.profile, r.environment, _setup_without(r, key))].append(r)
        else:
            rest.append(r)
    tables, refused = [], []
    for (task, profile, _env, _setup), group in sorted(groups.items()):
        values = _sorted_values(r.config[key] for r in group)
        if len(values) < 2:
            rest.extend(group)
            continue
        metric = metrics.get(task) or Metric(name=next((m for r in group for m in r.metrics), "score"))
        val = validation_metric(metric.name)
        scored = [r for r in group if r.status == "ok" and metric.name in r.metrics]
        lacking = [r for r in scored if val not in r.metrics]
        if lacking:
            others = sorted({m for r in lacking for m in r.metrics if m.startswith(VALIDATION_PREFIX)})
            held = f" (they report {', '.join(others)}, not the primary metric's twin)" if others else ""
            share = "its rows report" if len(lacking) == len(scored) else f"{len(lacking)} of its {len(scored)} ok rows lack"
            refused.append(f"best of {key} refused for {task} · {profile}: {share} no validation metric {val!r}{held}; "
                           f"picking {key} on the test {metric.name} would overstate the best, so its per-{key} "
                           "tables are shown instead")
            rest.extend(group)
            continue
        tables.append(_table(group, metric, key, values, val))
    return BestOf(tables=tables, refused=refused, rest=rest)


def _table(group: list[ResultRow], metric: Metric, key: str, values: list[Any], val: str) -> BestOfTable:
    """The best-of table of one grid whose ok rows all report ``val``."""
    sign = 1 if metric.higher_is_better else -1
    cells: dict[tuple[str, int], dict[Any, ResultRow]] = defaultdict(dict)
    tried: dict[str, dict[Any, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(group, key=lambda r: r.finished_at):  # a rerun replaces an earlier row of the same cell
        cells[(variant_label(r), r.seed)][r.config[key]] = r
    picked: list[ResultRow] = []
    chosen: dict[str, dict[int, Choice]] = defaultdict(dict)
    for (variant, seed), by_value in sorted(cells.items()):
        for value in _sorted_values(by_value):
            tried[variant][value].append(by_value[value].status)
        ok = [(v, r) for v, r in by_value.items() if r.status == "ok" and metric.name in r.metrics]
        if not ok:  # no rate ran ok for this seed: its latest row shows the status
            picked.append(max(by_value.values(), key=lambda r: r.finished_at))
            continue
        # max keeps the first of equal validation scores: the smallest value, as the grid is sorted
        value, row = max(sorted(ok, key=lambda vr: values.index(vr[0])), key=lambda vr: sign * vr[1].metrics[val])
        chosen[variant][seed] = Choice(value=value, validation=row.metrics[val], test=row.metrics[metric.name])
        picked.append(row)
    # Every picked row gets the grid in place of its own value, so all share one task setup (and table).
    same = [dataclasses.replace(r, config={**r.config, key: values}) for r in picked]
    (plain,) = task_tables(same, {group[0].task: metric})
    base = {f.name: getattr(plain, f.name) for f in dataclasses.fields(TaskTable)}
    return BestOfTable(**base, key=key, validation_metric=val, grid=values,
                       tried={v: {format_value(k): by[k] for k in _sorted_values(by)} for v, by in tried.items()},
                       chosen=dict(chosen))
