"""``attnbench report``: leaderboards from the results store (terminal, Markdown, CSV, JSON)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from attnbench.cli import console, err_console
from attnbench.cli.output import add_format_flag
from attnbench.errors import DataError, StoreError
from attnbench.store import DEFAULT_STORE, Store

#: Every file ``report`` writes, as its help and the README name them (checked by tests/test_terminal_output.py).
OUTPUT_FILES: tuple[tuple[str, str], ...] = (
    ("<task>-<profile>-<config>-<device>.md", "each task table, whole (every column, every note)"),
    ("<task>-<profile>-<config>-<device>.csv", "the same table as CSV"),
    ("<task>-<profile>-vs-<key>-<device>.md", "each sweep (run --sweep KEY=…)"),
    ("<task>-<profile>-extrapolation-<device>.md", "each probe's metric at 1×, 2×, 4× its training length"),
    ("<task>-<profile>-extrapolation-<device>.csv", "the same, one line per variant and length, raw numbers"),
    ("overall.md", "every variants × tasks matrix with its Friedman test and exclusions"),
    ("overall-<profile>-<environment>.csv", "each matrix"),
    ("leaderboard.json", "everything, with raw numbers"),
)

EXAMPLES = """\
examples:
  attnbench report                                   tables in the terminal + files in attnbench-results/report
  attnbench report --task listops --profile quick
  attnbench report --wide                            every column in the terminal (the files always have them all)
  attnbench report --columns rank,variant,score,delta_sdpa,params,note
  attnbench report --store runs/gpu.sqlite --out site/leaderboard
  attnbench report --html site/                      one self-contained page with plots
  attnbench report --html site/ --bench benchmarks/variant-cost-cpu.json    + scaling curves vs L
  attnbench report --html site/ --bench benchmarks/decode-cpu.json          + decoding cost vs context
  attnbench report --format json | jq '.tasks[0]'    machine-readable, nothing else printed
  attnbench report --best-of lr                      after run --sweep lr=…: each variant at its rate picked on validation

files written to --out DIR (<config>: the task setup's hash, 8 characters; <device>: the environment's device;
<environment>: profile, device, torch and Python, cut to 60 characters):
""" + "\n".join(f"  {name:<45}{what}" for name, what in OUTPUT_FILES) + """
  report.html                                  with --html DIR: in DIR

exit status: 0 tables shown (and files written), 1 the store holds no rows (for --task/--profile), 2 usage or store error.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report", help="print and write leaderboards from the results store",
        description="Rank variants per task (mean ± 95 % interval over seeds, paired difference to sdpa, cost side "
        "by side) and across tasks (Friedman average rank, normalized score). Results from different environments "
        "or task setups get separate tables. The store is opened read-only.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", default=str(DEFAULT_STORE), metavar="FILE", help=f"results store (default: {DEFAULT_STORE})")
    p.add_argument("--task", default=None, help="only this task")
    p.add_argument("--profile", default=None, help="only this profile")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write the files listed below here (default: a 'report' folder beside the store; when that "
                   "folder cannot be created, the tables are only shown)")
    p.add_argument("--compare-environments", action="store_true",
                   help="rank rows from different devices / torch versions in one table per task, with the "
                   "environment as a column (by default environments are never mixed)")
    p.add_argument("--html", default=None, metavar="DIR",
                   help="also write DIR/report.html: one self-contained page with tables and plots")
    p.add_argument("--best-of", default=None, metavar="KEY",
                   help="over rows that differ only by a swept KEY (lr: run --sweep lr=1e-3,3e-3,1e-2), rank each "
                   "variant at the value picked per seed on its validation score (the primary metric's val_ twin) and "
                   "show its test score, the values tried and the value picked; a task without a validation metric "
                   "is refused in one line and shown per value")
    p.add_argument("--bench", action="append", default=[], metavar="PATH.json",
                   help="with --html: add the scaling curves (time and memory vs L, log-log, fitted slopes) "
                   "of the json `attnbench bench --out` wrote, or the decoding cost vs context of the json "
                   "`attnbench bench --decode --out` wrote (repeatable)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--columns", default=None, metavar="A,B,…",
                       help="terminal columns of the task tables (default: " + ",".join(NARROW) + "); names are "
                       "the headers of --wide in lower case with _ for spaces (score = the primary metric, "
                       "flags = status, Pareto ★ and fairness)")
    shown.add_argument("--wide", action="store_true", help="every column in the terminal, as in the files")
    add_format_flag(p)
    return p


