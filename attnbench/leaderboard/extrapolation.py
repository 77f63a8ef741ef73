"""The primary metric versus the test length: the probes' length extrapolation, per variant.

A probe task (mqar, induction-heads, selective-copy, passkey, language-modeling) trains at
length L and scores at L, 2L and 4L (:mod:`attnbench.training.extrapolation`): its rows carry
``<metric>``, ``<metric>@2x`` and ``<metric>@4x``, and the artifact ``extrapolation.json`` holds
the lengths, the values and, for each length not evaluated, the reason (learned absolute
positions end at L, a variant built for a fixed ``max_len``).

Rows of one task, profile, environment and task setup (:func:`~attnbench.leaderboard.tables.setup_hash`)
whose ok rows carry a ``@Nx`` figure of the task's primary metric, or name an ``extrapolation``
artifact (a model that ran at no longer length), form one :class:`Extrapolation`:
per variant and test length the mean over seeds with its 95 % Student-t interval
(:func:`~attnbench.leaderboard.stats.interval`), "n/e" with its reason where the length was not
evaluated, or the row's status where no seed ran ok. The table labels each column with its
length (``1× (64)``); the reasons are footnotes under it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from attnbench.leaderboard.stats import format_interval, interval
from attnbench.leaderboard.tables import TaskTable, setup_hash, variant_label
from attnbench.specs import EXTRAPOLATION_FACTORS, Metric, ResultRow, extrapolated_metric

#: What a length without a figure says when its row's ``extrapolation.json`` is gone or silent.
NOT_EVALUATED = "not evaluated at this length"

_FACTOR = re.compile(r"^(?P<metric>.+)@(?P<factor>\d+)x$")


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One variant at one test length: a mean with its interval over ``n`` seeds (``half_width``
    None below two), or ``not_evaluated`` (the reason), or ``status`` (no seed ran ok)."""

    mean: float | None = None
    half_width: float | None = None
    n: int = 0
    values: dict[int, float] = field(default_factory=dict)
    not_evaluated: str = ""
    status: str = ""


@dataclass(kw_only=True)
class Extrapolation:
    """One task setup's metric versus test length: ``cells[variant][factor]``."""

    task: str
    profile: str
    environment: str
    config_hash: str
    metric: str
    higher_is_better: bool
    train_length: int | None
    factors: list[int]
    lengths: dict[int, int | None]
    cells: dict[str, dict[int, Cell]] = field(default_factory=dict)

    def column(self, factor: int) -> str:
        """A column's label: the multiple and the actual length, ``2× (128)``."""
        length = self.lengths.get(factor)
        return f"{factor}×" + (f" ({length})" if length is not None else "")

    @property
    def title(self) -> str:
        """The table's heading."""
        arrow = "↑" if self.higher_is_better else "↓"
        trained = f"trained at L = {self.train_length}" if self.train_length is not None else "trained at 1×"
        one_seed = all(c.n < 2 for cells in self.cells.values() for c in cells.values())
        spread = "1 seed: no interval" if one_seed else "mean ± 95 % interval over seeds"
        return (f"{self.task} · {self.metric} {arrow} versus test length · {self.profile} · {self.environment} · "
                f"config {self.config_hash[:8]} ({trained}; {spread})")

    def reasons(self) -> list[str]:
        """The distinct reasons of the cells not evaluated, in order of first appearance: footnote ``[i]`` is
        ``reasons()[i - 1]``."""
        seen: dict[str, None] = {}
        for variant in sorted(self.cells):
            for factor in self.factors:
                cell = self.cells[variant].get(factor)
                if cell is not None and cell.not_evaluated:
                    seen.setdefault(cell.not_evaluated)
        return list(seen)


def of_table(extrapolations: Iterable[Extrapolation], table: TaskTable) -> list[Extrapolation]:
    """The extrapolations of ``table``'s task setup: the same task, profile, environment and configuration."""
    key = (table.task, table.profile, table.environment, table.config_hash)
    return [ex for ex in extrapolations if (ex.task, ex.profile, ex.environment, ex.config_hash) == key]


