"""Leaderboard tables built from result rows: one per task and setup, plus the overall matrix.

Rows are grouped by (task, profile, environment, setup hash): results from different
environments or setups are never mixed in one ranking. Within a group, seeds of one
variant are aggregated: the mean, its 95 % Student-t interval and the seed count
(:mod:`attnbench.leaderboard.stats`).

The rules, as the report states them (:data:`RULES`):

* **Intervals.** A score is the mean over seeds ± the half width of its 95 % Student-t
  confidence interval; ``Δ sdpa`` is the mean of the per-seed differences to ``sdpa`` over
  the seeds both ran (same data order and initialisation of the shared parts) with its own
  interval. Digits follow the interval's width (two significant digits of the half width).
* **Ranks.** A variant's rank is 1 + the number of variants *significantly* better than it:
  by a paired difference over shared seeds whose 95 % interval excludes 0; with fewer than
  two shared seeds, by Welch's interval over each one's seeds; with one seed on either side,
  by any strictly better score. So every variant not significantly below the best shares
  rank 1. A table with one seed per variant says in its heading that ranks are not reliable.
* **Cost ratios** (``×sdpa``) divide a variant's figure by ``sdpa``'s in the same table.
* **Fairness.** A model whose parameter count differs from the ``sdpa`` model of the same
  table by more than 10 % is flagged (LRA and CAB state such a budget).
* **Pareto.** Among the variants without a fairness flag, a variant is on the
  quality–time front when no other is at least as good and at least as fast in training,
  and strictly better in one of the two. A flagged variant is never on the front.
* **Normalized score** per task: (score − baseline) / (sdpa − baseline), so the task's
  trivial baseline is 0 and ``sdpa`` is 1 (signs flipped for lower-is-better metrics). A
  task counts only when ``sdpa`` beats the baseline by more than ``sdpa``'s interval (with
  one seed: beats it at all); otherwise it is excluded, with the reason, and there is no
  min–max fallback.
* **Across tasks.** Variants that ran ok on every task of a matrix form the complete group:
  their mean rank is Friedman's average rank (ranks by mean score per task, ties averaged),
  tested with Friedman's χ² and Nemenyi's critical difference (Demšar 2006). Variants with
  partial coverage form their own group, ranked by their average rank over the tasks they
  ran, with their coverage shown.
* **Convergence.** Each row records ``late_drop_share``, the share of its training-loss drop
  that came in the last fifth of its steps (:mod:`attnbench.training.convergence`), shown per
  variant (median over seeds). A table whose ``sdpa`` has not plateaued (its share above
  ``PLATEAU_SHARE``, 0.1) says "early training" in its heading: it ranks how fast variants
  learn at this budget, not where they end up.
* **Equal time.** Rows trained for a wall-time budget (``time_budget_s`` in their
  configuration, ``run --budget``) hash apart from step-based rows, so they form their own
  tables, headed as an equal-time ranking with the steps each variant reached, and their own
  matrix: what learns most in that many seconds on that hardware.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from attnbench.leaderboard.stats import (
    Friedman,
    Interval,
    average_ranks,
    friedman,
    interval,
    paired_difference,
    welch_difference,
)
from attnbench.specs import Metric, ResultRow

REFERENCE = "sdpa"
FAIRNESS_TOLERANCE = 0.10

#: The rules of every table, in the words the reports print.
RULES = (
    "Scores: mean over seeds ± half width of the 95 % Student-t interval; Δ sdpa: mean per-seed difference to "
    "sdpa over the seeds both ran, ± its 95 % interval; digits follow the interval's width. Ranks: 1 + the number "
    "of variants significantly better (paired 95 % interval of the difference excludes 0; Welch's interval with "
    "fewer than two shared seeds; any better score with one seed, when ranks are not reliable). ×sdpa columns "
    "divide by sdpa's figure in the same table. Fairness flags a parameter count more than 10 % off sdpa's; a "
    "flagged row is never on the Pareto front (★, quality vs training time among unflagged rows). Normalized "
    "score per task: (score − baseline) / (sdpa − baseline), counted only on tasks where sdpa beats the baseline "
    "by more than its interval (excluded tasks are listed, no min–max fallback). Across tasks: the variants that "
    "ran every task are ranked by Friedman's average rank with Nemenyi's critical difference (Demšar 2006); "
    "variants with partial coverage are ranked in their own group. Late drop: the share of a row's training-loss "
    "drop that came in its last fifth of steps; a table is marked early training when sdpa's exceeds 0.1. Tables "
    "of rows trained for a wall-time budget rank what learns most in that time, with the steps reached, apart "
    "from step-based tables."
)

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
    ("train_steps", "steps"),
    ("late_drop_share", "late drop share"),
    ("host_load_1m", "host load"),
)

#: Cost figures also shown as a ratio to the reference variant in the same table.
RATIO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("train_s", "train ×sdpa"),
    ("infer_ms_per_batch", "infer ×sdpa"),
    ("step_peak_mb", "memory ×sdpa"),
)


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One variant's aggregated line in a task table.

    ``metrics`` are means over the seeds that ran ok, ``metric_std`` their standard
    deviations, ``metric_ci`` the half widths of their 95 % intervals (absent with one
    seed), and ``per_seed`` the primary metric by seed (for paired differences).
    """

    variant: str
    status: str
    seeds: int
    metrics: dict[str, float]
    metric_std: dict[str, float]
    cost: dict[str, float]
    metric_ci: dict[str, float] = field(default_factory=dict)
    per_seed: dict[int, float] = field(default_factory=dict)
    note: str = ""
    environment: str = ""  # set only when environments are compared in one table


