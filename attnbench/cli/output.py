"""One way for commands to print a table: for people (rich), or for machines (``--format json|csv``).

A command builds ``header`` and ``rows`` of plain values (str, numbers, bools, None) and
calls :func:`emit`. Off a terminal the rich console never wraps (see :mod:`attnbench.cli`),
so ``attnbench list attention | grep softmax`` finds whole names.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

FORMATS = ("table", "json", "csv")


def add_format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table for people (default), or json / csv for machines and pipes")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "[green]✓[/]" if value else "[dim]·[/]"
    return "" if value is None else escape(str(value))


def emit(fmt: str, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], console: Any,
         terminal: tuple[Sequence[str], Sequence[Sequence[Any]], Sequence[str]] | None = None) -> None:
    """Print ``rows`` under ``header`` in ``fmt``; json is a list of objects keyed by the header.

    ``terminal`` — (header, rows, notes) — replaces the table for people with a narrower one
    (the machine formats keep every column): its first column never wraps, the others wrap at
    words, the last one takes the width the others leave, and the notes follow as whole lines.
    """
    if terminal is not None and fmt not in ("json", "csv"):
        narrow_header, narrow_rows, notes = terminal
        table = Table(title=title, title_justify="left")
        for index, h in enumerate(narrow_header):
            # the last column (a summary) takes what the others leave; the others keep their content's width
            last = index == len(narrow_header) - 1
            table.add_column(h, no_wrap=index == 0, overflow="fold", ratio=1 if last else None,
                             min_width=24 if last else None)
        for r in narrow_rows:
            table.add_row(*map(_cell, r))
        console.print(table)
        for note in notes:
            console.print(escape(note), highlight=False)
        return
    if fmt == "json":
        print(json.dumps([dict(zip(header, r, strict=True)) for r in rows], indent=2, default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in r] for r in rows)
    else:
        table = Table(title=title, title_justify="left")
        for h in header:
            table.add_column(h, overflow="fold")
        for r in rows:
            table.add_row(*map(_cell, r))
        console.print(table)
