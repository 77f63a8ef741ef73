"""--executor ray: a local Ray instance (num_cpus=2) runs the same pairings to the same rows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
import torch

from attnbench.runner.matrix import plan, run_matrix
from attnbench.runner.ray_cluster import RayExecutor
from attnbench.store import Store

CPU = torch.device("cpu")


class Quiet:
    def started(self, pairing): ...

    def progress(self, pairing, done, total, description, info): ...

    def finished(self, pairing, row): ...


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _by_variant(rows):
    return {r.variant: r for r in rows}


@pytest.mark.slow
def test_ray_rows_equal_the_local_executors_for_the_same_seeds(local_ray, tmp_path: Path):
    pairings = plan(tasks=["listops"], variants=["sdpa", "linear", "sdpa-flash"], profile="smoke", seeds=[0],
                    overrides={"steps": 3})
    with Store(tmp_path / "local.sqlite") as store:
        local = _by_variant(run_matrix(pairings, store=store, device=CPU, display=Quiet(), jobs=2))
    with Store(tmp_path / "ray.sqlite") as store:
        on_ray = _by_variant(run_matrix(pairings, store=store, device=CPU, display=Quiet(), jobs=2, executor="ray"))
        stored = _by_variant(store.rows())
    assert set(on_ray) == set(local) == set(stored) == {"sdpa", "linear", "sdpa-flash"}
    for variant, row in local.items():
        other = on_ray[variant]
        assert (other.status, other.config_hash, other.environment) == (row.status, row.config_hash, row.environment)
        assert other.metrics.keys() == row.metrics.keys()
        for name, value in row.metrics.items():
            assert other.metrics[name] == pytest.approx(value, abs=1e-6), (variant, name)
    assert on_ray["sdpa-flash"].status == "unsupported" and "padding_mask" in on_ray["sdpa-flash"].error


@pytest.mark.slow
def test_a_ray_pairing_past_its_timeout_is_cancelled_and_recorded_as_timeout(local_ray, tmp_path: Path):
    slow = plan(tasks=["listops"], variants=["softmax"], profile="standard", seeds=[0])  # 10,000 steps: minutes
    rows = []
    started = time.monotonic()
    RayExecutor(CPU, jobs=1, timeout=20, artifacts=tmp_path / "artifacts").run(slow, rows.append, Quiet())
    (row,) = rows
    assert row.status == "timeout" and "exceeded --timeout 20 s" in row.error, row.error
    assert time.monotonic() - started < 60  # cancelled, not waited for