def _artifact(row: ResultRow) -> dict:
    """The row's ``extrapolation.json``, or {} when it is missing or unreadable."""
    path = row.artifacts.get("extrapolation")
    if not path or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _reason(artifact: Mapping, factor: int) -> str:
    """Why the artifact says ``factor``× was not evaluated ("" when it does not say)."""
    skipped = artifact.get("not_evaluated")
    return str(skipped.get(f"{factor}x") or "") if isinstance(skipped, dict) else ""


def _factors(rows: Iterable[ResultRow], metric: str) -> set[int]:
    found = set()
    for r in rows:
        for name in r.metrics:
            match = _FACTOR.match(name)
            if match and match["metric"] == metric:
                found.add(int(match["factor"]))
    return found


def _label_factor(label: str) -> int | None:
    match = re.fullmatch(r"(\d+)x", str(label))
    return int(match[1]) if match else None


def _metric_of(task: str, group: list[ResultRow], metrics: Mapping[str, Metric]) -> Metric | None:
    """The task's primary metric, or (task no longer installed) the metric its ``@Nx`` figures extend."""
    if task in metrics:
        return metrics[task]
    for r in group:
        for name in sorted(r.metrics):
            match = _FACTOR.match(name)
            if match and match["metric"] in r.metrics:
                return Metric(name=match["metric"])
    return None


def extrapolations(rows: Iterable[ResultRow], metrics: Mapping[str, Metric]) -> list[Extrapolation]:
    """Every task setup whose rows carry ``@Nx`` figures of the task's primary metric or an ``extrapolation``
    artifact (see the module docs)."""
    groups: dict[tuple[str, str, str, str], list[ResultRow]] = defaultdict(list)
    for r in rows:
        groups[(r.task, r.profile, r.environment, setup_hash(r))].append(r)
    out = []
    for (task, profile, env, chash), group in sorted(groups.items()):
        metric = _metric_of(task, group, metrics)
        if metric is None:
            continue
        ok = [r for r in group if r.status == "ok"]
        longer = _factors(ok, metric.name)
        declared = [r for r in ok if "extrapolation" in r.artifacts]
        if not longer and not declared:
            continue
        artifacts = {id(r): _artifact(r) for r in ok}
        # A model that ran at no longer length (learned positions) has only its artifact to say so;
        # with that file gone too, the protocol's lengths stand in.
        factors = {1} | longer | (set() if longer else set(EXTRAPOLATION_FACTORS))
        lengths: dict[int, int | None] = {}
        for data in artifacts.values():
            for label, length in (data.get("lengths") or {}).items():
                factor = _label_factor(label)
                if factor is not None and isinstance(length, int):
                    factors.add(factor)
                    lengths.setdefault(factor, length)
        train = next((d["train_length"] for d in artifacts.values() if isinstance(d.get("train_length"), int)), None)
        if train is None and isinstance(group[0].config.get("length"), int):
            train = int(group[0].config["length"])  # every probe trains at its profile's `length`
        for factor in factors:
            lengths.setdefault(factor, None if train is None else factor * train)
        ex = Extrapolation(task=task, profile=profile, environment=env, config_hash=chash, metric=metric.name,
                           higher_is_better=metric.higher_is_better, train_length=train, factors=sorted(factors),
                           lengths=lengths)
        by_variant: dict[str, list[ResultRow]] = defaultdict(list)
        for r in group:
            by_variant[variant_label(r)].append(r)
        for variant, rs in sorted(by_variant.items()):
            good = [r for r in rs if r.status == "ok"]
            if not good:
                last = max(rs, key=lambda r: r.finished_at)
                ex.cells[variant] = {f: Cell(status=last.status) for f in ex.factors}
                continue
            cells = {}
            for factor in ex.factors:
                name = extrapolated_metric(metric.name, factor)
                values = {r.seed: float(r.metrics[name]) for r in good if name in r.metrics}
                if values:
                    spread = interval(list(values.values()))
                    cells[factor] = Cell(mean=spread.mean, half_width=spread.half_width, n=spread.n, values=values)
                    continue
                why = next((_reason(artifacts[id(r)], factor) for r in good if _reason(artifacts[id(r)], factor)),
                           NOT_EVALUATED)
                cells[factor] = Cell(not_evaluated=why)
            ex.cells[variant] = cells
        out.append(ex)
    return out


