"""The convergence figure every row carries, and training for a wall-time budget (``--budget``)."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench import plugins
from attnbench.runner.pairing import Pairing, config_hash, execute
from attnbench.training.convergence import PLATEAU_SHARE, late_drop_share

CPU = torch.device("cpu")


def test_late_drop_share_of_known_curves() -> None:
    steps = 200
    straight = [1.0 - i / steps for i in range(steps)]
    assert late_drop_share(straight) == pytest.approx(0.2, abs=0.03)  # windows shift the ends inward
    flat_end = [math.exp(-i / 10) for i in range(steps)]  # converged long before the end
    assert late_drop_share(flat_end) < PLATEAU_SHARE
    steep_end = [1.0 - (i / steps) ** 4 for i in range(steps)]  # most of the drop is late
    assert late_drop_share(steep_end) > 0.5
    assert late_drop_share([1.0] * 50) is None  # nothing learnt: no share to speak of
    assert late_drop_share([1.0, 0.5]) is None  # too short to tell


def test_every_row_records_its_steps_and_convergence() -> None:
    row = execute(Pairing(task="listops", variant="sdpa", profile="smoke", seed=0), CPU)
    assert row.status == "ok", row.error
    steps = plugins.get_task("listops").profiles["smoke"]["steps"]
    assert row.efficiency["train_steps"] == steps
    if "late_drop_share" in row.efficiency:
        assert 0.0 <= row.efficiency["late_drop_share"] <= 1.0


def test_budget_trains_for_wall_time_and_keys_the_row_apart() -> None:
    by_steps = Pairing(task="listops", variant="sdpa", profile="smoke", seed=0)
    by_time = Pairing(task="listops", variant="sdpa", profile="smoke", seed=0, budget_s=1.5)
    task = plugins.get_task("listops")
    assert config_hash(task, by_steps) != config_hash(task, by_time)
    row = execute(by_time, CPU)
    assert row.status == "ok", row.error
    assert row.config["time_budget_s"] == 1.5
    # the loop stops at the first step past the budget: never much beyond it, and it ran steps
    assert 1.5 <= row.efficiency["train_s"] < 1.5 + 5.0
    assert row.efficiency["train_steps"] >= 1


def test_run_budget_is_validated_and_its_rows_are_stored_apart(tmp_path):
    import sqlite3

    from conftest import run_cli

    store = tmp_path / "r.sqlite"
    bad = run_cli("run", "--tasks", "listops", "--variants", "sdpa", "--profile", "smoke", "--budget", "0",
                  "--store", str(store))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[0].endswith(
        "--budget 0: give a positive number of seconds, or leave it out for training for the profile's steps")
    assert not store.exists()
    common = ("run", "--tasks", "listops", "--variants", "sdpa", "--profile", "smoke", "--store", str(store))
    assert run_cli(*common).returncode == 0
    timed = run_cli(*common, "--budget", "1")
    assert timed.returncode == 0, timed.stdout + timed.stderr
    rows = sqlite3.connect(store).execute("SELECT config_hash, status FROM results").fetchall()
    assert len(rows) == 2 and len({h for h, _ in rows}) == 2  # two setups, never merged
