"""``attnbench report``: leaderboards from the results store (terminal, Markdown, CSV, JSON)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from attnbench import plugins
from attnbench.cli import console
from attnbench.cli.output import add_format_flag
from attnbench.errors import DataError, StoreError
from attnbench.leaderboard import overall_matrix, task_tables
from attnbench.leaderboard.formats import csv_text, json_text, markdown, matrix_rows, task_rows
from attnbench.leaderboard.html import render
from attnbench.leaderboard.scaling import load_sweep
from attnbench.leaderboard.sweeps import sweep_rows, sweeps
from attnbench.store import DEFAULT_STORE, Store

EXAMPLES = """\
examples:
  attnbench report                                   tables in the terminal + files in attnbench-results/report
  attnbench report --task listops --profile quick
  attnbench report --store runs/gpu.sqlite --out site/leaderboard
  attnbench report --html site/                      one self-contained page with plots
  attnbench report --html site/ --bench benchmarks/variant-cost-cpu.json    + scaling curves vs L
  attnbench report --format json | jq '.tasks[0]'    machine-readable, nothing else printed
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report", help="print and write leaderboards from the results store",
        description="Rank variants per task (quality and cost side by side) and across tasks (normalized score, "
        "mean rank). Results from different environments or task setups get separate tables.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", default=str(DEFAULT_STORE), metavar="FILE", help=f"results store (default: {DEFAULT_STORE})")
    p.add_argument("--task", default=None, help="only this task")
    p.add_argument("--profile", default=None, help="only this profile")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write <task>.md/.csv, overall.md/.csv and leaderboard.json here "
                   "(default: a 'report' folder beside the store)")
    p.add_argument("--compare-environments", action="store_true",
                   help="rank rows from different devices / torch versions in one table per task, with the "
                   "environment as a column (by default environments are never mixed)")
    p.add_argument("--html", default=None, metavar="DIR",
                   help="also write DIR/report.html: one self-contained page with tables and plots")
    p.add_argument("--bench", action="append", default=[], metavar="PATH.json",
                   help="with --html: add the scaling curves (time and memory vs L, log-log, fitted slopes) "
                   "of the json `attnbench bench --out` wrote (repeatable)")
    add_format_flag(p)
    return p


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _rich(title: str, header: list[str], body: list[list[str]]) -> Group:
    # The title is a line of its own: as the table's title rich would wrap it to a narrow table's width.
    table = Table()
    for h in header:
        table.add_column(h, overflow="fold")
    for cells in body:
        table.add_row(*cells)
    return Group(Text(title), table)


def run(args: argparse.Namespace) -> int:
    path = Path(args.store)
    if not path.exists():
        raise StoreError(f"no results store at {path}; run `attnbench run` first, or pass --store FILE")
    if args.bench and not args.html:
        raise DataError(f"--bench {args.bench[0]} adds a section to the HTML report: pass --html DIR as well")
    bench = [(source, load_sweep(source)) for source in args.bench]  # a bad file stops us before any output
    where = {k: v for k, v in (("task", args.task), ("profile", args.profile)) if v}
    with Store(path) as store:
        rows = store.rows(**where)
    if not rows:
        console.print(f"no results in {path}" + (f" for {where}" if where else ""))
        return 1
    loaded = plugins.load()
    metrics = {t.name: t.metric for t in loaded.tasks}
    tables = task_tables(rows, metrics, compare_environments=args.compare_environments)
    matrices = overall_matrix(tables)
    found = sweeps(rows, metrics)
    if args.format == "json":
        print(json_text(tables, matrices, found))
        return 0
    if args.format == "csv":
        for t in tables:
            header, body = task_rows(t)
            print(csv_text(["task", "profile", "environment", "config", *header],
                           [[t.task, t.profile, t.environment, t.config_hash, *b] for b in body]), end="")
        return 0
    out = Path(args.out) if args.out else path.parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in tables:
        header, body = task_rows(t)
        console.print(_rich(t.title, header, body))
        stem = out / _slug(f"{t.task}-{t.profile}-{t.config_hash[:8]}-{t.environment.split('|')[0]}")
        stem.with_suffix(".md").write_text(f"## {t.title}\n\n" + markdown(header, body))
        stem.with_suffix(".csv").write_text(csv_text(header, body))
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    for s in found:
        header, body = sweep_rows(s)
        title = f"{s.task} versus {s.key} · {s.profile} · {s.environment} ({s.metric} · train s · step peak MB)"
        console.print(_rich(title, header, body))
        stem = out / _slug(f"{s.task}-{s.profile}-vs-{s.key}-{s.environment.split('|')[0]}")
        stem.with_suffix(".md").write_text(f"## {title}\n\n" + markdown(header, body))
        written.append(stem.with_suffix(".md"))
    md = []
    for m in matrices:
        header, body = matrix_rows(m)
        console.print(_rich(f"overall · {m.environment}", header, body))
        md.append(f"## overall · {m.environment}\n\n" + markdown(header, body))
        (out / f"overall-{_slug(m.environment)[:60]}.csv").write_text(csv_text(header, body))
    (out / "overall.md").write_text("\n".join(md))
    (out / "leaderboard.json").write_text(json_text(tables, matrices, found))
    console.print(f"wrote {len(written) + 2 + len(matrices)} files to {out}/")
    if args.html:
        page = Path(args.html) / "report.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render(tables, matrices, found, rows, str(path), bench=bench))
        console.print(f"wrote {page}")
    return 0
