"""Leaderboard tables built from result rows: one per task and setup, plus the overall matrix.

Rows are grouped by (task, profile, environment, config hash): results from different
environments or setups are never mixed in one ranking. Within a group, seeds of one
variant are aggregated (mean, standard deviation, count).

The rules, as the report states them:

* **Ties.** Two variants share a rank when their means differ by no more than the larger
  of their seed standard deviations; with one seed each, only equal scores tie. A rank is
  1 + the number of variants that are better and not tied (competition ranking).
* **Cost ratios** (``×sdpa``) divide a variant's figure by ``sdpa``'s in the same table.
* **Fairness.** A model whose parameter count differs from the ``sdpa`` model of the same
  table by more than 10 % is flagged (LRA and CAB state such a budget).
* **Pareto.** A variant is on the quality–time front when no other variant is at least as
  good and at least as fast in training, and strictly better in one of the two.
* **Normalized score** per task: (score − baseline) / (sdpa − baseline), so the task's
  trivial baseline is 0 and ``sdpa`` is 1 (for lower-is-better metrics the same formula
  holds with the signs flipped). Where a task reports no baseline or ``sdpa`` did not run,
  (score − worst) / (best − worst) among the variants that ran. The overall score and mean
  rank average over the tasks a variant ran ok; missing cells (unsupported, failed, …) are
  not counted, and ``tasks`` says how many were.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from attnbench.specs import Metric, ResultRow

REFERENCE = "sdpa"
FAIRNESS_TOLERANCE = 0.10

#: Efficiency columns shown beside quality, in order, with their headers.
COST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("params", "params"),
    ("flops_per_example", "FLOPs/ex"),
    ("train_s", "train s"),
    ("train_examples_per_s", "train ex/s"),
    ("infer_ms_per_batch", "infer ms/batch"),
    ("step_peak_mb", "step peak MB"),
    ("peak_alloc_mb", "peak alloc MB"),
    ("peak_rss_mb", "peak RSS MB"),
)

#: Cost figures also shown as a ratio to the reference variant in the same table.
RATIO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("train_s", "train ×sdpa"),
    ("infer_ms_per_batch", "infer ×sdpa"),
    ("step_peak_mb", "memory ×sdpa"),
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
    environment: str = ""  # set only when environments are compared in one table


@dataclass(kw_only=True)
class TaskTable:
    """A ranked table for one task, profile, environment and configuration."""

    task: str
    profile: str
    environment: str
    config_hash: str
    metric: str
    higher_is_better: bool
    baseline: str = ""
    entries: list[Entry] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.task} · {self.profile} · {self.environment} · config {self.config_hash[:8]}"

    def metric_names(self) -> list[str]:
        """Primary metric first, then every other metric any entry reports."""
        names = {m for e in self.entries for m in e.metrics}
        return [self.metric, *sorted(names - {self.metric})]

    def ranked(self) -> list[Entry]:
        """Entries that ran ok and report the primary metric."""
        return [e for e in self.entries if e.status == "ok" and self.metric in e.metrics]

    def tied(self, a: Entry, b: Entry) -> bool:
        """Whether ``a`` and ``b`` are within their seeds' spread of each other (see the module docs)."""
        gap = abs(a.metrics[self.metric] - b.metrics[self.metric])
        return gap <= max(a.metric_std.get(self.metric, 0.0), b.metric_std.get(self.metric, 0.0))

    def ranks(self) -> dict[str, int]:
        """Competition ranks (1 = best) of the variants that ran ok; ties share the better rank."""
        ok = self.ranked()
        return {
            e.variant: 1 + sum(
                _better(o.metrics[self.metric], e.metrics[self.metric], self.higher_is_better) and not self.tied(o, e)
                for o in ok
            )
            for e in ok
        }

    def reference(self) -> Entry | None:
        """The ``sdpa`` entry, when it ran ok."""
        return next((e for e in self.ranked() if e.variant == REFERENCE), None)

    def ratios(self, entry: Entry) -> dict[str, float]:
        """``entry``'s cost figures divided by the reference's (same table, so same environment)."""
        ref = self.reference()
        if ref is None or entry.status != "ok":
            return {}
        return {key: entry.cost[key] / ref.cost[key] for key, _ in RATIO_COLUMNS
                if key in entry.cost and ref.cost.get(key)}

    def fairness(self, entry: Entry) -> str:
        """A flag when ``entry``'s parameter count is off the reference's by more than 10 %."""
        ref = self.reference()
        if ref is None or entry.status != "ok" or not ref.cost.get("params") or "params" not in entry.cost:
            return ""
        ratio = entry.cost["params"] / ref.cost["params"]
        return f"params {ratio:.2f}×sdpa" if abs(ratio - 1) > FAIRNESS_TOLERANCE else ""

    def pareto(self) -> set[str]:
        """Variants on the quality–training-time front (see the module docs)."""
        ok = [e for e in self.ranked() if "train_s" in e.cost]
        sign = 1 if self.higher_is_better else -1

        def dominates(a: Entry, b: Entry) -> bool:
            qa, qb = sign * a.metrics[self.metric], sign * b.metrics[self.metric]
            ta, tb = a.cost["train_s"], b.cost["train_s"]
            return qa >= qb and ta <= tb and (qa > qb or ta < tb)

        return {e.variant for e in ok if not any(dominates(o, e) for o in ok if o is not e)}

    def normalized(self) -> dict[str, float]:
        """Each ok variant's normalized score on this task (see the module docs)."""
        ok = self.ranked()
        if not ok:
            return {}
        values = {e.variant: e.metrics[self.metric] for e in ok}
        ref = self.reference()
        base = None
        if ref is not None and self.baseline:
            base = next((e.metrics[self.baseline] for e in [ref, *ok] if self.baseline in e.metrics), None)
        if ref is not None and base is not None and values[REFERENCE] != base:
            span = values[REFERENCE] - base
            return {v: (x - base) / span for v, x in values.items()}
        best = max(values.values()) if self.higher_is_better else min(values.values())
        worst = min(values.values()) if self.higher_is_better else max(values.values())
        return {v: 1.0 if best == worst else (x - worst) / (best - worst) for v, x in values.items()}

    def cost_columns(self) -> list[tuple[str, str]]:
        present = {c for e in self.entries for c in e.cost}
        return [(key, header) for key, header in COST_COLUMNS if key in present]

    def ratio_columns(self) -> list[tuple[str, str]]:
        if self.reference() is None:
            return []
        present = {c for e in self.entries for c in e.cost}
        return [(key, header) for key, header in RATIO_COLUMNS if key in present]


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


