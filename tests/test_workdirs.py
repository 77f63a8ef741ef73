"""Work directories: a pairing without a kept work folder writes into a temporary one that is gone
when the pairing finishes (in-process, in a worker process, after a timeout), while `attnbench run`
keeps its artifacts beside the store for the report. Each test points TMPDIR at a private folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from attnbench.runner import Pairing, execute
from attnbench.store import Store

CPU = torch.device("cpu")
SMOKE = Pairing(task="listops", variant="sdpa", profile="smoke", seed=0, overrides=(("steps", 2),))


class Quiet:
    """A display that shows nothing."""

    def started(self, pairing): ...

    def progress(self, pairing, done, total, description, info): ...

    def finished(self, pairing, row): ...


def _ours(folder: Path) -> list[str]:
    """attnbench's entries in a temporary folder (torch and friends may keep short-lived files of their own)."""
    return [p.name for p in folder.iterdir() if p.name.startswith("attnbench-")]


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty temporary folder for this process and the workers it forks."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))  # tempfile caches the folder it chose first
    return folder


def test_execute_without_a_workdir_removes_its_temporary_folder(private_tmp: Path, tmp_path: Path):
    kept = tmp_path / "kept"
    kept.mkdir()
    with_dir = execute(SMOKE, CPU, workdir=kept)
    assert with_dir.status == "ok", with_dir.error
    assert Path(with_dir.artifacts["loss_curve"]).parent == kept  # the task does write files there
    row = execute(SMOKE, CPU)
    assert row.status == "ok", row.error
    assert _ours(private_tmp) == []
    assert "loss_curve" not in row.artifacts  # the row names no file that is gone


def test_worker_processes_remove_their_temporary_folders_even_after_a_timeout(private_tmp: Path):
    # A fresh interpreter drives the executor: workers are forked from a parent that has run no tensor
    # work (as `attnbench run` does); forking this pytest process, which has trained models, can hang
    # in torch's thread pool.
    script = """
import sys, torch
from attnbench.runner import Pairing
from attnbench.runner.local import LocalExecutor

class Quiet:
    def started(self, pairing): ...
    def progress(self, pairing, *args): ...
    def finished(self, pairing, row): ...

rows = []
smoke = Pairing(task="listops", variant="sdpa", profile="smoke", seed=0, overrides=(("steps", 2),))
slow = Pairing(task="listops", variant="softmax", profile="standard", seed=0)  # minutes: stopped by the timeout
LocalExecutor(torch.device("cpu")).run([smoke], rows.append, Quiet())
LocalExecutor(torch.device("cpu"), timeout=5).run([slow], rows.append, Quiet())
print(sorted(r.status for r in rows), any("loss_curve" in r.artifacts for r in rows))
"""
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TMPDIR": str(private_tmp)})
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().splitlines()[-1] == "['ok', 'timeout'] False", ran.stdout
    assert _ours(private_tmp) == []


def test_run_keeps_artifacts_beside_the_store_and_leaves_no_temporary_folder(tmp_path: Path):
    private = tmp_path / "tmp"
    private.mkdir()
    store = tmp_path / "results" / "results.sqlite"
    ran = run_cli("run", "--tasks", "listops", "--variants", "sdpa", "--profile", "smoke", "--set", "steps=2",
                  "--store", str(store), env={"TMPDIR": str(private)})
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    with Store(store) as s:
        (row,) = s.rows()
    curve = Path(row.artifacts["loss_curve"])
    assert curve.is_file() and curve.is_relative_to(store.parent / "artifacts" / "listops" / "sdpa")
    assert _ours(private) == []


@pytest.mark.slow
def test_ray_tasks_remove_their_temporary_folders(private_tmp: Path):
    ray = pytest.importorskip("ray", reason="pip install 'attnbench[ray]' to test the Ray executor")
    from attnbench.runner.ray_cluster import RayExecutor

    # Ray's sockets live under its temp folder, and a socket path may not exceed 107 bytes
    sessions = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=sessions)
    try:
        rows = []
        RayExecutor(CPU, jobs=1).run([SMOKE], rows.append, Quiet())
    finally:
        ray.shutdown()
        shutil.rmtree(sessions, ignore_errors=True)
    assert [r.status for r in rows] == ["ok"] and "loss_curve" not in rows[0].artifacts
    assert _ours(private_tmp) == []
