"""``attnbench plugins``: every plugin, what it registered, or why it failed to load."""

from __future__ import annotations

import argparse
import json

from attnbench import plugins
from attnbench.cli import console
from attnbench.cli.output import add_format_flag, emit


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "plugins", help="show installed plugins and their load errors",
        description="Show every plugin of the `attnbench` entry-point group: distribution, version, entry "
        "point, what it registered, or its load error. Disable plugins with ATTNBENCH_DISABLE_PLUGINS=a,b. "
        "Exits with status 1 when any plugin failed to load, so CI can check an installation.",
    )
    add_format_flag(p)
    # --json is kept for scripts written against older releases; it is --format json, nothing else.
    p.add_argument("--json", dest="format", action="store_const", const="json",
                   help="alias of --format json (every field of every plugin, as a list of objects)")
    return p


def run(args: argparse.Namespace) -> int:
    infos = plugins.load().infos
    failed = 1 if any(i.error for i in infos) else 0
    if args.format == "json":  # every field, with the lists of what each plugin registered
        print(json.dumps([vars(i) for i in infos], indent=2))
        return failed
    header = ["entry point", "distribution", "version", "module", "registered", "status"]
    rows = []
    for i in infos:
        registered = ", ".join([*i.attention, *(f"task:{t}" for t in i.tasks)]) or "—"
        status = "disabled" if i.disabled else (f"error: {i.error}" if i.error else "ok")
        rows.append([i.name, i.distribution, i.version, i.value, registered, status])
    emit(args.format, f"attnbench plugins ({len(infos)})", header, rows, console)
    return failed
