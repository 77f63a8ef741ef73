"""Conformance checks for tasks: declared fields, a smoke run, metric range, determinism, bad data."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute
from attnbench.specs import CAPABILITIES, PROFILES, Metric, Task

CPU = torch.device("cpu")


def reference_variant(task: Task) -> str:
    """``sdpa`` when it can serve the task, else the first registered variant that can."""
    loaded = plugins.load()
    candidates = ["sdpa", "softmax", *loaded.attention.names()]
    for name in candidates:
        if name in loaded.attention and loaded.attention.get(name).missing(task.requires) is None:
            return name
    raise AssertionError(f"{task.name}: no registered variant has the capabilities it requires ({task.requires})")


def check_fields(task: Task) -> None:
    """Name, domain, description, a Metric, known capabilities and every profile, JSON-serialisable."""
    for field in ("name", "domain", "description"):
        assert isinstance(getattr(task, field), str) and getattr(task, field), f"{task!r}: empty {field}"
    assert isinstance(task.metric, Metric), f"{task.name}: metric must be an attnbench.Metric"
    unknown = set(task.requires) - set(CAPABILITIES)
    assert not unknown, f"{task.name}: requires unknown capabilities {sorted(unknown)} (known: {CAPABILITIES})"
    missing = [p for p in PROFILES if p not in task.profiles]
    assert not missing, f"{task.name}: profiles {missing} are missing"
    for config in task.profiles.values():
        json.dumps(dict(config))  # must hash reproducibly into result rows


def check_smoke_run_is_deterministic(task: Task) -> None:
    """Two smoke runs with one seed: both ok, primary metric in range, identical metrics."""
    pairing = Pairing(task=task.name, variant=reference_variant(task), profile="smoke", seed=0)
    first = execute(pairing, CPU)
    assert first.status == "ok", f"{task.name}: smoke run {first.status}: {first.error}"
    value = first.metrics[task.metric.name]
    assert task.metric.in_range(value), f"{task.name}: {task.metric.name}={value} outside its declared range"
    for figure in ("params", "flops_per_example", "train_s"):
        assert first.efficiency.get(figure, 0) > 0, f"{task.name}: no {figure} (call ctx.meter.train/model)"
    second = execute(pairing, CPU)
    assert second.metrics == first.metrics, f"{task.name}: same seed, different metrics: {first.metrics} vs {second.metrics}"


def check_empty_data_dir_is_a_data_error(task: Task) -> None:
    """Pointing the task at an empty folder raises DataError naming what it expected."""
    with tempfile.TemporaryDirectory() as empty:
        pairing = Pairing(task=task.name, variant=reference_variant(task), profile="smoke", seed=0, data_dir=empty)
        try:
            row = execute(pairing, CPU)
        except DataError as exc:
            assert str(Path(empty)) in str(exc) or "expected" in str(exc), f"{task.name}: vague data error: {exc}"
            return
        raise AssertionError(f"{task.name}: an empty --data-dir gave a {row.status} row instead of a DataError")
