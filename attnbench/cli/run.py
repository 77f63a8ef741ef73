"""``attnbench run``: train and evaluate every selected (task × variant × seed) pairing."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from attnbench.cli import console, warn_plugin_errors
from attnbench.runner.device import DEVICE_CHOICES, resolve_device
from attnbench.runner.matrix import plan, run_matrix, split_resumed
from attnbench.runner.overrides import parse_assignment, parse_sweep, parse_variant_options
from attnbench.runner.pairing import Pairing
from attnbench.runner.tensorboard import TensorBoardLog
from attnbench.specs import PROFILES, ResultRow
from attnbench.store import DEFAULT_STORE, Store

STATUS_STYLE = {"ok": "green", "failed": "red", "timeout": "yellow", "unsupported": "dim", "diverged": "magenta"}

EXAMPLES = """\
examples:
  attnbench run --profile quick                      every task × every variant
  attnbench run --tasks listops --variants 'sdpa*,linear' --profile smoke
  attnbench run --profile quick --resume             only what the store lacks
  attnbench run --tasks listops --data-dir ~/lra/listops --profile full --device cuda
  attnbench run --tasks lra-text --set length=1024 --set steps=500    change the task's settings
  attnbench run --tasks lra-text --variants sdpa,local --variant-option local.window=128
  attnbench run --tasks lra-text --variants sdpa,linear,local --sweep length=256,512,1024
