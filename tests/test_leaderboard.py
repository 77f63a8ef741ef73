"""Leaderboard tables: ranking, ties, seeds, separate environments, and the overall matrix."""

from __future__ import annotations

from attnbench import ResultRow
from attnbench.leaderboard import overall_matrix, task_tables
from attnbench.leaderboard.formats import markdown, matrix_rows, task_rows


def _row(task="t", variant="v", seed=0, env="cpu", status="ok", value=0.5, metrics=None, **kw) -> ResultRow:
    metrics = metrics or ({"accuracy": value} if status == "ok" else {})
    return ResultRow(task=task, variant=variant, profile="quick", seed=seed, environment=env, config_hash="h",
                     status=status, metrics=metrics, efficiency={"params": 1000.0, "train_s": 2.0}, **kw)


METRICS = {"t": ("accuracy", True), "u": ("loss", False)}


def test_ties_share_a_rank_and_failures_rank_last():
    rows = [_row(variant="a", value=0.9), _row(variant="b", value=0.9), _row(variant="c", value=0.5),
            _row(variant="d", status="failed", error="Traceback...\nRuntimeError: boom")]
    (table,) = task_tables(rows, METRICS)
    assert [e.variant for e in table.entries] == ["a", "b", "c", "d"]
    assert table.ranks() == {"a": 1, "b": 1, "c": 3}
    header, body = task_rows(table)
    assert [r[0] for r in body] == ["1", "1", "3", "—"]
    assert body[-1][-1] == "RuntimeError: boom"  # the last line of the traceback is the note
    assert "| rank | variant |" in markdown(header, body)


def test_seeds_are_aggregated_with_their_spread():
    rows = [_row(seed=0, value=0.4), _row(seed=1, value=0.6), _row(seed=2, status="timeout")]
    (table,) = task_tables(rows, METRICS)
    entry = table.entries[0]
    assert entry.seeds == 2 and abs(entry.metrics["accuracy"] - 0.5) < 1e-12
    assert entry.metric_std["accuracy"] > 0.1 and entry.note == "1 of 3 seeds not ok"


def test_environments_are_never_mixed_in_one_ranking():
    rows = [_row(variant="a", env="cpu", value=0.9), _row(variant="a", env="cuda:H100", value=0.1),
            _row(variant="b", env="cuda:H100", value=0.2)]
    tables = task_tables(rows, METRICS)
    assert sorted(t.environment for t in tables) == ["cpu", "cuda:H100"]
    assert len(overall_matrix(tables)) == 2


def test_overall_matrix_normalizes_per_task_respecting_direction():
    rows = [_row(task="t", variant="a", value=0.9), _row(task="t", variant="b", value=0.5),
            _row(task="u", variant="a", metrics={"loss": 2.0}), _row(task="u", variant="b", metrics={"loss": 1.0})]
    (matrix,) = overall_matrix(task_tables(rows, METRICS))
    # a is best on t, b is best on u (lower loss): both average 0.5 and rank 1.5
    assert matrix.normalized == {"a": 0.5, "b": 0.5}
    assert matrix.mean_rank == {"a": 1.5, "b": 1.5}
    header, body = matrix_rows(matrix)
    assert header[-2:] == ["normalized score ↑", "mean rank ↓"] and len(body) == 2
