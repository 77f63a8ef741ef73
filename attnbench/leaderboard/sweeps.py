"""Quality and cost versus one setting (``run --sweep length=…``), per variant.

Rows of one task, profile and environment whose configurations differ in exactly one key
form a sweep over that key. Rows trained for a time budget (``time_budget_s``) never share a
sweep with step-based rows (budgeted rows alone may sweep ``time_budget_s``). Each variant
gets, per value, its mean primary metric (with its 95 % interval over seeds when there are
two or more) and its median training time and step memory, so a reader sees where an
efficient variant's cost crosses ``sdpa``'s — and whether its quality holds up.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attnbench.leaderboard.stats import format_interval, interval
from attnbench.leaderboard.tables import setup_hash, variant_label
from attnbench.specs import Metric, ResultRow

#: Figures tabulated per sweep point, after the primary metric.
SWEEP_COSTS: tuple[tuple[str, str], ...] = (("train_s", "train s"), ("step_peak_mb", "step peak MB"))


@dataclass(kw_only=True)
class Sweep:
    """One task's sweep over ``key``: ``points[variant][value]`` → figures (or a status)."""

    task: str
    profile: str
    environment: str
    key: str
    metric: str
    values: list[Any]
    points: dict[str, dict[Any, dict[str, float] | str]] = field(default_factory=dict)


def _varying_key(configs: list[Mapping[str, Any]]) -> str | None:
    keys = set().union(*configs)
    varying = [k for k in sorted(keys)
               if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    return varying[0] if len(varying) == 1 else None


def sweeps(rows: Iterable[ResultRow], metrics: Mapping[str, Metric]) -> list[Sweep]:
    """Every sweep the rows hold (see the module docs)."""
    groups: dict[tuple[str, str, str, bool], list[ResultRow]] = defaultdict(list)
    for r in rows:
        if r.config:
            groups[(r.task, r.profile, r.environment, "time_budget_s" in r.config)].append(r)
    out = []
    for (task, profile, env, _budget), group in sorted(groups.items()):
        setups = {setup_hash(r): {k: v for k, v in r.config.items() if k != "variant_options"} for r in group}
        if len(setups) < 2:
            continue
        key = _varying_key(list(setups.values()))
        if key is None:
            continue
        metric = metrics.get(task) or Metric(name=next(iter(group[0].metrics), "score"))
        values = sorted({r.config.get(key) for r in group}, key=lambda v: (str(type(v)), v))
        sweep = Sweep(task=task, profile=profile, environment=env, key=key, metric=metric.name, values=values)
        cells: dict[tuple[str, Any], list[ResultRow]] = defaultdict(list)
        for r in group:
            cells[(variant_label(r), r.config.get(key))].append(r)
        for (variant, value), rs in sorted(cells.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            ok = [r for r in rs if r.status == "ok" and metric.name in r.metrics]
            if not ok:
                sweep.points.setdefault(variant, {})[value] = rs[-1].status
                continue
            spread = interval([r.metrics[metric.name] for r in ok])
            figures = {metric.name: spread.mean, "seeds": float(spread.n)}
            if spread.half_width is not None:  # the 95 % half width over seeds, for the table and the error bars
                figures[f"{metric.name}_ci"] = spread.half_width
            for cost, _ in SWEEP_COSTS:
                found = [r.efficiency[cost] for r in ok if cost in r.efficiency]
                if found:
                    figures[cost] = statistics.median(found)
            sweep.points.setdefault(variant, {})[value] = figures
        out.append(sweep)
    return out


def sweep_rows(sweep: Sweep) -> tuple[list[str], list[list[str]]]:
    """Header and body: one line per variant, per value ``metric · train s · MB`` (or the status)."""
    header = ["variant", *[f"{sweep.key}={v}" for v in sweep.values]]
    body = []
    for variant, by_value in sorted(sweep.points.items()):
        line = [variant]
        for v in sweep.values:
            point = by_value.get(v)
            if point is None:
                line.append("")
            elif isinstance(point, str):
                line.append(point)
            else:
                parts = [format_interval(point[sweep.metric], point.get(f"{sweep.metric}_ci"))]
                parts += [f"{point[c]:.3g} {h.split()[-1]}" if c in point else "" for c, h in SWEEP_COSTS]
                line.append(" · ".join(p for p in parts if p))
        body.append(line)
    return header, body
