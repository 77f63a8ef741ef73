"""Shared fixtures: a real install of the test tree's plugin packages, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = Path(__file__).parent / "plugin_packages"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding attnbench-example, attnbench-broken and attnbench-faults, installed by pip (no network)."""
    root = tmp_path_factory.mktemp("plugins")
    target = root / "site"
    sources = []
    for name in ("attnbench-example", "attnbench-broken", "attnbench-faults"):
        sources.append(root / name)
        shutil.copytree(PACKAGES / name, sources[-1])  # builds leave files behind; keep tests/ clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), *map(str, sources)],
        check=True, capture_output=True, text=True,
    )
    return target


def run_cli(*args: str, site: Path | None = None, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m attnbench ARGS`` in a subprocess, optionally with extra plugins on the path."""
    full_env = {**os.environ, "COLUMNS": "250", **(env or {})}
    if site is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), full_env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "attnbench", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)
