"""Writing leaderboard tables as Markdown, CSV and JSON (the same content in each)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

from attnbench.leaderboard.extrapolation import Extrapolation, extrapolation_json
from attnbench.leaderboard.stats import format_interval
from attnbench.leaderboard.sweeps import Sweep
from attnbench.leaderboard.tables import REFERENCE, RULES, Matrix, TaskTable


def format_value(value: float | str | None, key: str = "") -> str:
    """A compact, readable cell: integers with separators, big counts in G/M, else 4 digits."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if key == "train_steps":
        return f"{value:,.0f}"
    if key == "late_drop_share":
        return f"{value:.2f}"
    if key == "params" or key.startswith("flops"):
        for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(value) >= size:
                return f"{value / size:.3g}{unit}"
        return f"{value:.0f}"
    return f"{value:.4g}"


def column_key(header: str) -> str:
    """How ``--columns`` names a column: its header in lower case, without the direction arrow,
    spaces as underscores (``train ×sdpa`` → ``train_×sdpa``; ``train_xsdpa`` is accepted too; ``Δ sdpa`` →
    ``delta_sdpa``)."""
    return header.replace(" ↑", "").replace(" ↓", "").replace("Δ ", "delta ").strip().lower().replace(" ", "_")


def _matches(key: str, wanted: str) -> bool:
    wanted = wanted.strip().lower().replace(" ", "_")
    return key == wanted or key.replace("×", "x") == wanted


def task_rows(table: TaskTable) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of a task table (every column), shared by every format."""
    metrics = table.metric_names()
    costs = table.cost_columns()
    ratios = table.ratio_columns()
    extra = table.extra_columns()
    arrow = "↑" if table.higher_is_better else "↓"
    compared = any(e.environment for e in table.entries)
    normalization = table.normalization()
    header = ["rank", "variant", *(["environment"] if compared else []), "status", "seeds",
              *[f"{m} {arrow}" if m == table.metric else m for m in metrics], "Δ sdpa",
              *[h for _, h in costs], *[h for _, h in ratios], "normalized", "pareto", "fairness",
              *[h for h, _ in extra], "note"]
    body = []
    ranks = table.ranks()
    front = table.pareto()
    # By rank, then by mean (entries are sorted by mean): a noisy variant can out-rank a better mean.
    order = sorted(table.entries, key=lambda e: ranks.get(e.variant, len(table.entries) + 1))
    for e in order:
        cells = [str(ranks.get(e.variant, "—")), e.variant, *([e.environment] if compared else []), e.status, str(e.seeds)]
        for m in metrics:
            v = e.metrics.get(m)
            cells.append("" if v is None else format_interval(v, e.metric_ci.get(m)))
        gap = table.difference_to_reference(e)
        cells.append("" if gap is None or e.variant == REFERENCE else format_interval(gap.mean, gap.half_width, signed=True))
        cells += [format_value(e.cost.get(k), k) for k, _ in costs]
        own = table.ratios(e)
        cells += [f"{own[k]:.2f}×" if k in own else "" for k, _ in ratios]
        if normalization.excluded:
            cells.append(f"excluded: {normalization.excluded}" if e.status == "ok" else "")
        else:
            cells.append(format_value(normalization.scores.get(e.variant)))
        cells += ["★" if e.variant in front else "", table.fairness(e), *[by.get(e.variant, "") for _, by in extra],
                  e.note]
        body.append(cells)
    return header, body


def select_columns(header: list[str], body: list[list[str]], wanted: list[str] | tuple[str, ...]
                   ) -> tuple[list[str], list[list[str]]]:
    """The ``wanted`` columns of a task table, in that order: header keys (:func:`column_key`),
    ``score`` for the primary metric (the first column with an arrow) and ``flags`` (status
    when not ok, ★, fairness). A wanted column the table lacks (no sdpa row, so no ×sdpa) is
    left out; a name no table has is the caller's error to raise."""
    keys = [column_key(h) for h in header]
    primary = next((i for i, h in enumerate(header) if h.endswith(("↑", "↓"))), None)
    out_header: list[str] = []
    pickers = []
    for name in wanted:
        if name == "score" and primary is not None:
            index = primary
        elif name == "flags":
            out_header.append("flags")
            pickers.append(lambda row, keys=keys: _flags(dict(zip(keys, row, strict=True))))
            continue
        else:
            index = next((i for i, k in enumerate(keys) if _matches(k, name)), None)
            if index is None:
                continue
        out_header.append(header[index])
        pickers.append(lambda row, index=index: row[index])
    return out_header, [[pick(row) for pick in pickers] for row in body]


def _flags(row: dict[str, str]) -> str:
    parts = [row.get("status", "")] if row.get("status", "ok") != "ok" else []
    parts += [p for p in (row.get("pareto", ""), row.get("fairness", "")) if p]
    return " ".join(parts)


