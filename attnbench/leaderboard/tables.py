"""Leaderboard tables built from result rows: one per task and setup, plus the overall matrix.

Rows are grouped by (task, profile, environment, config hash): results from different
environments or setups are never mixed in one ranking. Within a group, seeds of one
variant are aggregated (mean, standard deviation, count).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from attnbench.specs import ResultRow

#: Efficiency columns shown beside quality, in order, with their headers.
COST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("params", "params"),
    ("flops_per_example", "FLOPs/ex"),
    ("train_s", "train s"),
    ("train_examples_per_s", "train ex/s"),
    ("infer_ms_per_batch", "infer ms/batch"),
    ("peak_alloc_mb", "peak alloc MB"),
    ("peak_rss_mb", "peak RSS MB"),
)


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One variant's aggregated line in a task table."""

    variant: str
    status: str
    seeds: int
    metrics: dict[str, float]
    metric_std: dict[str, float]
    cost: dict[str, float]
    note: str = ""


@dataclass(kw_only=True)
class TaskTable:
    """A ranked table for one task, profile, environment and configuration."""

    task: str
    profile: str
    environment: str
    config_hash: str
    metric: str
    higher_is_better: bool
    entries: list[Entry] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.task} · {self.profile} · {self.environment} · config {self.config_hash[:8]}"

    def metric_names(self) -> list[str]:
        """Primary metric first, then every other metric any entry reports."""
        names = {m for e in self.entries for m in e.metrics}
        return [self.metric, *sorted(names - {self.metric})]

    def ranks(self) -> dict[str, int]:
        """Competition ranks (1 = best; ties share the better rank) of the variants that ran ok."""
        values = {e.variant: e.metrics[self.metric] for e in self.entries
                  if e.status == "ok" and self.metric in e.metrics}
        return {v: 1 + sum(_better(other, mine, self.higher_is_better) for other in values.values())
                for v, mine in values.items()}

    def cost_columns(self) -> list[tuple[str, str]]:
        present = {c for e in self.entries for c in e.cost}
        return [(key, header) for key, header in COST_COLUMNS if key in present]


def _aggregate(variant: str, rows: list[ResultRow]) -> Entry:
    ok = [r for r in rows if r.status == "ok"]
    if not ok:
        last = max(rows, key=lambda r: r.finished_at)
        note = last.error.strip().splitlines()[-1] if last.error else ""
        return Entry(variant=variant, status=last.status, seeds=len(rows), metrics={}, metric_std={}, cost={},
                     note=note[:200])
    names = {m for r in ok for m in r.metrics}
    metrics = {m: statistics.fmean(r.metrics[m] for r in ok if m in r.metrics) for m in names}
    std = {m: statistics.stdev([r.metrics[m] for r in ok if m in r.metrics]) if len(ok) > 1 else 0.0 for m in names}
    costs = {c for r in ok for c in r.efficiency}
    cost = {c: statistics.median(r.efficiency[c] for r in ok if c in r.efficiency) for c in costs}
    failed = len(rows) - len(ok)
    note = f"{failed} of {len(rows)} seeds not ok" if failed else ""
    return Entry(variant=variant, status="ok", seeds=len(ok), metrics=metrics, metric_std=std, cost=cost, note=note)


def task_tables(rows: Iterable[ResultRow], metrics: dict[str, tuple[str, bool]]) -> list[TaskTable]:
    """Group rows into ranked tables; ``metrics`` maps task → (primary metric, higher is better).

    A task no longer installed falls back to its first reported metric, higher is better.
    """
    groups: dict[tuple[str, str, str, str], dict[str, list[ResultRow]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r.task, r.profile, r.environment, r.config_hash)][r.variant].append(r)
    tables = []
    for (task, profile, env, chash), by_variant in sorted(groups.items()):
        entries = [_aggregate(v, rs) for v, rs in by_variant.items()]
        fallback = next((m for e in entries for m in e.metrics), "score")
        metric, higher = metrics.get(task, (fallback, True))
        sign = -1 if higher else 1
        entries.sort(key=lambda e: (e.status != "ok", sign * e.metrics.get(metric, 0.0), e.variant))
        tables.append(TaskTable(task=task, profile=profile, environment=env, config_hash=chash, metric=metric,
                                higher_is_better=higher, entries=entries))
    return tables


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    return a > b if higher_is_better else a < b


@dataclass(kw_only=True)
class Matrix:
    """Variants × tasks: primary metric per cell, a normalized score and the mean rank."""

    tasks: list[str]
    cells: dict[str, dict[str, float | str]]
    normalized: dict[str, float]
    mean_rank: dict[str, float]
    environment: str


def overall_matrix(tables: list[TaskTable]) -> list[Matrix]:
    """One matrix per (environment, profile): cells hold the primary metric or the status.

    The normalized score is the mean over tasks of (value − worst) / (best − worst) among
    variants that ran ok (1 = best on every task); the mean rank averages each variant's
    rank (1 = best) over the tasks it ran.
    """
    by_env: dict[tuple[str, str], list[TaskTable]] = defaultdict(list)
    for t in tables:
        by_env[(t.environment, t.profile)].append(t)
    out = []
    for (env, profile), group in sorted(by_env.items()):
        cells: dict[str, dict[str, float | str]] = defaultdict(dict)
        norm: dict[str, list[float]] = defaultdict(list)
        ranks: dict[str, list[int]] = defaultdict(list)
        names = []
        for t in group:
            name = t.task if sum(x.task == t.task for x in group) == 1 else f"{t.task}@{t.config_hash[:6]}"
            names.append(name)
            ok = [e for e in t.entries if e.status == "ok" and t.metric in e.metrics]
            for e in t.entries:
                cells[e.variant][name] = e.metrics[t.metric] if e in ok else e.status
            if not ok:
                continue
            best, worst = ok[0].metrics[t.metric], ok[-1].metrics[t.metric]  # entries are sorted best first
            for variant, rank in t.ranks().items():
                ranks[variant].append(rank)
            for e in ok:
                norm[e.variant].append(1.0 if best == worst else (e.metrics[t.metric] - worst) / (best - worst))
        out.append(Matrix(
            tasks=names, cells=dict(cells), environment=f"{profile} · {env}",
            normalized={v: statistics.fmean(s) for v, s in norm.items()},
            mean_rank={v: statistics.fmean(r) for v, r in ranks.items()},
        ))
    return out