@dataclass(frozen=True, kw_only=True)
class Normalization:
    """A task's normalized scores, or why the task is not counted (``excluded``)."""

    scores: dict[str, float]
    excluded: str = ""
    baseline_value: float | None = None


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
    #: The task setup the hash covers (profile settings after overrides, data dir), as stored in the rows.
    config: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The table's heading: an equal-time or best-of table says so; a one-seed table says that
        its ranks are not reliable; a table whose sdpa has not plateaued says "early training"."""
        parts = [self.task, self.profile, self.environment, *self.protocol(), f"config {self.config_hash[:8]}"]
        if self.one_seed:
            parts.append("1 seed: ranks are not reliable")
        if self.early_training():
            parts.append(self.early_training())
        return " · ".join(parts)

    @property
    def time_budget_s(self) -> float | None:
        """The wall-time budget every row of this table trained for (None: a fixed number of steps)."""
        budget = self.config.get("time_budget_s")
        return None if budget is None else float(budget)

    def protocol(self) -> list[str]:
        """How this table's rows were trained or chosen, as heading parts (empty for the plain protocol)."""
        if self.time_budget_s is None:
            return []
        return [f"equal time: what learns most in {self.time_budget_s:g} s on this hardware (steps reached shown)"]

    def tag(self) -> str:
        """A short name for how this table's rows were chosen, for the matrix's column ("" here)."""
        return ""

    def extra_columns(self) -> list[tuple[str, dict[str, str]]]:
        """Columns a kind of table adds before the note, as (header, cell by variant); none here."""
        return []

    def early_training(self) -> str:
        """Why this table is early training (sdpa's median late drop share above the plateau
        threshold), or "" when sdpa has plateaued or its rows predate the figure."""
        from attnbench.training.convergence import PLATEAU_SHARE  # here: the training package imports torch

        ref = self.reference()
        share = None if ref is None else ref.cost.get("late_drop_share")
        if share is None or share <= PLATEAU_SHARE:
            return ""
        return (f"early training: sdpa's last fifth of steps brought {share:.1%} of its loss drop "
                f"(plateaued: ≤ {PLATEAU_SHARE:.0%})")

    @property
    def one_seed(self) -> bool:
        """Whether no ranked variant has more than one seed (no interval anywhere)."""
        ok = self.ranked()
        return bool(ok) and all(e.seeds < 2 for e in ok)

    def metric_names(self) -> list[str]:
        """Primary metric first, then every other metric any entry reports."""
        names = {m for e in self.entries for m in e.metrics}
        return [self.metric, *sorted(names - {self.metric})]

    def ranked(self) -> list[Entry]:
        """Entries that ran ok and report the primary metric."""
        return [e for e in self.entries if e.status == "ok" and self.metric in e.metrics]

    def interval(self, entry: Entry, metric: str | None = None) -> Interval:
        """``entry``'s mean and 95 % interval over its seeds for ``metric`` (default: the primary one)."""
        metric = metric or self.metric
        return Interval(mean=entry.metrics[metric], half_width=entry.metric_ci.get(metric), n=entry.seeds)

    def difference(self, a: Entry, b: Entry) -> Interval | None:
        """``a − b`` on the primary metric, oriented so that > 0 means ``a`` is better.

        Paired over shared seeds when they share at least two; else Welch's interval when
        both have two seeds; else the plain difference of means, without an interval.
        """
        sign = 1 if self.higher_is_better else -1
        paired = paired_difference(a.per_seed, b.per_seed)
        if paired is not None and paired.n >= 2:
            return dataclasses.replace(paired, mean=sign * paired.mean)
        welch = welch_difference(list(a.per_seed.values()), list(b.per_seed.values()))
        if welch is not None:
            return dataclasses.replace(welch, mean=sign * welch.mean)
        return Interval(mean=sign * (a.metrics[self.metric] - b.metrics[self.metric]), half_width=None, n=1)

    def significantly_better(self, a: Entry, b: Entry) -> bool:
        """Whether ``a`` beats ``b`` by the rank rule (see the module docs)."""
        gap = self.difference(a, b)
        if gap.half_width is None:
            return gap.mean > 0
        return gap.mean > gap.half_width

    def tied(self, a: Entry, b: Entry) -> bool:
        """Whether neither of ``a`` and ``b`` is significantly better than the other."""
        return not self.significantly_better(a, b) and not self.significantly_better(b, a)

    def ranks(self) -> dict[str, int]:
        """Rank of each variant that ran ok: 1 + the number of variants significantly better."""
        ok = self.ranked()
        return {e.variant: 1 + sum(self.significantly_better(o, e) for o in ok if o is not e) for e in ok}

    def reference(self) -> Entry | None:
        """The ``sdpa`` entry, when it ran ok."""
        return next((e for e in self.ranked() if e.variant == REFERENCE), None)

    def difference_to_reference(self, entry: Entry) -> Interval | None:
        """``entry − sdpa`` on the primary metric (raw sign: negative = lower score), paired over shared seeds."""
        ref = self.reference()
        if ref is None or entry not in self.ranked():
            return None
        paired = paired_difference(entry.per_seed, ref.per_seed)
        if paired is not None:
            return paired
        return Interval(mean=entry.metrics[self.metric] - ref.metrics[self.metric], half_width=None, n=0)

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
        """Variants on the quality–training-time front among the unflagged ones (see the module docs)."""
        ok = [e for e in self.ranked() if "train_s" in e.cost and not self.fairness(e)]
        sign = 1 if self.higher_is_better else -1

        def dominates(a: Entry, b: Entry) -> bool:
            qa, qb = sign * a.metrics[self.metric], sign * b.metrics[self.metric]
            ta, tb = a.cost["train_s"], b.cost["train_s"]
            return qa >= qb and ta <= tb and (qa > qb or ta < tb)

        return {e.variant for e in ok if not any(dominates(o, e) for o in ok if o is not e)}

    def normalization(self) -> Normalization:
        """Normalized scores against the baseline and ``sdpa``, or why this task is excluded."""
        ref = self.reference()
        if not self.baseline:
            return Normalization(scores={}, excluded="the task reports no baseline score")
        if ref is None:
            return Normalization(scores={}, excluded="sdpa did not run ok, so there is no 1 to scale to")
        bases = [e.metrics[self.baseline] for e in [ref, *self.ranked()] if self.baseline in e.metrics]
        if not bases:
            return Normalization(scores={}, excluded=f"no row reports the baseline {self.baseline!r}")
        base = bases[0]
        sign = 1 if self.higher_is_better else -1
        margin = sign * (ref.metrics[self.metric] - base)
        half = ref.metric_ci.get(self.metric)
        shown = f"sdpa {ref.metrics[self.metric]:.4g}" + (f" ± {half:.2g}" if half is not None else " (1 seed)")
        if half is None and margin <= 0:
            return Normalization(scores={}, baseline_value=base,
                                 excluded=f"{shown} does not beat the baseline {self.baseline} {base:.4g}")
        if half is not None and margin <= half:
            return Normalization(scores={}, baseline_value=base,
                                 excluded=f"{shown} does not beat the baseline {self.baseline} {base:.4g} by more "
                                 "than its 95 % interval")
        span = ref.metrics[self.metric] - base
        return Normalization(scores={e.variant: (e.metrics[self.metric] - base) / span for e in self.ranked()},
                             baseline_value=base)

    def normalized(self) -> dict[str, float]:
        """Each ok variant's normalized score on this task; empty when the task is excluded."""
        return self.normalization().scores

    def cost_columns(self) -> list[tuple[str, str]]:
        """The efficiency columns some entry reports, as (key, header); under a time budget the
        steps column is "steps reached"."""
        present = {c for e in self.entries for c in e.cost}
        budget = self.time_budget_s is not None
        return [(key, "steps reached" if budget and key == "train_steps" else header)
                for key, header in COST_COLUMNS if key in present]

    def ratio_columns(self) -> list[tuple[str, str]]:
        """The ×sdpa columns this table can fill, as (key, header)."""
        if self.reference() is None:
            return []
        present = {c for e in self.entries for c in e.cost}
        return [(key, header) for key, header in RATIO_COLUMNS if key in present]