def matrix_rows(matrix: Matrix) -> tuple[list[str], list[list[str]]]:
    """Header and body of the overall matrix: the complete group by mean rank, then the partial group
    (then variants that ran no task ok, group "none").

    Each task column names its metric and direction; a cell is the mean ± its 95 % interval,
    with ⚑ when the variant carries a fairness flag there (the flags column says which).
    """
    header = ["group", "variant", *[f"{t} ({matrix.columns.get(t, 'score')})" for t in matrix.tasks],
              "normalized score ↑", "mean rank ↓", "tasks", "fairness flags"]
    total = len(matrix.tasks)
    body = []
    for v in matrix.order():
        cells = []
        for t in matrix.tasks:
            value = matrix.cells[v].get(t, "")
            text = format_interval(value, matrix.intervals.get(v, {}).get(t)) if isinstance(value, float) else value
            cells.append(text + (" ⚑" if t in matrix.flags.get(v, {}) else ""))
        flags = "; ".join(f"{t}: {f}" for t, f in matrix.flags.get(v, {}).items())
        group = "complete" if v in matrix.complete else ("partial" if matrix.covered.get(v) else "none")
        body.append([group, v, *cells, format_value(matrix.normalized.get(v)), format_value(matrix.mean_rank.get(v)),
                     f"{matrix.covered.get(v, 0)}/{total}", flags])
    return header, body


def matrix_notes(matrix: Matrix) -> list[str]:
    """What a reader needs beside the matrix: the cross-task test and the tasks left out of the
    normalized score, with the reason (one line each, never cut)."""
    notes = []
    test = matrix.friedman
    if test is not None:
        verdict = "the variants differ" if test.significant() else "no significant difference"
        notes.append(f"Friedman over {len(test.datasets)} tasks × {len(test.variants)} variants (the complete group): "
                     f"χ² = {test.statistic:.3g}, p = {test.p_value:.2g} ({verdict} at α = {test.alpha:g}); "
                     f"Nemenyi critical difference of average ranks: {test.critical_difference:.2f}")
        for clique in test.cliques():
            notes.append("not significantly different (Nemenyi): " + ", ".join(clique))
    elif matrix.complete:
        notes.append(f"no Friedman test: it needs at least 3 variants that ran all of at least 2 tasks "
                     f"({len(matrix.complete)} variant(s) over {len(matrix.tasks)} task(s) here)")
    partial = [v for v in matrix.cells if v not in matrix.complete and matrix.covered.get(v)]
    if partial:
        notes.append(f"partial coverage, ranked in their own group: {', '.join(sorted(partial))}")
    for task, why in matrix.excluded.items():
        notes.append(f"normalized score excludes {task}: {why}")
    return notes


def markdown(header: list[str], body: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, body)]) + "\n"


def csv_text(header: list[str], body: list[list[str]]) -> str:
    """CSV with a header row."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def _interval(i) -> dict | None:
    if i is None:
        return None
    return {"mean": i.mean, "low": i.low, "high": i.high, "half_width": i.half_width, "n": i.n, "level": 0.95}


def json_text(tables: list[TaskTable], matrices: list[Matrix], sweeps: list[Sweep] = (),
              best_of: dict | None = None, extrapolations: list[Extrapolation] = ()) -> str:
    """Every table, matrix and sweep with raw (unformatted) numbers: per entry its rank, 95 %
    interval, paired difference to sdpa, flags, normalized score and (in ``cost``) its steps and
    late drop share; per table the rank rule, why it is left out of the normalized score, whether
    it is early training, its time budget, and for a best-of table the grid and the value picked
    per seed; per matrix the groups and the Friedman test; ``best_of``: the key asked for and the
    grids refused; ``extrapolation``: per probe task setup the metric at each test length (mean, 95 %
    interval, per-seed values) or why a length was not evaluated (:mod:`attnbench.leaderboard.extrapolation`)."""
    def task(t: TaskTable) -> dict:
        out = asdict(t)
        ranks, front, normalization = t.ranks(), t.pareto(), t.normalization()
        out.update(title=t.title, ranks_reliable=not t.one_seed, normalized_excluded=normalization.excluded or None,
                   baseline_value=normalization.baseline_value, early_training=t.early_training() or None,
                   time_budget_s=t.time_budget_s, selection=t.tag() or None)
        for entry in out["entries"]:
            e = next(x for x in t.entries if x.variant == entry["variant"])
            ok = e in t.ranked()
            entry.update(rank=ranks.get(e.variant), pareto=e.variant in front, fairness=t.fairness(e),
                         cost_ratio_to_sdpa=t.ratios(e), normalized=normalization.scores.get(e.variant),
                         interval=_interval(t.interval(e)) if ok else None,
                         difference_to_sdpa=_interval(t.difference_to_reference(e)))
        return out

    def matrix(m: Matrix) -> dict:
        out = asdict(m)
        out["order"] = m.order()
        if m.friedman is not None:
            out["friedman"]["significant"] = m.friedman.significant()
            out["friedman"]["not_significantly_different"] = m.friedman.cliques()
        out["notes"] = matrix_notes(m)
        return out

    def sweep(s: Sweep) -> dict:
        out = asdict(s)
        out["points"] = {v: {str(k): p for k, p in by.items()} for v, by in s.points.items()}
        return out

    return json.dumps({"rules": RULES, "tasks": [task(t) for t in tables], "overall": [matrix(m) for m in matrices],
                       "sweeps": [sweep(s) for s in sweeps], "best_of": best_of,
                       "extrapolation": [extrapolation_json(e) for e in extrapolations]}, indent=2, default=str)
