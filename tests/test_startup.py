"""Start-up stays fast because only what a command needs is imported: `attnbench --help` and
`--version` never import torch, `attnbench list` never imports what only training uses
(torchvision, scipy.optimize, sacrebleu). Behaviour, not a stopwatch: the modules a fresh
interpreter holds after the command are checked (the timings are in the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys
from attnbench.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
with open(sys.argv[2], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def _modules_after(tmp_path: Path, *argv: str) -> set[str]:
    record = tmp_path / "modules.json"
    ran = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(argv)), str(record)], capture_output=True,
                         text=True, timeout=240)
    assert ran.returncode == 0, ran.stderr[-2000:]
    data = json.loads(record.read_text())
    assert data["code"] in (0, None), (argv, data["code"], ran.stderr[-2000:])
    return set(data["modules"])


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []], ids=["help", "version", "no-command"])
def test_top_level_help_and_version_do_not_import_torch(tmp_path: Path, argv: list[str]):
    if not argv:  # no command: argparse's usage error (exit 2), still without torch
        ran = subprocess.run([sys.executable, "-c", "import sys\nfrom attnbench.cli import main\n"
                              "try:\n    main([])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"],
                             capture_output=True, text=True, timeout=240)
        assert ran.stdout.strip() == "False" and "required: COMMAND" in ran.stderr
        return
    modules = _modules_after(tmp_path, *argv)
    assert "torch" not in modules
    assert not any(m.startswith("attnbench.cli.") for m in modules - {"attnbench.cli.output"})  # no command module


def test_list_does_not_import_what_only_training_needs(tmp_path: Path):
    modules = _modules_after(tmp_path, "list", "tasks", "--format", "json")
    assert "attnbench_plugins.tasks.detection" in modules  # the tasks were loaded …
    for heavy in ("torchvision", "scipy.optimize", "sacrebleu"):  # … without their training-only imports
        assert heavy not in modules, f"`attnbench list` imports {heavy}: move that import into the task's run()"


def test_the_top_level_help_lists_each_command_with_its_own_help_line():
    from attnbench.cli import build_parser

    # The lazy parser lists commands from COMMANDS; the full one from each command module.
    assert build_parser("").format_help() == build_parser().format_help()
