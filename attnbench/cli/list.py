"""``attnbench list``: every registered variant and task, with what it can do and who provides it."""

from __future__ import annotations

import argparse
import json
import re
import textwrap

from rich.markup import escape

from attnbench import plugins
from attnbench.cli import console, warn_plugin_errors
from attnbench.cli.output import add_format_flag, emit
from attnbench.errors import UnknownNameError
from attnbench.runner.overrides import setting_choices
from attnbench.specs import CAPABILITIES, PROFILES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "list", help="list registered attention variants and tasks",
        description="List every registered attention variant (capabilities, complexity) and task "
        "(domain, metric, required capabilities), with the plugin that registered it. In a terminal the tables "
        "fit 100 columns (capabilities as letters, a task's first sentence); --format json|csv has every field, "
        "and `attnbench list tasks NAME` (or `list attention NAME`) shows one entry whole.",
        epilog="examples:\n  attnbench list attention\n  attnbench list tasks listops      the whole description "
        "and the settings of every profile\n  attnbench list --settings quick --format csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", nargs="?", choices=["attention", "tasks", "all"], default="all",
                   help="what to list (default: all)")
    p.add_argument("name", nargs="?", default=None,
                   help="with attention or tasks: show this one entry in full")
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


#: One letter per capability in the terminal's attention table, in column order.
LETTERS: tuple[tuple[str, str], ...] = (
    ("exact", "e"), ("causal", "c"), ("padding_mask", "p"), ("arbitrary_mask", "m"), ("cross", "x"),
    ("weights", "w"), ("incremental", "i"), ("needs_max_len", "L"),
)


def _letters(flags: dict[str, bool]) -> str:
    return "".join(letter if flags.get(key) else "·" for key, letter in LETTERS)


def attention_terminal(loaded: plugins.Plugins) -> tuple[list[str], list[list[object]], list[str]]:
    """The attention table for a terminal: capabilities as letters, options in the summary, fits 100 columns."""
    rows = []
    for spec in loaded.attention:
        flags = {**spec.capabilities(), "exact": spec.exact, "needs_max_len": spec.needs_max_len,
                 "incremental": bool(getattr(spec, "incremental", False))}
        options = ", ".join(f"{k}={v}" for k, v in spec.options.items())
        source = loaded.attention.source(spec.name)  # distribution:entry-point; built-ins just "attnbench"
        rows.append([spec.name, spec.complexity, _letters(flags), source.split(":")[0] if source.startswith(
            "attnbench:") else source,
                     spec.summary + (f" (options: {options})" if options else "")])
    legend = "capabilities: " + "  ".join(f"{letter}={key}" for key, letter in LETTERS) + "  (· = no); " \
        "every field: --format json"
    return ["name", "complexity", "can", "plugin", "summary"], rows, [legend]


def first_sentence(text: str, width: int = 120) -> str:
    """The first sentence of ``text`` (up to a full stop followed by a capital), shortened at a
    word to ``width`` characters with " …" (the whole text: ``attnbench list tasks NAME``)."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip(), maxsplit=1)
    return textwrap.shorten(parts[0], width, placeholder=" …")


def task_terminal(loaded: plugins.Plugins) -> tuple[list[str], list[list[object]], list[str]]:
    """The task table for a terminal: the description's first sentence, fits 100 columns."""
    rows = []
    for task in loaded.tasks:
        arrow = "↑" if task.metric.higher_is_better else "↓"
        needs = {cap: cap in task.requires for cap in CAPABILITIES}
        rows.append([task.name, task.domain, f"{task.metric.name} {arrow}",
                     "".join(letter for key, letter in LETTERS if key in needs and needs[key]) or "—",
                     first_sentence(task.description)])
    legend = "requires: " + "  ".join(f"{letter}={key}" for key, letter in LETTERS if key in CAPABILITIES)
    return ["name", "domain", "metric", "requires", "summary"], rows, [
        legend, "the whole description and every profile's settings: attnbench list tasks NAME"]


def _describe_task(loaded: plugins.Plugins, name: str, fmt: str) -> None:
    task = loaded.tasks.get(name)
    metric = task.metric
    fields = {"name": task.name, "domain": task.domain,
              "metric": f"{metric.name} ({'higher' if metric.higher_is_better else 'lower'} is better"
                        + (f", {metric.unit}" if metric.unit else "") + ")",
              "baseline": metric.baseline or "—", "requires": ", ".join(sorted(task.requires)) or "—",
              "plugin": loaded.tasks.source(task.name), "description": task.description}
    keys = sorted({k for settings in task.profiles.values() for k in settings})
    profiles = list(task.profiles)
    choices = {k: list(v) for k, v in setting_choices(task).items()}
    if fmt == "json":
        print(json.dumps({**fields, "profiles": task.profiles, "setting_choices": choices}, indent=2, default=str))
        return
    if fmt == "csv":
        emit(fmt, "", ["setting", *profiles], [[k, *(task.profiles[p].get(k) for p in profiles)] for k in keys], console)
        return
    for key, value in fields.items():
        console.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False)
    emit(fmt, f"settings by profile (change one with run --set {task.name}.KEY=VALUE or --set KEY=VALUE)",
         ["setting", *profiles], [[k, *(task.profiles[p].get(k, "") for p in profiles)] for k in keys], console)
    for key, allowed in choices.items():
        console.print(escape(f"{key} takes one of: {', '.join(map(str, allowed))}"), highlight=False)


def _describe_attention(loaded: plugins.Plugins, name: str, fmt: str) -> None:
    header, rows = attention_rows(loaded)
    spec = loaded.attention.get(name)
    fields = dict(zip(header, next(r for r in rows if r[0] == spec.name), strict=True))
    if fmt == "json":
        print(json.dumps(fields, indent=2, default=str))
    elif fmt == "csv":
        emit(fmt, "", list(fields), [list(fields.values())], console)
    else:
        for key, value in fields.items():
            console.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False)


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
    if args.name is not None:
        if args.what == "all":
            raise UnknownNameError(f"say which kind {args.name!r} is: attnbench list tasks {args.name} "
                                   f"or attnbench list attention {args.name}")
        (_describe_attention if args.what == "attention" else _describe_task)(loaded, args.name, args.format)
        return 0
    if args.what == "all" and args.format == "json":  # one document, so that it parses
        lists = {"attention": attention_rows(loaded), "tasks": task_rows(loaded)}
        print(json.dumps({kind: [dict(zip(header, r, strict=True)) for r in rows]
                          for kind, (header, rows) in lists.items()}, indent=2, default=str))
        return 0
    if args.what in ("attention", "all"):
        emit(args.format, f"attention variants ({len(loaded.attention)})", *attention_rows(loaded), console,
             terminal=attention_terminal(loaded))
    if args.what in ("tasks", "all"):
        emit(args.format, f"tasks ({len(loaded.tasks)})", *task_rows(loaded), console, terminal=task_terminal(loaded))
    return 0
