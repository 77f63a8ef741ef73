"""``attnbench run``: train and evaluate every selected (task × variant × seed) pairing.

Every option is checked before anything is loaded or written (a usage error exits 2 with
one line naming the value); torch, the plugins and the runner are imported only then.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from attnbench.cli import console, err_console, warn_plugin_errors
from attnbench.cli.live import STATUS_STYLE, EtaColumn, MatrixProgress, RichDisplay
from attnbench.errors import UsageError
from attnbench.registry import name_problem
from attnbench.runner.device import DEVICE_CHOICES
from attnbench.specs import PROFILES, ResultRow
from attnbench.store import DEFAULT_STORE

if TYPE_CHECKING:
    from attnbench.runner.tensorboard import TensorBoardLog

#: Statuses that make ``run`` exit 1: the pairing did not give a result worth ranking.
FAILING = ("failed", "timeout", "diverged")

EXAMPLES = """\
examples:
  attnbench run --profile quick                      every task × every variant
  attnbench run --tasks listops --variants 'sdpa*,linear' --profile smoke
  attnbench run --profile quick --resume             only what the store lacks
  attnbench run --tasks listops --data-dir ~/lra/listops --profile full --device cuda
  attnbench run --tasks listops,lra-text --data-dir listops=~/lra/listops --data-dir lra-text=~/aclImdb
  attnbench run --tasks lra-text --set length=1024 --set steps=500    change the task's settings
  attnbench run --tasks listops,lra-text --set steps=200 --set lra-text.length=64    one task's setting
  attnbench run --tasks lra-text --variants sdpa,local --variant-option local.window=128
  attnbench run --tasks lra-text --variants sdpa,linear,local --sweep length=256,512,1024

