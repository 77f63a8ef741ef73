"""The conformance kit: what every attention variant and task must satisfy.

Use it from pytest by subclassing (the ``pytest11`` plugin parametrizes the fixtures)::

    from attnbench.testing import AttentionConformance, TaskConformance

    class TestMyAttention(AttentionConformance):
        attnbench_variants = ["mine"]

    class TestMyTask(TaskConformance):
        attnbench_tasks = ["my-task"]

or call the checks in :data:`attnbench.testing.attention.ATTENTION_CHECKS` directly.
"""

from __future__ import annotations

import pytest

from attnbench.specs import AttentionSpec, Task
from attnbench.testing import attention as _attention
from attnbench.testing import tasks as _tasks
from attnbench.testing.attention import ATTENTION_CHECKS, NotApplicable


def _run(check, spec: AttentionSpec) -> None:
    try:
        check(spec)
    except NotApplicable as exc:
        pytest.skip(f"{spec.name}: {exc}")


class AttentionConformance:
    """Contract tests for attention variants, parametrized over ``attention_spec``."""

    def test_shape_and_dtype(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_shape_and_dtype, attention_spec)

    def test_gradients(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_gradients, attention_spec)

    def test_padding_mask(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_padding_mask, attention_spec)

    def test_causal(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_causal, attention_spec)

    def test_cross(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_cross, attention_spec)

    def test_weights(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_weights, attention_spec)

    def test_exact(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_exact, attention_spec)

    def test_approximates(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_approximates, attention_spec)

    def test_incremental_declared(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_incremental_declared, attention_spec)

    def test_incremental_matches_forward(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_incremental_matches_forward, attention_spec)

    def test_incremental_state_is_per_sequence(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_incremental_state_is_per_sequence, attention_spec)

    def test_incremental_state_growth(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_incremental_state_growth, attention_spec)

    def test_mods(self, attention_spec: AttentionSpec) -> None:
        _run(_attention.check_mods, attention_spec)

    def test_compiles(self, attention_spec: AttentionSpec, request: pytest.FixtureRequest) -> None:
        if not request.config.getoption("--attnbench-compile"):
            pytest.skip("torch.compile check is opt-in: pass --attnbench-compile")
        _run(_attention.check_compiles, attention_spec)


class TaskConformance:
    """Contract tests for tasks, parametrized over ``attnbench_task``."""

    def test_fields(self, attnbench_task: Task) -> None:
        _tasks.check_fields(attnbench_task)

    def test_smoke_run_is_deterministic(self, attnbench_task: Task) -> None:
        _tasks.check_smoke_run_is_deterministic(attnbench_task)

    def test_empty_data_dir_is_a_data_error(self, attnbench_task: Task) -> None:
        _tasks.check_empty_data_dir_is_a_data_error(attnbench_task)


__all__ = ["ATTENTION_CHECKS", "AttentionConformance", "NotApplicable", "TaskConformance"]