def reason(error: str) -> str:
    """The whole reason of a row that did not run ok, on one line: a traceback's exception
    lines, or every line of a plain message (never cut)."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback"):
        # Frames are indented; the exception (possibly several lines) follows the last indented line.
        last_frame = max((i for i, line in enumerate(lines) if line[:1].isspace()), default=0)
        lines = lines[last_frame + 1:] or lines[-1:]
    return " ".join(line.strip() for line in lines)


def _aggregate(variant: str, rows: list[ResultRow], metric: str) -> Entry:
    ok = [r for r in rows if r.status == "ok"]
    if not ok:
        last = max(rows, key=lambda r: r.finished_at)
        return Entry(variant=variant, status=last.status, seeds=len(rows), metrics={}, metric_std={}, cost={},
                     note=reason(last.error))
    names = {m for r in ok for m in r.metrics}
    values = {m: [r.metrics[m] for r in ok if m in r.metrics] for m in names}
    metrics = {m: statistics.fmean(v) for m, v in values.items()}
    std = {m: statistics.stdev(v) if len(v) > 1 else 0.0 for m, v in values.items()}
    ci = {m: interval(v).half_width for m, v in values.items() if len(v) > 1}
    costs = {c for r in ok for c in r.efficiency}
    cost = {c: statistics.median(r.efficiency[c] for r in ok if c in r.efficiency) for c in costs}
    failed = len(rows) - len(ok)
    note = f"{failed} of {len(rows)} seeds not ok" if failed else ""
    return Entry(variant=variant, status="ok", seeds=len(ok), metrics=metrics, metric_std=std, cost=cost,
                 metric_ci=ci, per_seed={r.seed: r.metrics[metric] for r in ok if metric in r.metrics}, note=note)


def setup_hash(row: ResultRow) -> str:
    """The hash of the task's setup alone, which names a table and its files.

    It covers the row's stored configuration — the task's profile settings after ``--set``
    overrides, and the data directory when one was passed — and nothing else: not the
    variant's options (so ``local`` with ``window=8`` is ranked beside ``sdpa`` on the same
    task setup), not the seed, device or versions (the environment keys those apart). A change
    to a task's profile therefore changes the hash, and the reference leaderboards must be
    regenerated (``tests/test_reference_hashes.py``). Every key of a profile counts, so a task
    should not list a setting at a value that changes nothing (a new option at its "off"
    value): it reads such a key with a default instead, and existing tables keep their hash.
    Rows written before configurations were stored fall back to their config hash.
    """
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
        fallback = next((m for rs in by_variant.values() for r in rs for m in r.metrics), "score")
        metric = metrics.get(task) or Metric(name=fallback)
        entries = [_aggregate(v, rs, metric.name) for v, rs in by_variant.items()]
        if compare_environments:
            entries = [dataclasses.replace(e, environment=rs[0].environment)
                       for e, rs in zip(entries, by_variant.values(), strict=True)]
        sign = -1 if metric.higher_is_better else 1
        entries.sort(key=lambda e: (e.status != "ok", sign * e.metrics.get(metric.name, 0.0), e.variant))
        first = next(iter(by_variant.values()))[0]
        setup = {k: v for k, v in (first.config or {}).items() if k != "variant_options"}
        tables.append(TaskTable(task=task, profile=profile, environment=env, config_hash=chash, metric=metric.name,
                                higher_is_better=metric.higher_is_better, baseline=metric.baseline, entries=entries,
                                config=setup))
    return tables


@dataclass(kw_only=True)
class Matrix:
    """Variants × tasks for one environment and profile (see the module docs for the rules).

    ``cells[variant][task]`` holds the mean primary metric or the status; ``intervals`` the
    95 % half widths; ``flags`` the fairness flags; ``columns[task]`` the metric and its
    direction. ``complete`` lists the variants that ran ok on every task (ranked by
    ``friedman``'s average rank); the others are the partial group. ``excluded[task]`` says
    why a task is not in the normalized score.
    """

    tasks: list[str]
    cells: dict[str, dict[str, float | str]]
    normalized: dict[str, float]
    mean_rank: dict[str, float]
    environment: str
    covered: dict[str, int] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    flags: dict[str, dict[str, str]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    complete: list[str] = field(default_factory=list)
    friedman: Friedman | None = None

    def order(self) -> list[str]:
        """Variants in display order: the complete group by mean rank, then the partial group."""
        return sorted(self.cells, key=lambda v: (v not in self.complete, self.mean_rank.get(v, float("inf")),
                                                 -self.normalized.get(v, float("-inf")), v))


def overall_matrix(tables: list[TaskTable]) -> list[Matrix]:
    """One matrix per (environment, profile, time budget), following the rules in the module docs:
    equal-time tables never share a matrix with step-based ones."""
    by_env: dict[tuple[str, str, float], list[TaskTable]] = defaultdict(list)
    for t in tables:
        by_env[(t.environment, t.profile, -1.0 if t.time_budget_s is None else t.time_budget_s)].append(t)
    out = []
    for (env, profile, budget), group in sorted(by_env.items()):
        cells: dict[str, dict[str, float | str]] = defaultdict(dict)
        intervals: dict[str, dict[str, float]] = defaultdict(dict)
        flags: dict[str, dict[str, str]] = defaultdict(dict)
        norm: dict[str, list[float]] = defaultdict(list)
        scores: dict[str, dict[str, float]] = {}
        direction: dict[str, bool] = {}
        names, columns, excluded = [], {}, {}
        for t in group:
            name = t.task if sum(x.task == t.task for x in group) == 1 else f"{t.task}@{t.config_hash[:6]}"
            names.append(name)
            columns[name] = f"{t.metric} {'↑' if t.higher_is_better else '↓'}" + (f", {t.tag()}" if t.tag() else "")
            ok = t.ranked()
            for e in t.entries:
                cells[e.variant][name] = e.metrics[t.metric] if e in ok else e.status
                if e in ok and t.metric in e.metric_ci:
                    intervals[e.variant][name] = e.metric_ci[t.metric]
                if t.fairness(e):
                    flags[e.variant][name] = t.fairness(e)
            scores[name] = {e.variant: e.metrics[t.metric] for e in ok}
            direction[name] = t.higher_is_better
            normalization = t.normalization()
            if normalization.excluded:
                excluded[name] = normalization.excluded
            for variant, score in normalization.scores.items():
                norm[variant].append(score)
        covered = {v: sum(v in scores[n] for n in names) for v in cells}
        complete = sorted(v for v in cells if covered[v] == len(names))
        test = friedman({n: {v: scores[n][v] for v in complete} for n in names}, direction) if complete else None
        mean_rank: dict[str, float] = {}
        if test is not None:
            mean_rank.update(test.average_rank)
        else:
            ranks = {n: average_ranks({v: scores[n][v] for v in complete}, direction[n]) for n in names}
            mean_rank.update({v: statistics.fmean(ranks[n][v] for n in names) for v in complete if names})
        for v in cells:
            if v in complete:
                continue
            own = [average_ranks(scores[n], direction[n])[v] for n in names if v in scores[n]]
            if own:
                mean_rank[v] = statistics.fmean(own)
        out.append(Matrix(
            tasks=names, cells=dict(cells),
            environment=f"{profile} · {env}" + (f" · equal time: what learns most in {budget:g} s" if budget >= 0 else ""),
            normalized={v: statistics.fmean(s) for v, s in norm.items()}, mean_rank=mean_rank,
            covered={v: c for v, c in covered.items() if c}, columns=columns, intervals=dict(intervals),
            flags=dict(flags), excluded=excluded, complete=complete, friedman=test,
        ))
    return out