"""


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got {value!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run", help="run the (task × variant × seed) matrix and store the results",
        description="Train and evaluate each selected task with each selected attention variant, one worker "
        "process per pairing; every finished pairing is written to the store at once.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tasks", type=_csv, default=None, metavar="NAMES",
                   help="comma-separated task names or globs (default: all; see `attnbench list tasks`)")
    p.add_argument("--variants", type=_csv, default=None, metavar="NAMES",
                   help="comma-separated variant names or globs (default: all; see `attnbench list attention`)")
    p.add_argument("--profile", choices=PROFILES, default="quick", help="budget per pairing (default: quick)")
    p.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES),
                   help="where to run (default: auto = cuda, else mps, else cpu); a missing device is an error")
    p.add_argument("--seeds", type=_seeds, default=[0], metavar="N,N", help="seeds to run each pairing with (default: 0)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="pairings to run at once (default: 1)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where pairings run: local worker processes (default), or Ray tasks (pip install "
                   "'attnbench[ray]'); results are written here, by this process, either way")
    p.add_argument("--address", default=None, metavar="ADDRESS",
                   help="with --executor ray: the cluster to join (e.g. auto, or ray://host:10001); "
                   "default: start a local Ray instance")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop a pairing after this long and record it as 'timeout' (default: none)")
    p.add_argument("--max-memory", type=float, default=None, metavar="MB",
                   help="cap each CPU worker's memory: a pairing that needs more becomes a 'failed: out of memory' "
                   "row and the matrix goes on (default: no cap)")
    p.add_argument("--resume", action="store_true", help="skip pairings the store already holds as finished")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the task's data in its field's standard format (default: embedded data)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the task's profile (repeatable; `attnbench list --settings PROFILE` "
                   "shows them); "
                   "rows with overrides get their own configuration hash")
    p.add_argument("--variant-option", dest="variant_options", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="set an option the variant declares, e.g. local.window=256 (repeatable)")
    p.add_argument("--sweep", default=None, metavar="KEY=V1,V2,...",
                   help="run the matrix once per value of a profile key, e.g. length=256,512,1024")
    p.add_argument("--store", default=str(DEFAULT_STORE), metavar="FILE",
                   help=f"SQLite results store (default: {DEFAULT_STORE})")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write each pairing's training loss as TensorBoard events under "
                   "DIR/<task>/<variant>/<profile>-seed<N>-<hash> (pip install 'attnbench[tensorboard]')")
    return p


#: One character a cell in the live matrix: pending, running, then the row's status.
CELL = {"pending": "[dim]·[/]", "running": "[cyan]▶[/]", "ok": "[green]✓[/]", "failed": "[red]✗[/]",
        "timeout": "[yellow]⏱[/]", "unsupported": "[dim]–[/]", "diverged": "[magenta]~[/]"}


MATRIX_LEGEND = "matrix: ✓ ok  ✗ failed  ⏱ timeout  – unsupported  ~ diverged  ▶ running  · to do"


class MatrixProgress(Progress):
    """rich Progress with the (task × variant) matrix drawn above the bars while it fills."""

    matrix: RenderableType | None = None

    def get_renderables(self):
        if self.matrix is not None:
            yield self.matrix
        yield from super().get_renderables()


class RichDisplay:
    """The live matrix (one row per task, one cell per variant), an overall bar with an ETA,
    and one bar per running pairing."""

    def __init__(self, progress: Progress, total: int, pairings: list[Pairing] | None = None) -> None:
        self._progress = progress
        self._overall = progress.add_task("pairings", total=total, info="")
        self._bars: dict[Pairing, int] = {}
        self._tasks = list(dict.fromkeys(p.task for p in pairings or []))
        self._variants = list(dict.fromkeys(p.variant for p in pairings or []))
        self._cells: dict[tuple[str, str], list[str]] = {}
        for p in pairings or []:
            self._cells.setdefault((p.task, p.variant), []).append("pending")
        self._draw()

    def _draw(self) -> None:
        if not isinstance(self._progress, MatrixProgress) or not self._cells:
            return
        table = Table(box=None, padding=(0, 1))
        table.add_column("task")
        for index in range(len(self._variants)):
            table.add_column(str(index + 1), justify="center")
        for task in self._tasks:
            table.add_row(task, *(" ".join(CELL[s] for s in self._cells.get((task, v), [])) for v in self._variants))
        key = "  ".join(f"{i + 1}={v}" for i, v in enumerate(self._variants))
        # Legend and key are lines of their own: as title and caption rich would wrap them to the table's width.
        self._progress.matrix = Group(Text(MATRIX_LEGEND), table, Text(key))

    def _mark(self, pairing: Pairing, old: str, new: str) -> None:
        states = self._cells.get((pairing.task, pairing.variant))
        if states and old in states:
            states[states.index(old)] = new
            self._draw()

    @staticmethod
    def _label(p: Pairing) -> str:
        changed = "".join(f" {k}={v}" for k, v in (*p.overrides, *p.variant_options))
        return f"{p.task} × {p.variant} (seed {p.seed}{changed})"

    def started(self, pairing: Pairing) -> None:
        self._bars[pairing] = self._progress.add_task(self._label(pairing), total=None, info="starting")
        self._mark(pairing, "pending", "running")

    def progress(self, pairing: Pairing, done: int, total: int, description: str, info: dict[str, float]) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in info.items())
        self._progress.update(self._bars[pairing], completed=done, total=total or None,
                              info=f"{description} {text}".strip())

    def finished(self, pairing: Pairing, row: ResultRow) -> None:
        self._mark(pairing, "running", row.status)
        self._progress.remove_task(self._bars.pop(pairing))
        self._progress.advance(self._overall)
        style = STATUS_STYLE.get(row.status, "")
        self._progress.console.print(
            f"[{style}]{row.status:>11}[/] {self._label(pairing)} {_brief(row)}", highlight=False
        )


def _brief(row: ResultRow) -> str:
    if row.status == "ok":
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(row.metrics.items())[:3])
        return f"{shown} [{row.duration_s:.1f} s]"
    return row.error.strip().splitlines()[-1][:160] if row.error else ""


def run(args: argparse.Namespace) -> int:
    warn_plugin_errors()
    board = TensorBoardLog(args.tensorboard) if args.tensorboard else None  # a missing package stops us here
    device = resolve_device(args.device)
    if args.jobs < 1:
        raise SystemExit("error: --jobs must be at least 1")
    overrides = dict(parse_assignment(item, "--set") for item in args.overrides)
    sweep = parse_sweep(args.sweep) if args.sweep else None
    pairings = plan(tasks=args.tasks, variants=args.variants, profile=args.profile, seeds=args.seeds,
                    data_dir=args.data_dir, overrides=overrides, variant_options=parse_variant_options(args.variant_options),
                    sweep=sweep)
    with Store(args.store) as store:
        store.check_writable()  # locked, read-only or full: say so now, not after the first pairing
        todo = pairings
        if args.resume:
            split = split_resumed(pairings, store, device)
            todo = split.todo
            console.print(f"resume: {len(split.skipped)} of {len(pairings)} pairings already in {args.store}")
        where = "local workers"
        if args.executor == "ray":
            where = f"Ray at {args.address}" if args.address else "Ray (local instance)"
        console.print(f"running {len(todo)} pairing(s) on {device} at profile [bold]{args.profile}[/], "
                      f"{args.jobs} at a time on {where} → {args.store}")
        start = time.perf_counter()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        with MatrixProgress(*columns, console=console, transient=False) as progress:
            rows = run_matrix(todo, store=store, device=device, display=RichDisplay(progress, len(todo), todo),
                              jobs=args.jobs, timeout=args.timeout, executor=args.executor, address=args.address,
                              max_memory_mb=args.max_memory, on_row=_tensorboard_writer(board, progress.console))
    console.print(_summary(rows, time.perf_counter() - start))
    console.print(f"see the leaderboard with: attnbench report --store {args.store}")
    return 0


def _tensorboard_writer(board: TensorBoardLog | None, out: Console) -> Callable[[ResultRow], None] | None:
    """The on_row hook for ``--tensorboard``: a curve that cannot be written is a warning, not a stop."""
    if board is None:
        return None

    def write(row: ResultRow) -> None:
        try:
            board.write(row)
        except (OSError, ValueError) as exc:
            out.print(f"[yellow]warning:[/] no TensorBoard curve for {row.task} × {row.variant}: {exc}", highlight=False)

    return write


def _summary(rows: list[ResultRow], seconds: float) -> Group:
    table = Table()
    for col in ("status", "count"):
        table.add_column(col)
    for status in STATUS_STYLE:
        n = sum(r.status == status for r in rows)
        if n:
            table.add_row(f"[{STATUS_STYLE[status]}]{status}[/]", str(n))
    return Group(Text(f"{len(rows)} pairing(s) in {seconds:.1f} s"), table)
