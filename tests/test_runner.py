"""The runner through its public API: statuses, determinism, timeouts, kill -9 and --resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from torch import nn

import attnbench
from attnbench import plugins
from attnbench.errors import AttentionShapeError
from attnbench.nn import build_attention
from attnbench.runner import Pairing, execute

CPU = torch.device("cpu")
# A smoke pairing can finish in the fraction of a second between seeing the first row and
# sending the signal; a quick one (about 10 s) is surely still running when it arrives.
PROFILE_LONG_ENOUGH_TO_INTERRUPT = "quick"


class _Scripted:
    """A task whose run() does what the test says, registered into the loaded registry."""

    domain, description = "test", "scripted behaviour for runner tests"
    metric = attnbench.Metric(name="score", lower=0, upper=1)
    profiles = {"smoke": {"n": 1}}

    def __init__(self, name: str, behaviour, requires=frozenset()) -> None:
        self.name, self.behaviour, self.requires = name, behaviour, requires

    def run(self, ctx):
        return self.behaviour(ctx)


def _register(task) -> None:
    loaded = plugins.load()
    if task.name not in loaded.tasks:
        loaded.tasks.add(task.name, task, source="tests:runner")


def _diverge(ctx):
    ctx.progress.start(3)
    ctx.progress.advance(1, loss=1.0)
    ctx.progress.advance(1, loss=float("nan"))
    return {"score": 1.0}


def _explode(ctx):
    raise RuntimeError("kaboom in the task")


@pytest.mark.parametrize(("name", "behaviour", "requires", "status", "message"), [
    ("t-diverge", _diverge, frozenset(), "diverged", "loss became nan"),
    ("t-explode", _explode, frozenset(), "failed", "RuntimeError: kaboom in the task"),
    ("t-weights", lambda ctx: {"score": 1.0}, frozenset({"weights"}), "unsupported", "does not support weights"),
    ("t-nometric", lambda ctx: {"other": 1.0}, frozenset(), "failed", "returned no 'score' metric"),
])
def test_pairing_outcomes_become_statuses(name, behaviour, requires, status, message):
    _register(_Scripted(name, behaviour, requires))
    row = execute(Pairing(task=name, variant="sdpa", profile="smoke", seed=0), CPU)
    assert row.status == status
    assert message in row.error
    assert row.torch_version == torch.__version__ and row.distribution == "attnbench"


def test_one_seed_gives_identical_metrics_twice():
    pairing = Pairing(task="listops", variant="softmax", profile="smoke", seed=3)
    first, second = execute(pairing, CPU), execute(pairing, CPU)
    assert first.status == "ok", first.error
    assert first.metrics == second.metrics
    assert first.key == second.key
    for figure in ("params", "flops_per_example", "train_s", "infer_ms_per_batch", "peak_rss_mb"):
        assert first.efficiency[figure] > 0, figure
    if hasattr(os, "getloadavg"):  # the host's load beside the cost figures, so a busy machine shows
        assert first.efficiency["host_load_1m"] >= 0


def test_a_variant_returning_the_wrong_shape_is_named():
    class Wrong(nn.Module):
        def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
            return q[..., :1]

    spec = attnbench.AttentionSpec(name="wrong", build=lambda c: Wrong(), summary="s", complexity="O(1)")
    module = build_attention(spec, attnbench.AttentionConfig(num_heads=2, head_dim=8))
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(AttentionShapeError, match=r"'wrong' returned output of shape \(1, 2, 5, 1\).*expected \(1, 2, 5, 8\)"):
        module(q, q, q)


def test_timeout_is_recorded_and_the_run_goes_on(tmp_path: Path):
    store = tmp_path / "r.sqlite"
    result = run_cli("run", "--tasks", "listops", "--variants", "softmax", "--profile", PROFILE_LONG_ENOUGH_TO_INTERRUPT,
                     "--timeout", "2", "--store", str(store))
    assert result.returncode == 1, result.stderr  # a timeout row: exit status 1
    rows = sqlite3.connect(store).execute("SELECT status, error FROM results").fetchall()
    assert rows == [("timeout", rows[0][1])] and "exceeded --timeout 2 s" in rows[0][1]


def _rows(store: Path) -> list[tuple]:
    if not store.exists():
        return []
    try:
        return sqlite3.connect(store).execute("SELECT variant, status, finished_at FROM results").fetchall()
    except sqlite3.OperationalError:
        return []


def test_kill_9_loses_no_finished_row_and_resume_finishes_the_rest(tmp_path: Path):
    store = tmp_path / "r.sqlite"
    args = [sys.executable, "-m", "attnbench", "run", "--tasks", "listops", "--variants", "softmax,sdpa",
            "--profile", PROFILE_LONG_ENOUGH_TO_INTERRUPT, "--store", str(store)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 900  # a quick pairing takes ~10 s idle, minutes on a loaded machine
    while not _rows(store) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _rows(store), "the first pairing did not finish in 900 s: nothing to keep, the test cannot tell"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(store)
    assert len(before) == 1, "the first pairing should have finished and the second not"
    resumed = run_cli("run", "--tasks", "listops", "--variants", "softmax,sdpa", "--profile", PROFILE_LONG_ENOUGH_TO_INTERRUPT,
                      "--store", str(store), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: 1 of 2 pairings already" in resumed.stdout
    after = _rows(store)
    assert len(after) == 2 and all(status == "ok" for _, status, _ in after)
    assert before[0] in after  # the finished row was kept, not re-run


def test_sigterm_stops_like_ctrl_c_with_exit_143(tmp_path: Path):
    """kill, timeout(1) and batch schedulers send SIGTERM to the run's process alone."""
    store = tmp_path / "r.sqlite"
    args = [sys.executable, "-m", "attnbench", "run", "--tasks", "listops", "--variants", "softmax,sdpa",
            "--profile", PROFILE_LONG_ENOUGH_TO_INTERRUPT, "--store", str(store)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 900  # a quick pairing takes ~10 s idle, minutes on a loaded machine
    while not _rows(store) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _rows(store), "the first pairing did not finish in 900 s: nothing to keep, the test cannot tell"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM); finished pairings are saved in the store (re-run with --resume)" in stderr
    assert "Traceback" not in stderr
    assert len(_rows(store)) == 1
    resumed = run_cli("run", "--tasks", "listops", "--variants", "softmax,sdpa", "--profile",
                      PROFILE_LONG_ENOUGH_TO_INTERRUPT, "--store", str(store), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and "resume: 1 of 2 pairings already" in resumed.stdout


def test_ctrl_c_stops_cleanly_and_keeps_finished_rows(tmp_path: Path):
    store = tmp_path / "r.sqlite"
    args = [sys.executable, "-m", "attnbench", "run", "--tasks", "listops", "--variants", "softmax,sdpa",
            "--profile", PROFILE_LONG_ENOUGH_TO_INTERRUPT, "--store", str(store)]
    # A shell that starts jobs in the background ignores SIGINT for them, and children inherit
    # that; restore the default, as an interactive terminal has it.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 900  # a quick pairing takes ~10 s idle, minutes on a loaded machine
    while not _rows(store) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _rows(store), "the first pairing did not finish in 900 s: nothing to keep, the test cannot tell"
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted; finished pairings are saved" in stderr
    assert "Traceback" not in stderr
    assert len(_rows(store)) == 1
