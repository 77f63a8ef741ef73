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


def emit(fmt: str, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], console: Any) -> None:
    """Print ``rows`` under ``header`` in ``fmt``; json is a list of objects keyed by the header."""
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