exit status (as pytest's):
  0  every pairing run is ok or unsupported (or there was nothing to run)
  1  some pairing is failed, timeout or diverged; the summary names each one
  2  usage error: a bad option, name, path or setting, found before any pairing ran
     (or bad data, or a store that cannot be written, found while running)
  130  interrupted (Ctrl-C); finished pairings are kept in the store
  143  terminated (SIGTERM: kill, timeout, a batch scheduler); the same as Ctrl-C
"""


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run", help="run the (task × variant × seed) matrix and store the results",
        description="Train and evaluate each selected task with each selected attention variant, one worker "
        "process per pairing; every finished pairing is written to the store at once. Exits 0 when every "
        "pairing is ok or unsupported, 1 when any failed, timed out or diverged, 2 on a usage error, "
        "130 on Ctrl-C, 143 on SIGTERM.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tasks", default=None, metavar="NAMES",
                   help="comma-separated task names or globs (default: all; see `attnbench list tasks`)")
    p.add_argument("--variants", default=None, metavar="NAMES",
                   help="comma-separated variant names or globs (default: all; see `attnbench list attention`)")
    p.add_argument("--profile", choices=PROFILES, default="quick", help="budget per pairing (default: quick)")
    p.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES) + "|cuda:N",
                   help="where to run (default: auto = cuda, else mps, else cpu; cuda:N picks one GPU); "
                   "a missing device is an error")
    p.add_argument("--seeds", default="0", metavar="N,N",
                   help="seeds to run each pairing with, integers from 0 to 2**32-1 (default: 0)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="pairings to run at once, 1 or more (default: 1)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where pairings run: local worker processes (default), or Ray tasks (pip install "
                   "'attnbench[ray]'); results are written here, by this process, either way")
    p.add_argument("--address", default=None, metavar="ADDRESS",
                   help="with --executor ray: the cluster to join (e.g. auto, or ray://host:10001); "
                   "default: start a local Ray instance")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop a pairing after this many seconds (> 0) and record it as 'timeout' (default: no limit)")
    p.add_argument("--max-memory", type=float, default=None, metavar="MB",
                   help="cap each CPU worker's memory (> 0 MB): a pairing that needs more becomes a "
                   "'failed: out of memory' row and the matrix goes on (default: no cap)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="train each pairing for this many seconds of wall time on its device (> 0) instead of "
                   "the profile's steps; the steps reached are recorded, and such rows are keyed and ranked "
                   "apart (\"what learns most in N seconds on this hardware\")")
    p.add_argument("--resume", action="store_true",
                   help="skip pairings the store already holds as finished (ok, unsupported, diverged); "
                   "without it, pairings run again and replace their rows (said before the run starts)")
    p.add_argument("--data-dir", dest="data_dirs", action="append", default=[], metavar="[TASK=]DIR",
                   help="the task's data in its field's standard format (default: embedded data); DIR alone "
                   "serves every selected task, TASK=DIR one task (repeatable); part of the configuration hash")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[TASK.]KEY=VALUE",
                   help="override a key of the task's profile (repeatable; `attnbench list --settings PROFILE` "
                   "shows them): KEY=VALUE in every selected task that has KEY, TASK.KEY=VALUE in one task; "
                   "rows with overrides get their own configuration hash")
    p.add_argument("--variant-option", dest="variant_options", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="set an option the variant declares, e.g. local.window=256 (repeatable)")
    p.add_argument("--sweep", default=None, metavar="[TASK.]KEY=V1,V2,...",
                   help="run the matrix once per value of a profile key, e.g. length=256,512,1024 "
                   "(tasks without the key run once)")
    p.add_argument("--store", default=str(DEFAULT_STORE), metavar="FILE",
                   help=f"SQLite results store (default: {DEFAULT_STORE}); a missing folder is created, and said")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write each pairing's training loss as TensorBoard events under "
                   "DIR/<task>/<variant>/<profile>-seed<N>-<hash> (pip install 'attnbench[tensorboard]')")
    return p


# --- checking the options ------------------------------------------------------------------------

def _positive(flag: str, value: float | None, unit: str, absent: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} {value:g}: give a positive number of {unit}, or leave it out for {absent}")


def _selection(flag: str, raw: str | None, kind: str, listing: str) -> list[str] | None:
    names = _names(raw)
    if names is not None and not names:
        raise UsageError(f"{flag} {raw!r} names no {kind}; name some (see `{listing}`), or leave it out "
                         f"to run every {kind}")
    return names


def parse_seeds(raw: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; a usage error naming the value for anything else."""
    try:
        seeds = [int(v) for v in _names(raw) or []]
    except ValueError:
        raise UsageError(f"--seeds {raw!r}: give integers separated by commas, e.g. --seeds 0,1,2") from None
    if not seeds:
        raise UsageError(f"--seeds {raw!r} names no seed; give integers separated by commas, e.g. --seeds 0,1,2, "
                         "or leave it out for seed 0")
    return seeds


def parse_data_dirs(values: Sequence[str]) -> str | dict[str | None, str] | None:
    """``--data-dir`` values → one folder for every task, or ``{task: folder, None: every other}``.

    ``TASK=DIR`` is read as such when TASK is a valid task name and the whole value is not
    an existing path (a folder may have ``=`` in its name).
    """
    if not values:
        return None
    given: dict[str | None, str] = {}
    for value in values:
        task, sep, folder = value.partition("=")
        per_task = bool(sep) and name_problem(task) is None and not Path(value).expanduser().exists()
        name, path = (task, folder) if per_task else (None, value)
        if not path.strip():
            raise UsageError(f"--data-dir {value!r} names no folder; give --data-dir DIR or --data-dir TASK=DIR")
        if name in given:
            which = "a folder for every task" if name is None else f"a folder for task {name!r}"
            raise UsageError(f"--data-dir is given {which} twice ({given[name]} and {path}); keep one")
        given[name] = path
    return given[None] if list(given) == [None] else given


def check_options(args: argparse.Namespace) -> dict[str, Any]:
    """Every option value the run cannot use is a :class:`UsageError` here, before any work
    (nothing imported, loaded or written); returns the parsed selections."""
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: run at least one pairing at a time, pass --jobs 1 or more")
    _positive("--timeout", args.timeout, "seconds", "no limit")
    _positive("--max-memory", args.max_memory, "MB", "no cap")
    _positive("--budget", args.budget, "seconds", "training for the profile's steps")
    if args.max_memory is not None and args.executor == "ray":
        raise UsageError(f"--max-memory {args.max_memory:g} caps local CPU workers; with --executor ray use "
                         "Ray's own memory limits, or drop --max-memory")
    if args.address is not None and args.executor != "ray":
        raise UsageError(f"--address {args.address} names a Ray cluster; add --executor ray, or drop --address")
    return dict(
        tasks=_selection("--tasks", args.tasks, "task", "attnbench list tasks"),
        variants=_selection("--variants", args.variants, "variant", "attnbench list attention"),
        seeds=parse_seeds(args.seeds),
        data_dir=parse_data_dirs(args.data_dirs),
    )


# --- the command ---------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    selection = check_options(args)
    from attnbench.runner.device import resolve_device
    from attnbench.runner.matrix import plan, run_matrix, stored_statuses
    from attnbench.runner.overrides import parse_assignment, parse_sweep, parse_variant_options
    from attnbench.runner.tensorboard import TensorBoardLog
    from attnbench.store import FINISHED, Store

    board = TensorBoardLog(args.tensorboard) if args.tensorboard else None  # a missing package stops us here
    device = resolve_device(args.device)
    if args.max_memory is not None and device.type != "cpu":
        raise UsageError(f"--max-memory {args.max_memory:g} caps host memory of CPU workers; on {device} use the "
                         "device's own limits, or drop --max-memory")
    overrides = dict(parse_assignment(item, "--set") for item in args.overrides)
    sweep = parse_sweep(args.sweep) if args.sweep else None
    variant_options = parse_variant_options(args.variant_options)
    warn_plugin_errors()
    pairings = plan(profile=args.profile, overrides=overrides, variant_options=variant_options, sweep=sweep,
                    budget_s=args.budget, **selection)
    with Store(args.store) as store:
        if store.created_folder is not None:
            console.print(f"created folder {escape(str(store.created_folder))} for the store {escape(args.store)}",
                          highlight=False, soft_wrap=True)
        store.check_writable()  # locked, read-only or full: say so now, not after the first pairing
        stored = stored_statuses(pairings, store, device)
        todo, skipped = pairings, {}
        if args.resume:
            skipped = {p: s for p, s in stored.items() if s in FINISHED}
            todo = [p for p in pairings if p not in skipped]
            console.print(f"resume: {len(skipped)} of {len(pairings)} pairings already in {escape(args.store)}",
                          highlight=False, soft_wrap=True)
        elif stored:
            done = sum(s in FINISHED for s in stored.values())
            console.print(f"note: {len(stored)} of {len(pairings)} pairing(s) already have rows in {escape(args.store)} "
                          f"({done} finished); running them again replaces those rows (pass --resume to skip "
                          "the finished ones)", highlight=False, soft_wrap=True)
        where = "local workers"
        if args.executor == "ray":
            where = f"Ray at {args.address}" if args.address else "Ray (local instance)"
        console.print(f"running {len(todo)} pairing(s) on {device} at profile [bold]{args.profile}[/], "
                      f"{args.jobs} at a time on {escape(where)} → {escape(args.store)}", highlight=False)
        start = time.perf_counter()
        eta = EtaColumn()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), eta, TextColumn("{task.fields[info]}"))
        with MatrixProgress(*columns, console=console, transient=False) as progress:
            display = RichDisplay(progress, pairings, finished=skipped, jobs=args.jobs, eta=eta)
            rows = run_matrix(todo, store=store, device=device, display=display,
                              jobs=args.jobs, timeout=args.timeout, executor=args.executor, address=args.address,
                              max_memory_mb=args.max_memory, on_row=_tensorboard_writer(board, progress.console))
    console.print(_summary(rows, time.perf_counter() - start))
    bad = [r for r in rows if r.status in FAILING]
    for row in bad:
        console.print(f"[{STATUS_STYLE[row.status]}]{row.status:>9}[/] {row.task} × {row.variant} (seed {row.seed})",
                      highlight=False, soft_wrap=True)
    console.print(f"see the leaderboard with: attnbench report --store {escape(args.store)}", highlight=False,
                  soft_wrap=True)
    if bad:
        counts = Counter(r.status for r in bad)
        err_console.print(f"{len(bad)} of {len(rows)} pairing(s) did not succeed ("
                          + ", ".join(f"{n} {s}" for s, n in counts.items()) + "): exit status 1",
                          highlight=False, soft_wrap=True)
        return 1
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