def cell_text(ex: Extrapolation, cell: Cell | None, footnotes: Mapping[str, int] | None = None) -> str:
    """A cell as the table shows it: ``0.81 ± 0.05``, ``n/e [1]``, the status, or "" when absent."""
    if cell is None:
        return ""
    if cell.status:
        return cell.status
    if cell.not_evaluated:
        note = (footnotes or {}).get(cell.not_evaluated)
        return "n/e" + (f" [{note}]" if note else "")
    return format_interval(cell.mean, cell.half_width)


def extrapolation_rows(ex: Extrapolation) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body (one line per variant, one column per test length) and the footnotes under the table."""
    reasons = ex.reasons()
    footnotes = {why: i for i, why in enumerate(reasons, 1)}
    header = ["variant", "seeds", *[ex.column(f) for f in ex.factors]]
    body = []
    for variant, cells in sorted(ex.cells.items()):
        seeds = max((c.n for c in cells.values()), default=0)
        body.append([variant, str(seeds) if seeds else "", *[cell_text(ex, cells.get(f), footnotes) for f in ex.factors]])
    notes = [f"[{i}] n/e (not evaluated): {why}" for why, i in footnotes.items()]
    return header, body, notes


def extrapolation_long_rows(ex: Extrapolation) -> tuple[list[str], list[list[str]]]:
    """The same figures one line per variant and length, with raw numbers (for CSV)."""
    header = ["task", "profile", "environment", "config", "metric", "variant", "factor", "length", "mean",
              "half_width", "seeds", "cell", "not_evaluated", "status"]
    body = []
    for variant, cells in sorted(ex.cells.items()):
        for factor in ex.factors:
            cell = cells.get(factor) or Cell()
            length = ex.lengths.get(factor)
            body.append([ex.task, ex.profile, ex.environment, ex.config_hash[:8], ex.metric, variant, str(factor),
                         "" if length is None else str(length), "" if cell.mean is None else repr(cell.mean),
                         "" if cell.half_width is None else repr(cell.half_width), str(cell.n) if cell.n else "",
                         cell_text(ex, cell), cell.not_evaluated, cell.status])
    return header, body


def extrapolation_json(ex: Extrapolation) -> dict:
    """Raw numbers: per variant and length (``"2x"``) the mean, the 95 % interval and the per-seed values,
    or the reason it was not evaluated, or the status."""
    variants = {}
    for variant, cells in sorted(ex.cells.items()):
        by_length = {}
        for factor in ex.factors:
            cell = cells.get(factor)
            if cell is None:
                continue
            if cell.status:
                by_length[f"{factor}x"] = {"status": cell.status}
            elif cell.not_evaluated:
                by_length[f"{factor}x"] = {"not_evaluated": cell.not_evaluated}
            else:
                half = cell.half_width
                by_length[f"{factor}x"] = {
                    "mean": cell.mean, "half_width": half, "low": None if half is None else cell.mean - half,
                    "high": None if half is None else cell.mean + half, "n": cell.n, "level": 0.95,
                    "values": {str(seed): v for seed, v in sorted(cell.values.items())},
                }
        variants[variant] = by_length
    return {"task": ex.task, "profile": ex.profile, "environment": ex.environment, "config_hash": ex.config_hash,
            "metric": ex.metric, "higher_is_better": ex.higher_is_better, "train_length": ex.train_length,
            "title": ex.title, "factors": ex.factors,
            "lengths": {f"{f}x": ex.lengths.get(f) for f in ex.factors},
            "not_evaluated_reasons": ex.reasons(), "variants": variants}
