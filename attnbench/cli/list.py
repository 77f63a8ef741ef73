"""``attnbench list``: every registered variant and task, with what it can do and who provides it."""

from __future__ import annotations

import argparse

from rich.table import Table

from attnbench import plugins
from attnbench.cli import console, warn_plugin_errors
from attnbench.specs import CAPABILITIES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "list", help="list registered attention variants and tasks",
        description="List every registered attention variant (capabilities, complexity) and task "
        "(domain, metric, required capabilities), with the plugin that registered it.",
    )
    p.add_argument("what", nargs="?", choices=["attention", "tasks", "all"], default="all",
                   help="what to list (default: all)")
    return p


def _mark(flag: bool) -> str:
    return "[green]✓[/]" if flag else "[dim]·[/]"


def attention_table(loaded: plugins.Plugins) -> Table:
    table = Table(title=f"attention variants ({len(loaded.attention)})")
    for col in ("name", "complexity", "exact", *CAPABILITIES, "max_len", "summary", "plugin"):
        table.add_column(col, overflow="fold")
    for spec in loaded.attention:
        caps = spec.capabilities()
        table.add_row(spec.name, spec.complexity, _mark(spec.exact), *(_mark(caps[c]) for c in CAPABILITIES),
                      "needs" if spec.needs_max_len else "", spec.summary, loaded.attention.source(spec.name))
    return table


def task_table(loaded: plugins.Plugins) -> Table:
    table = Table(title=f"tasks ({len(loaded.tasks)})")
    for col in ("name", "domain", "metric", "requires", "profiles", "description", "plugin"):
        table.add_column(col, overflow="fold")
    for task in loaded.tasks:
        arrow = "↑" if task.metric.higher_is_better else "↓"
        table.add_row(task.name, task.domain, f"{task.metric.name} {arrow}", ", ".join(sorted(task.requires)) or "—",
                      ", ".join(task.profiles), task.description, loaded.tasks.source(task.name))
    return table


def run(args: argparse.Namespace) -> int:
    warn_plugin_errors()
    loaded = plugins.load()
    if args.what in ("attention", "all"):
        console.print(attention_table(loaded))
    if args.what in ("tasks", "all"):
        console.print(task_table(loaded))
    return 0
