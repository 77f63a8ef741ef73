"""The ``attnbench`` command line: one module per command, each with ``add_parser`` and ``run``.

A command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args) -> int``. Errors derived from :class:`attnbench.AttnbenchError` are printed
as one clear line (no traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from attnbench import __version__
from attnbench.errors import AttnbenchError

COMMANDS = ("list", "plugins", "run", "report", "bench")

def _console(stderr: bool = False) -> Console:
    """A rich console; off a terminal (a pipe, a file) tables are never wrapped mid-name."""
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 100_000
    return Console(stderr=stderr, width=wide)


console = _console()
err_console = _console(stderr=True)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with one sub-parser per command module."""
    parser = argparse.ArgumentParser(
        prog="attnbench",
        description="Benchmark attention mechanisms across tasks: quality and cost, side by side.",
        epilog="Start with `attnbench run --profile quick`, then `attnbench report`. "
        "Each command has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"attnbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"attnbench.cli.{name}")
        module.add_parser(sub).set_defaults(func=module.run)
    return parser


def warn_plugin_errors() -> None:
    """One line per broken plugin, on stderr, so a user never misses one."""
    from attnbench import plugins

    for info in plugins.load().errors:
        err_console.print(
            f"[yellow]warning:[/] plugin {escape(info.source)} ({escape(info.value)}) is broken: {escape(info.error)} "
            "— see `attnbench plugins`",
            highlight=False, markup=True, soft_wrap=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attnbench`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AttnbenchError as exc:
        # escaped: a message may hold brackets ('attnbench[ray]') that rich would read as markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted; finished pairings are saved in the store (re-run with --resume)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
