"""Workers start clean, whatever the process that runs the matrix did: a real plugin package
(tests/plugin_packages/attnbench-importwork) that sorts 2 million numbers and builds a distance
table when imported runs its pairings to `ok` with no thread-limiting environment variable,
through the local executor and through Ray. Its siblings register a 300-character name and a
name with a `/`: refused at registration, reported by `attnbench plugins`, and the run goes on."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import PACKAGES, run_cli

import attnbench
from attnbench.errors import InvalidNameError
from attnbench.registry import MAX_NAME_LENGTH, Registry
from attnbench.runner import Pairing
from attnbench.runner.local import LocalExecutor, start_method
from attnbench.runner.worker import take_environment

CPU = torch.device("cpu")
#: Variables that would hide the hang by keeping torch's thread pool to one thread.
THREAD_LIMITS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
LONG_NAME = "very-" * 59 + "long1"


def install_plugin_package(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """tests/plugin_packages/NAME installed by pip into a folder of its own (no network); the folder to put on PYTHONPATH."""
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(PACKAGES / name, root / "src")  # builds leave files behind; keep tests/ clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(root / "site"), str(root / "src")], check=True, capture_output=True, text=True)
    return root / "site"


@pytest.fixture(scope="module")
def importwork_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin_package(tmp_path_factory, "attnbench-importwork")


def _unlimited_threads() -> dict[str, str]:
    """This process's environment without any thread-count limit (run_cli merges it over os.environ)."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_LIMITS}


def _run_unlimited(*args: str, site: Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**_unlimited_threads(), "COLUMNS": "250", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "attnbench", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def _statuses(store: Path) -> dict[tuple[str, str], str]:
    db = sqlite3.connect(store)
    try:
        return {(t, v): s for t, v, s in db.execute("SELECT task, variant, status FROM results")}
    finally:
        db.close()


def test_cpu_workers_come_from_a_fork_server_not_from_the_parent():
    assert start_method(CPU) == ("forkserver" if sys.platform != "win32" else "spawn")


@pytest.mark.slow
def test_a_plugin_doing_threaded_tensor_work_at_import_runs_its_pairings_to_ok(importwork_site: Path, tmp_path: Path):
    store = tmp_path / "r.sqlite"
    # --timeout turns a hang into a 'timeout' row (and exit 1) rather than a stuck test
    ran = _run_unlimited("run", "--tasks", "doc-order", "--variants", "sdpa,distance-bias", "--profile", "smoke",
                         "--timeout", "240", "--store", str(store), site=importwork_site, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert _statuses(store) == {("doc-order", "sdpa"): "ok", ("doc-order", "distance-bias"): "ok"}
    # the siblings with bad names are reported, and did not stop the run
    assert "attnbench-importwork:long-name" in ran.stderr and "attnbench-importwork:slash-name" in ran.stderr
    assert "Traceback" not in ran.stderr
    # artifact folders: one level per name
    artifacts = tmp_path / "artifacts"
    assert sorted(p.name for p in artifacts.iterdir()) == ["doc-order"]
    assert sorted(p.name for p in (artifacts / "doc-order").iterdir()) == ["distance-bias", "sdpa"]


def test_a_warmed_thread_pool_in_this_process_does_not_reach_the_workers(tmp_path: Path):
    torch.rand(2_000_000).argsort()  # what the plugin does at import: torch's intra-op pool now runs here
    rows = []

    class Quiet:
        def started(self, pairing): ...

        def progress(self, pairing, *args): ...

        def finished(self, pairing, row): ...

    smoke = Pairing(task="listops", variant="sdpa", profile="smoke", seed=0, overrides=(("steps", 2),))
    LocalExecutor(CPU, timeout=240).run([smoke], rows.append, Quiet())
    assert [r.status for r in rows] == ["ok"], rows[0].error


def test_a_worker_takes_the_environment_its_parent_has_when_it_starts(tmp_path: Path):
    # A fork server keeps the environment of when it started; the worker takes the parent's current one.
    saved = dict(os.environ)
    tempfile.gettempdir()  # cached
    try:
        take_environment({"TMPDIR": str(tmp_path), "ATTNBENCH_TEST_FRESH": "1"})
        assert dict(os.environ) == {"TMPDIR": str(tmp_path), "ATTNBENCH_TEST_FRESH": "1"}
        assert tempfile.gettempdir() == str(tmp_path)  # chosen again, not the one cached before
    finally:
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = None


@pytest.mark.slow
def test_the_plugin_runs_to_ok_on_ray_too(importwork_site: Path, tmp_path: Path):
    pytest.importorskip("ray", reason="pip install 'attnbench[ray]' to test the Ray executor")
    store = tmp_path / "r.sqlite"
    ran = _run_unlimited("run", "--tasks", "doc-order", "--variants", "distance-bias", "--profile", "smoke",
                         "--executor", "ray", "--timeout", "240", "--store", str(store), site=importwork_site, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert _statuses(store) == {("doc-order", "distance-bias"): "ok"}


# --- names ----------------------------------------------------------------------------------------

def _spec(name: str) -> attnbench.AttentionSpec:
    return attnbench.AttentionSpec(name=name, build=lambda config: None, summary="s", complexity="O(1)")


@pytest.mark.parametrize(("name", "problem"), [
    ("a" * (MAX_NAME_LENGTH + 1), f"is {MAX_NAME_LENGTH + 1} characters long (at most {MAX_NAME_LENGTH})"),
    ("sdpa/nested", "contains '/'"),
    ("..", "starts with '.'"),
    ("with space", "contains ' '"),
    ("a,b", "contains ','"),
    ("glob*", "contains '*'"),
    ("", "is empty"),
])
def test_names_that_break_the_rule_are_refused_at_registration(name: str, problem: str):
    registry = Registry("attention", "attnbench list attention")
    with pytest.raises(InvalidNameError, match="breaks the naming rule") as info:
        registry.add(name, _spec(name), source="dist:ep")
    assert problem in str(info.value) and "dist:ep" in str(info.value) and "\n" not in str(info.value)
    assert name not in registry


def test_names_within_the_rule_register():
    registry = Registry("task", "attnbench list tasks")
    for name in ("a" * MAX_NAME_LENGTH, "lra-text", "gqa_4", "v1.2", "A9"):
        registry.add(name, object(), source="dist:ep")
    assert len(registry) == 5


def test_attnbench_plugins_reports_each_bad_name_like_a_duplicate(importwork_site: Path):
    listed = run_cli("plugins", "--json", site=importwork_site)
    infos = {i["name"]: i for i in json.loads(listed.stdout)}
    assert "300 characters long (at most 64)" in infos["long-name"]["error"]
    assert "contains '/'" in infos["slash-name"]["error"]
    assert infos["import-time-tensors"]["error"] is None
    assert infos["import-time-tensors"]["attention"] == ["distance-bias"]
    assert "sdpa/nested" not in run_cli("list", "attention", site=importwork_site).stdout
