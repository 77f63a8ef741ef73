"""The HTML report: one self-contained page (images embedded as data URIs, no network).

It holds the rules the tables follow, the overall matrix per environment with its
Friedman test, critical-difference diagram and the tasks left out of the normalized score,
and per task its table, quality vs cost with the Pareto front, training-loss curves, and the attention maps
tasks saved for a fixed example, and for a probe task its metric versus the test length (length
extrapolation) as a table with its footnotes and a plot; then every sweep found in the store, as a
table and a plot; then, for each ``attnbench bench`` json passed with ``--bench``, the scaling curves with their
fitted log-log slopes (:mod:`attnbench.leaderboard.scaling`).
"""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from attnbench import __version__
from attnbench.bench.sweep import SweepResult
from attnbench.leaderboard import plots, scaling
from attnbench.leaderboard.extrapolation import Extrapolation, extrapolation_rows, of_table
from attnbench.leaderboard.formats import matrix_notes, matrix_rows, task_rows
from attnbench.leaderboard.sweeps import Sweep, sweep_rows
from attnbench.leaderboard.tables import RULES as TABLE_RULES
from attnbench.leaderboard.tables import Matrix, TaskTable, setup_hash
from attnbench.specs import ResultRow

RULES = TABLE_RULES + """ Memory: step peak MB is the peak tensor memory of one training step (allocator on
CUDA, profiler memory events on CPU); peak RSS includes the interpreter. Status cells are shown as they were
recorded."""

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4}td:nth-child(2),th:nth-child(2){text-align:left}.rules{font-size:12px;color:#555;max-width:1000px}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs img{max-width:640px;border:1px solid #eee}
.maps img{max-width:300px}.wide img{max-width:1000px}.status{color:#a33}.env{font-size:12px;color:#666}
.scaling img{max-width:1400px}.cd img{max-width:800px}caption{text-align:left;font-weight:bold;padding:4px 0}
"""


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _attention_maps(rows: Iterable[ResultRow]) -> str:
    shown: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r.seed):
        path = r.artifacts.get("attention_map")
        if r.variant not in shown and path and Path(path).is_file():
            caption = html.escape(r.variant)
            shown[r.variant] = f"<figure>{_img(Path(path).read_bytes(), r.variant)}<figcaption>{caption}</figcaption></figure>"
    if not shown:
        return ""
    return "<h3>attention maps (fixed example)</h3><div class='figs maps'>" + "".join(shown[v] for v in sorted(shown)) + "</div>"


def _extrapolation_section(ex: Extrapolation) -> str:
    """A probe's metric versus test length: heading, table, footnotes (why a length was not evaluated), plot."""
    header, body, footnotes = extrapolation_rows(ex)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in footnotes)
    return (f"<h2>{html.escape(ex.task)}: {html.escape(ex.metric)} versus test length</h2>"
            f"<p class='env'>{html.escape(ex.title)}</p>" + _table(header, body)
            + (f"<ul class='rules'>{notes}</ul>" if notes else "")
            + "<div class='figs wide'>" + _img(plots.extrapolation_plot(ex), f"{ex.task} {ex.metric} vs test length")
            + "</div>")


def render(tables: list[TaskTable], matrices: list[Matrix], sweeps: list[Sweep], rows: list[ResultRow],
           store: str, bench: Sequence[tuple[str, SweepResult]] = (), notes: Sequence[str] = (),
           extrapolations: Sequence[Extrapolation] = ()) -> str:
    """The whole page as one HTML string; ``bench`` holds (source, sweep) pairs from ``attnbench bench`` jsons,
    ``notes`` lines shown under the rules (a refused ``--best-of`` grid), ``extrapolations`` the probes'
    metric versus test length."""
    by_table: Mapping[tuple, list[ResultRow]] = defaultdict(list)
    for r in rows:
        by_table[(r.task, r.profile, r.environment, setup_hash(r))].append(r)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>attnbench report</title><style>{STYLE}</style>"
             f"</head><body><h1>attnbench report</h1><p class='env'>store {html.escape(store)} · attnbench {__version__} · "
             f"{len(rows)} rows</p><p class='rules'>{html.escape(RULES)}</p>"]
    if notes:
        parts.append("<ul class='rules'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for m in matrices:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in matrix_notes(m))
        diagram = _img(plots.critical_difference(m.friedman), f"critical difference diagram, {m.environment}") \
            if m.friedman is not None else ""
        parts.append(f"<h2>overall · {html.escape(m.environment)}</h2>" + _table(*matrix_rows(m))
                     + (f"<ul class='rules'>{notes}</ul>" if notes else "")
                     + (f"<div class='figs cd'>{diagram}</div>" if diagram else ""))
    placed: set[int] = set()
    for t in tables:
        parts.append(f"<h2>{html.escape(t.task)}</h2><p class='env'>{html.escape(t.title)}</p>" + _table(*task_rows(t)))
        own = by_table[(t.task, t.profile, t.environment, t.config_hash)]
        figures = [_img(plots.quality_vs_cost(t), f"{t.task} quality vs training time"),
                   _img(plots.quality_vs_cost(t, "step_peak_mb", "step peak memory (MB)"), f"{t.task} quality vs memory"),
                   _img(plots.loss_curves(own), f"{t.task} training loss")]
        parts.append("<div class='figs'>" + "".join(figures) + "</div>" + _attention_maps(own))
        for ex in of_table(extrapolations, t):
            parts.append(_extrapolation_section(ex))
            placed.add(id(ex))
    for s in sweeps:
        parts.append(f"<h2>{html.escape(s.task)} versus {html.escape(s.key)}</h2>"
                     f"<p class='env'>{html.escape(s.profile)} · {html.escape(s.environment)} · cells: "
                     f"{html.escape(s.metric)} · train s · step peak MB</p>" + _table(*sweep_rows(s))
                     + "<div class='figs'>" + _img(plots.sweep_plot(s), f"{s.task} vs {s.key}") + "</div>")
    for ex in extrapolations:  # a task setup whose table is not on the page (environments compared): its own section
        if id(ex) not in placed:
            parts.append(_extrapolation_section(ex))
    for source, result in bench:
        if scaling.is_decode(result):
            parts.append(scaling.decode_section(result, source, _img(scaling.decode_plot_png(result),
                                                                     f"decoding cost vs context, {Path(source).name}")))
        else:
            parts.append(scaling.section(result, source, _img(scaling.plot_png(result),
                                                             f"time and peak memory vs L, {Path(source).name}")))
    parts.append("</body></html>")
    return "\n".join(parts)