#: The default terminal columns (kept here so that ``--help`` needs no leaderboard import); a column a
#: table lacks is skipped (steps reached: only equal-time tables have it).
NARROW = ("rank", "variant", "score", "seeds", "steps_reached", "train_×sdpa", "memory_×sdpa", "flags")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _rich(title: str, header: list[str], body: list[list[str]], notes: list[str] = ()):
    """A heading line, the table, then notes as whole lines (rich wraps them at words on a terminal)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    # The title is a line of its own: as the table's title rich would wrap it to a narrow table's width.
    table = Table()
    for h in header:
        table.add_column(h, overflow="fold")
    for cells in body:
        table.add_row(*map(Text, cells))  # Text: a plugin's name is never read as rich markup
    return Group(Text(title), table, *(Text(n) for n in notes))


def _columns(args: argparse.Namespace) -> list[str] | None:
    """The terminal's column selection: None for every column."""
    if args.wide:
        return None
    if args.columns is None:  # compared environments: which environment a line is from is part of its name
        picked = [f"{args.best_of}_picked"] if args.best_of else []  # a best-of table shows its picks by default
        return list(NARROW[:2]) + ["environment"] * args.compare_environments + list(NARROW[2:-1]) + picked + ["flags"]
    wanted = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not wanted:
        raise DataError(f"--columns {args.columns!r} names no column; e.g. --columns {','.join(NARROW)}, or --wide")
    return wanted


def _check_columns(wanted: list[str] | None, headers: list[list[str]]) -> None:
    from attnbench.leaderboard.formats import column_key

    if wanted is None:
        return
    known = {"score", "flags"} | {column_key(h) for header in headers for h in header}
    known |= {k.replace("×", "x") for k in known}
    unknown = [w for w in wanted if w.lower().replace(" ", "_") not in known]
    if unknown:
        names = sorted({column_key(h) for header in headers for h in header} | {"score", "flags"})
        raise DataError(f"--columns: unknown column {unknown[0]!r}; these tables have: {', '.join(names)}")


