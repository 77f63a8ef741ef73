"""The ``attnbench`` command line: one module per command, each with ``add_parser`` and ``run``.

A command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args) -> int``. Errors derived from :class:`attnbench.AttnbenchError` are printed
as one clear line (no traceback) and exit with status 2.

Start-up stays fast because only the command being run is imported: ``attnbench --help``
and ``--version`` import no command module (and so no torch), ``attnbench list`` imports
only :mod:`attnbench.cli.list`. The other commands appear in the top-level help through
:data:`COMMANDS`, which a test keeps equal to each module's own help line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from attnbench import __version__
from attnbench.errors import AttnbenchError, Terminated

#: Every command with its one-line help, in the order ``attnbench --help`` lists them.
COMMANDS: dict[str, str] = {
    "list": "list registered attention variants and tasks",
    "plugins": "show installed plugins and their load errors",
    "run": "run the (task × variant × seed) matrix and store the results",
    "report": "print and write leaderboards from the results store",
    "bench": "micro-benchmark the variants' time, memory and FLOPs over sequence lengths",
}

def _console(stderr: bool = False) -> Console:
    """A rich console; off a terminal (a pipe, a file) tables are never wrapped mid-name."""
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 100_000
    return Console(stderr=stderr, width=wide)


console = _console()
err_console = _console(stderr=True)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser, with one sub-parser per command.

    ``only`` names the one command whose module is imported and whose full parser is built
    (``""``: none, enough for ``--help`` and ``--version``); the others are listed by their
    help line alone. ``None`` builds every command in full.
    """
    parser = argparse.ArgumentParser(
        prog="attnbench",
        description="Benchmark attention mechanisms across tasks: quality and cost, side by side.",
        epilog="Start with `attnbench run --profile quick`, then `attnbench report`. "
        "Each command has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"attnbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        if only is None or name == only:
            module = importlib.import_module(f"attnbench.cli.{name}")
            module.add_parser(sub).set_defaults(func=module.run)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _command(argv: Sequence[str]) -> str:
    """The command named in ``argv`` ("" when none: top-level ``--help``, ``--version``, a typo)."""
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in COMMANDS else ""


def warn_plugin_errors() -> None:
    """One line per broken plugin, on stderr, so a user never misses one."""
    from attnbench import plugins

    for info in plugins.load().errors:
        err_console.print(
            f"[yellow]warning:[/] plugin {escape(info.source)} ({escape(info.value)}) is broken: {escape(info.error)} "
            "— see `attnbench plugins`",
            highlight=False, markup=True, soft_wrap=True,
        )


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM stops a command as Ctrl-C does (see :class:`attnbench.errors.Terminated`)."""
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attnbench`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except AttnbenchError as exc:
        # escaped: a message may hold brackets ('attnbench[ray]') that rich would read as markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except BrokenPipeError:
        # The reader went away (`attnbench list | head`): stop quietly, as Python's docs recommend.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Terminated:
        err_console.print("terminated (SIGTERM); finished pairings are saved in the store (re-run with --resume)")
        return 143
    except KeyboardInterrupt:
        err_console.print("interrupted; finished pairings are saved in the store (re-run with --resume)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
