"""``attnbench list``: every registered variant and task, with what it can do and who provides it."""

from __future__ import annotations

import argparse

from attnbench import plugins
from attnbench.cli import console, warn_plugin_errors
from attnbench.cli.output import add_format_flag, emit
from attnbench.specs import CAPABILITIES, PROFILES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "list", help="list registered attention variants and tasks",
        description="List every registered attention variant (capabilities, complexity) and task "
        "(domain, metric, required capabilities), with the plugin that registered it.",
    )
    p.add_argument("what", nargs="?", choices=["attention", "tasks", "all"], default="all",
                   help="what to list (default: all)")
    p.add_argument("--settings", choices=PROFILES, default=None, metavar="PROFILE",
                   help="list every task's settings at PROFILE instead (the keys `run --set` accepts)")
    add_format_flag(p)
    return p


def attention_rows(loaded: plugins.Plugins) -> tuple[list[str], list[list[object]]]:
    header = ["name", "complexity", "exact", *CAPABILITIES, "incremental", "needs_max_len", "options", "summary",
              "plugin"]
    rows = []
    for spec in loaded.attention:
        caps = spec.capabilities()
        options = ", ".join(f"{k}={v}" for k, v in spec.options.items())
        rows.append([spec.name, spec.complexity, spec.exact, *(caps[c] for c in CAPABILITIES), spec.incremental,
                     spec.needs_max_len,
                     options, spec.summary, loaded.attention.source(spec.name)])
    return header, rows


def task_rows(loaded: plugins.Plugins) -> tuple[list[str], list[list[object]]]:
    header = ["name", "domain", "metric", "requires", "profiles", "description", "plugin"]
    rows = []
    for task in loaded.tasks:
        arrow = "↑" if task.metric.higher_is_better else "↓"
        rows.append([task.name, task.domain, f"{task.metric.name} {arrow}", ", ".join(sorted(task.requires)) or "—",
                     ", ".join(task.profiles), task.description, loaded.tasks.source(task.name)])
    return header, rows


def settings_rows(loaded: plugins.Plugins, profile: str) -> tuple[list[str], list[list[object]]]:
    header = ["task", "setting", profile]
    rows = [[task.name, key, value] for task in loaded.tasks for key, value in task.profiles.get(profile, {}).items()]
    return header, rows


def run(args: argparse.Namespace) -> int:
    warn_plugin_errors()
    loaded = plugins.load()
    if args.settings:
        emit(args.format, f"task settings at profile {args.settings} (change them with run --set KEY=VALUE)",
             *settings_rows(loaded, args.settings), console)
        return 0
    if args.what in ("attention", "all"):
        emit(args.format, f"attention variants ({len(loaded.attention)})", *attention_rows(loaded), console)
    if args.what in ("tasks", "all"):
        emit(args.format, f"tasks ({len(loaded.tasks)})", *task_rows(loaded), console)
    return 0