def setup_hash(row: ResultRow) -> str:
    """The hash of the task's setup alone: the row's configuration without its variant options,
    so ``local`` with ``window=8`` is ranked beside ``sdpa`` on the same task setup. Rows
    written before configurations were stored fall back to their config hash."""
    if not row.config:
        return row.config_hash
    task_setup = {k: v for k, v in row.config.items() if k != "variant_options"}
    return hashlib.sha256(json.dumps(task_setup, sort_keys=True, default=str).encode()).hexdigest()[:16]


def variant_label(row: ResultRow) -> str:
    """The variant's name, with its ``--variant-option`` values when it has any: ``local[window=8]``."""
    options = (row.config or {}).get("variant_options") or {}
    return row.variant + ("[" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + "]" if options else "")


#: The environment of a table in which the user asked to compare environments.
ALL_ENVIRONMENTS = "all environments (compared)"


def task_tables(rows: Iterable[ResultRow], metrics: Mapping[str, Metric],
                compare_environments: bool = False) -> list[TaskTable]:
    """Group rows into ranked tables; ``metrics`` maps task → its primary :class:`Metric`.

    One table per task, profile, environment and task setup (:func:`setup_hash`); a variant
    run with options is its own line (:func:`variant_label`). A task no longer installed
    falls back to its first reported metric, higher is better.

    With ``compare_environments`` rows from different environments share one table per
    task setup, each variant once per environment, and the entries carry their
    environment (a column in every format); otherwise environments never mix.
    """
    groups: dict[tuple[str, str, str, str], dict[str, list[ResultRow]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        env = ALL_ENVIRONMENTS if compare_environments else r.environment
        label = f"{variant_label(r)} @ {r.environment.split(' | ')[0]}" if compare_environments else variant_label(r)
        groups[(r.task, r.profile, env, setup_hash(r))][label].append(r)
    tables = []
    for (task, profile, env, chash), by_variant in sorted(groups.items()):
        entries = [_aggregate(v, rs) for v, rs in by_variant.items()]
        if compare_environments:
            entries = [dataclasses.replace(e, environment=rs[0].environment)
                       for e, rs in zip(entries, by_variant.values(), strict=True)]
        fallback = next((m for e in entries for m in e.metrics), "score")
        metric = metrics.get(task) or Metric(name=fallback)
        sign = -1 if metric.higher_is_better else 1
        entries.sort(key=lambda e: (e.status != "ok", sign * e.metrics.get(metric.name, 0.0), e.variant))
        tables.append(TaskTable(task=task, profile=profile, environment=env, config_hash=chash, metric=metric.name,
                                higher_is_better=metric.higher_is_better, baseline=metric.baseline, entries=entries))
    return tables


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    return a > b if higher_is_better else a < b


@dataclass(kw_only=True)
class Matrix:
    """Variants × tasks: primary metric per cell, a normalized score, the mean rank and coverage."""

    tasks: list[str]
    cells: dict[str, dict[str, float | str]]
    normalized: dict[str, float]
    mean_rank: dict[str, float]
    environment: str
    covered: dict[str, int] = field(default_factory=dict)


def overall_matrix(tables: list[TaskTable]) -> list[Matrix]:
    """One matrix per (environment, profile): cells hold the primary metric or the status.

    The normalized score and the mean rank follow the rules in the module docs; ``covered``
    counts the tasks each variant ran ok.
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
            ok = t.ranked()
            for e in t.entries:
                cells[e.variant][name] = e.metrics[t.metric] if e in ok else e.status
            for variant, rank in t.ranks().items():
                ranks[variant].append(rank)
            for variant, score in t.normalized().items():
                norm[variant].append(score)
        out.append(Matrix(
            tasks=names, cells=dict(cells), environment=f"{profile} · {env}",
            normalized={v: statistics.fmean(s) for v, s in norm.items()},
            mean_rank={v: statistics.fmean(r) for v, r in ranks.items()},
            covered={v: len(r) for v, r in ranks.items()},
        ))
    return out
