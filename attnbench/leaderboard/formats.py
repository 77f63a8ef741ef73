"""Writing leaderboard tables as Markdown, CSV and JSON (the same content in each)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

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
    arrow = "↑" if table.higher_is_better else "↓"
    header = ["rank", "variant", "status", "seeds", *[f"{m} {arrow}" if m == table.metric else m for m in metrics],
              *[h for _, h in costs], "note"]
    body = []
    ranks = table.ranks()
    for e in table.entries:
        cells = [str(ranks.get(e.variant, "—")), e.variant, e.status, str(e.seeds)]
        for m in metrics:
            v = e.metrics.get(m)
            std = e.metric_std.get(m, 0.0)
            cells.append("" if v is None else format_value(v) + (f" ± {std:.2g}" if e.seeds > 1 else ""))
        cells += [format_value(e.cost.get(k), k) for k, _ in costs]
        cells.append(e.note)
        body.append(cells)
    return header, body


def matrix_rows(matrix: Matrix) -> tuple[list[str], list[list[str]]]:
    """Header and body of the overall matrix, best normalized score first."""
    header = ["variant", *matrix.tasks, "normalized score ↑", "mean rank ↓"]
    order = sorted(matrix.cells, key=lambda v: (-matrix.normalized.get(v, -1.0), v))
    body = [[v, *[format_value(matrix.cells[v].get(t, "")) for t in matrix.tasks],
             format_value(matrix.normalized.get(v)), format_value(matrix.mean_rank.get(v))] for v in order]
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


def json_text(tables: list[TaskTable], matrices: list[Matrix]) -> str:
    """Every table and matrix with raw (unformatted) numbers."""
    return json.dumps({"tasks": [asdict(t) for t in tables], "overall": [asdict(m) for m in matrices]}, indent=2)