def run(args: argparse.Namespace) -> int:
    from attnbench import plugins
    from attnbench.leaderboard import overall_matrix, task_tables
    from attnbench.leaderboard.extrapolation import extrapolation_long_rows, extrapolation_rows, extrapolations, of_table
    from attnbench.leaderboard.formats import (
        csv_text,
        json_text,
        markdown,
        matrix_notes,
        matrix_rows,
        select_columns,
        task_rows,
    )
    from attnbench.leaderboard.scaling import load_bench
    from attnbench.leaderboard.sweeps import sweep_rows, sweeps

    path = Path(args.store)
    if not path.exists():
        raise StoreError(f"no results store at {path}; run `attnbench run` first, or pass --store FILE")
    if args.bench and not args.html:
        raise DataError(f"--bench {args.bench[0]} adds a section to the HTML report: pass --html DIR as well")
    wanted = _columns(args)
    bench = [(source, load_bench(source)) for source in args.bench]  # a bad file stops us before any output
    where = {k: v for k, v in (("task", args.task), ("profile", args.profile)) if v}
    with Store(path, readonly=True) as store:
        rows = store.rows(**where)
    if not rows:
        err_console.print(f"no results in {path}" + (f" for {where}" if where else ""), highlight=False)
        return 1
    loaded = plugins.load()
    metrics = {t.name: t.metric for t in loaded.tasks}
    refused: list[str] = []
    if args.best_of:
        tables, refused = _best_of_tables(rows, metrics, args)
    else:
        tables = task_tables(rows, metrics, compare_environments=args.compare_environments)
    matrices = overall_matrix(tables)
    found = sweeps(rows, metrics)
    lengths = extrapolations(rows, metrics)
    best = None if not args.best_of else {"key": args.best_of, "refused": refused}
    if args.format == "json":
        print(json_text(tables, matrices, found, best_of=best, extrapolations=lengths))
        return 0
    for line in refused:  # a refusal is told on every surface: here, overall.md, the JSON and the HTML report
        err_console.print(line, highlight=False, soft_wrap=True)
    if args.format == "csv":
        for t in tables:
            header, body = task_rows(t)
            print(csv_text(["task", "profile", "environment", "config", *header],
                           [[t.task, t.profile, t.environment, t.config_hash, *b] for b in body]), end="")
        return 0
    full = [task_rows(t) for t in tables]
    if args.columns is not None:  # the default set may name a column a table lacks (no memory figure): skipped
        _check_columns(wanted, [header for header, _ in full])
    out = Path(args.out) if args.out else path.parent / "report"
    try:
        _writable_folder(out, "--out")
    except DataError:
        if args.out:
            raise
        out = None  # the store's folder is read-only: the tables are still shown, the files are not written
    if args.html:  # before any file is written: a bad --html must not leave half a report behind
        _writable_folder(Path(args.html), "--html")
    files: dict[str, str] = {}  # name in the --out folder → text, written once every table is built
    shown_lengths: set[int] = set()
    by_device: dict[str, tuple[list[str], list[str], list[list[str]]]] = {}  # file stem → md sections, csv

    def show_extrapolation(ex) -> None:  # after its task's table, or (no such table on screen) after them all
        header, body, notes = extrapolation_rows(ex)
        console.print(_rich(ex.title, header, body, notes))
        shown_lengths.add(id(ex))
        # one pair of files per task, profile and device: each environment and setup is a section, and its lines
        stem = _slug(f"{ex.task}-{ex.profile}-extrapolation-{ex.environment.split('|')[0]}")
        long_header, long_body = extrapolation_long_rows(ex)
        sections, _, lines = by_device.setdefault(stem, ([], long_header, []))
        sections.append(f"## {ex.title}\n\n" + markdown(header, body) + "".join(f"\n{n}\n" for n in notes))
        lines += long_body

    # A file is named by its device; where two environments (torch or Python versions) share a device, by the whole
    # environment, so that neither's tables overwrite the other's.
    devices: dict[str, set[str]] = {}
    for item in (*tables, *found):
        devices.setdefault(item.environment.split("|")[0], set()).add(item.environment)

    def place(environment: str) -> str:
        device = environment.split("|")[0]
        return environment if len(devices.get(device, ())) > 1 else device

    for t, (header, body) in zip(tables, full, strict=True):
        shown_header, shown_body = (header, body) if wanted is None else select_columns(header, body, wanted)
        notes = [] if wanted is None or "note" in wanted else [f"  {e.variant}: {e.note}" for e in t.entries if e.note]
        console.print(_rich(t.title, shown_header, shown_body, notes))
        stem = _slug(f"{t.task}-{t.profile}-{t.config_hash[:8]}-{place(t.environment)}")
        files[f"{stem}.md"] = f"## {t.title}\n\n" + markdown(header, body)
        files[f"{stem}.csv"] = csv_text(header, body)
        for ex in of_table(lengths, t):
            show_extrapolation(ex)
    for ex in lengths:
        if id(ex) not in shown_lengths:
            show_extrapolation(ex)
    for stem, (sections, long_header, lines) in by_device.items():
        files[f"{stem}.md"] = "\n".join(sections)
        files[f"{stem}.csv"] = csv_text(long_header, lines)
    for s in found:
        header, body = sweep_rows(s)
        title = f"{s.task} versus {s.key} · {s.profile} · {s.environment} ({s.metric} · train s · step peak MB)"
        console.print(_rich(title, header, body))
        files[_slug(f"{s.task}-{s.profile}-vs-{s.key}-{place(s.environment)}") + ".md"] = \
            f"## {title}\n\n" + markdown(header, body)
    md = []
    for m in matrices:
        header, body = matrix_rows(m)
        notes = matrix_notes(m)
        if wanted is None:
            console.print(_rich(f"overall · {m.environment}", header, body, notes))
        else:  # the per-task cells are in the task tables above, and in overall.md / --wide
            keep = [i for i, h in enumerate(header) if h in ("group", "variant", "normalized score ↑", "mean rank ↓",
                                                               "tasks", "fairness flags")]
            console.print(_rich(f"overall · {m.environment} (per-task cells: --wide, or overall.md)",
                                [header[i] for i in keep], [[r[i] for i in keep] for r in body], notes))
        md.append(f"## overall · {m.environment}\n\n" + markdown(header, body)
                  + "".join(f"\n- {n}" for n in notes) + ("\n" if notes else ""))
        files[f"overall-{_slug(m.environment)[:60]}.csv"] = csv_text(header, body)
    files["overall.md"] = "".join(f"- {line}\n" for line in refused) + ("\n" if refused else "") + "\n".join(md)
    files["leaderboard.json"] = json_text(tables, matrices, found, best_of=best, extrapolations=lengths)
    if out is None:
        err_console.print(f"note: no files written: cannot create {path.parent / 'report'} beside the store; "
                          "pass --out DIR to write them", highlight=False, soft_wrap=True)
    else:
        for name, text in files.items():
            (out / name).write_text(text)
        console.print(f"wrote {len(files)} files to {out}/", highlight=False)
    if args.html:
        from attnbench.leaderboard.html import render

        page = Path(args.html) / "report.html"
        page.write_text(render(tables, matrices, found, rows, str(path), bench=bench, notes=refused,
                               extrapolations=lengths))
        console.print(f"wrote {page}", highlight=False)
    return 0


def _best_of_tables(rows: list, metrics: dict, args: argparse.Namespace) -> tuple[list, list[str]]:
    """The task tables with every grid over ``--best-of KEY`` replaced by its best-of table, and the refusals."""
    from attnbench.leaderboard import task_tables
    from attnbench.leaderboard.best_of import best_of

    key = args.best_of
    if args.compare_environments:
        raise DataError(f"--best-of {key} picks within one environment; drop --compare-environments "
                        "(or --best-of) and run the report twice")
    picked = best_of(rows, metrics, key)
    if not picked.tables and not picked.refused:
        raise DataError(f"--best-of {key}: no rows of one task setup differ by {key!r} "
                        f"(for {args.task or 'any task'}); run `attnbench run --sweep {key}=1e-3,3e-3,1e-2` first, "
                        "or drop --best-of")
    tables = task_tables(picked.rest, metrics) + picked.tables
    tables.sort(key=lambda t: (t.task, t.profile, t.environment, t.config_hash))
    return tables, picked.refused


def _writable_folder(folder: Path, option: str) -> None:
    """Create ``folder`` or say in one line why it cannot be (a file in the way, no permission)."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{option} {folder} is a file; pass a folder (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{option} {folder}: cannot create that folder ({exc.strerror or exc}); "
                        "pass a writable folder") from None
