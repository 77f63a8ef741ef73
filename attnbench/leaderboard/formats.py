"""Writing leaderboard tables as Markdown, CSV and JSON (the same content in each)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

from attnbench.leaderboard.sweeps import Sweep
from attnbench.leaderboard.tables import Matrix, TaskTable


def format_value(value: float | str | None, key: str = "") -> str:
    """A compact, readable cell: integers with separators, big counts in G/M, else 4 digits."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if key == "params" or key.startswith("flops"):
        for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(value) >= size:
                return f"{value / size:.3g}{unit}"
        return f"{value:.0f}"
    return f"{value:.4g}"


def task_rows(table: TaskTable) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of a task table, shared by every format."""
    metrics = table.metric_names()
    costs = table.cost_columns()
    ratios = table.ratio_columns()
    arrow = "↑" if table.higher_is_better else "↓"
    compared = any(e.environment for e in table.entries)
    header = ["rank", "variant", *(["environment"] if compared else []), "status", "seeds",
              *[f"{m} {arrow}" if m == table.metric else m for m in metrics],
              *[h for _, h in costs], *[h for _, h in ratios], "pareto", "fairness", "note"]
    body = []
    ranks = table.ranks()
    front = table.pareto()
    for e in table.entries:
        cells = [str(ranks.get(e.variant, "—")), e.variant, *([e.environment] if compared else []), e.status, str(e.seeds)]
        for m in metrics:
            v = e.metrics.get(m)
            std = e.metric_std.get(m, 0.0)
            cells.append("" if v is None else format_value(v) + (f" ± {std:.2g}" if e.seeds > 1 else ""))
        cells += [format_value(e.cost.get(k), k) for k, _ in costs]
        own = table.ratios(e)
        cells += [f"{own[k]:.2f}×" if k in own else "" for k, _ in ratios]
        cells += ["★" if e.variant in front else "", table.fairness(e), e.note]
        body.append(cells)
    return header, body


def matrix_rows(matrix: Matrix) -> tuple[list[str], list[list[str]]]:
    """Header and body of the overall matrix, best normalized score first."""
    header = ["variant", *matrix.tasks, "normalized score ↑", "mean rank ↓", "tasks"]
    order = sorted(matrix.cells, key=lambda v: (-matrix.normalized.get(v, -1e9), v))
    total = len(matrix.tasks)
    body = [[v, *[format_value(matrix.cells[v].get(t, "")) for t in matrix.tasks],
             format_value(matrix.normalized.get(v)), format_value(matrix.mean_rank.get(v)),
             f"{matrix.covered.get(v, 0)}/{total}"] for v in order]
    return header, body


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


def json_text(tables: list[TaskTable], matrices: list[Matrix], sweeps: list[Sweep] = ()) -> str:
    """Every table, matrix and sweep with raw (unformatted) numbers, ranks and flags included."""
    def task(t: TaskTable) -> dict:
        out = asdict(t)
        ranks, front = t.ranks(), t.pareto()
        for entry in out["entries"]:
            e = next(x for x in t.entries if x.variant == entry["variant"])
            entry.update(rank=ranks.get(e.variant), pareto=e.variant in front, fairness=t.fairness(e),
                         cost_ratio_to_sdpa=t.ratios(e), normalized=t.normalized().get(e.variant))
        return out

    def sweep(s: Sweep) -> dict:
        out = asdict(s)
        out["points"] = {v: {str(k): p for k, p in by.items()} for v, by in s.points.items()}
        return out

    return json.dumps({"tasks": [task(t) for t in tables], "overall": [asdict(m) for m in matrices],
                       "sweeps": [sweep(s) for s in sweeps]}, indent=2, default=str)
