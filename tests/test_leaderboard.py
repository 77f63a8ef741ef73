"""Leaderboard tables: ranking, ties, seeds, separate environments, and the overall matrix."""

from __future__ import annotations

import pytest

from attnbench import Metric, ResultRow
from attnbench.leaderboard import overall_matrix, task_tables
from attnbench.leaderboard.formats import markdown, matrix_rows, task_rows
from attnbench.leaderboard.sweeps import sweep_rows, sweeps


def _row(task="t", variant="v", seed=0, env="cpu", status="ok", value=0.5, metrics=None, efficiency=None,
         **kw) -> ResultRow:
    metrics = metrics or ({"accuracy": value} if status == "ok" else {})
    efficiency = efficiency or {"params": 1000.0, "train_s": 2.0}
    return ResultRow(task=task, variant=variant, profile="quick", seed=seed, environment=env, config_hash="h",
                     status=status, metrics=metrics, efficiency=efficiency, **kw)


METRICS = {"t": Metric(name="accuracy"), "u": Metric(name="loss", higher_is_better=False)}


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
    metric = {"t": Metric(name="accuracy", baseline="majority"),
              "u": Metric(name="loss", higher_is_better=False, baseline="copy")}
    rows = [_row(task="t", variant="sdpa", metrics={"accuracy": 0.9, "majority": 0.5}),
            _row(task="t", variant="b", metrics={"accuracy": 0.7, "majority": 0.5}),
            _row(task="u", variant="sdpa", metrics={"loss": 1.0, "copy": 3.0}),
            _row(task="u", variant="b", metrics={"loss": 2.0, "copy": 3.0})]
    (matrix,) = overall_matrix(task_tables(rows, metric))
    # t: (0.7 − 0.5) / (0.9 − 0.5); u (lower is better): (2 − 3) / (1 − 3): both 0.5 for b
    assert matrix.normalized == pytest.approx({"sdpa": 1.0, "b": 0.5})
    assert matrix.mean_rank == {"sdpa": 1.0, "b": 2.0} and matrix.excluded == {}
    header, body = matrix_rows(matrix)
    assert header[2:4] == ["t (accuracy ↑)", "u (loss ↓)"]  # each column names its metric and direction
    assert header[-4:] == ["normalized score ↑", "mean rank ↓", "tasks", "fairness flags"] and len(body) == 2


def test_variants_within_the_seed_spread_share_a_rank():
    rows = [_row(variant="a", seed=s, value=v) for s, v in enumerate((0.80, 0.84))]  # mean 0.82, std 0.028
    rows += [_row(variant="b", seed=s, value=v) for s, v in enumerate((0.79, 0.81))]  # mean 0.80: within a's spread
    rows += [_row(variant="c", seed=s, value=v) for s, v in enumerate((0.50, 0.52))]  # clearly worse
    (table,) = task_tables(rows, METRICS)
    assert table.ranks() == {"a": 1, "b": 1, "c": 3}
    header, body = task_rows(table)
    assert body[0][header.index("accuracy ↑")] == "0.82 ± 0.25"  # t(0.975, 1) · 0.028 / √2: two seeds say little


def test_normalized_score_puts_the_baseline_at_0_and_sdpa_at_1_and_counts_missing_cells():
    metric = {"t": Metric(name="accuracy", baseline="majority"), "u": Metric(name="loss", higher_is_better=False)}
    rows = [_row(variant="sdpa", metrics={"accuracy": 0.6, "majority": 0.2}),
            _row(variant="weak", metrics={"accuracy": 0.4, "majority": 0.2}),
            _row(variant="none", status="unsupported", error="attention 'none' does not support causal"),
            _row(task="u", variant="sdpa", metrics={"loss": 1.0}), _row(task="u", variant="weak", metrics={"loss": 3.0}),
            _row(task="u", variant="none", metrics={"loss": 2.0})]
    (matrix,) = overall_matrix(task_tables(rows, metric))
    # t: (0.4 − 0.2) / (0.6 − 0.2) = 0.5 for weak; u has no baseline: left out, no min–max fallback.
    assert matrix.normalized == pytest.approx({"sdpa": 1.0, "weak": 0.5})
    assert matrix.excluded == {"u": "the task reports no baseline score"}
    assert matrix.covered == {"sdpa": 2, "weak": 2, "none": 1}
    assert matrix.cells["none"]["t"] == "unsupported"
    header, body = matrix_rows(matrix)
    tasks = header.index("tasks")
    assert {r[1]: (r[0], r[tasks]) for r in body} == {"sdpa": ("complete", "2/2"), "weak": ("complete", "2/2"),
                                                       "none": ("partial", "1/2")}


def test_cost_ratios_fairness_and_pareto_front():
    rows = [_row(variant="sdpa", value=0.8, efficiency={"params": 1000.0, "train_s": 10.0, "step_peak_mb": 4.0}),
            _row(variant="fast", value=0.7, efficiency={"params": 1050.0, "train_s": 5.0, "step_peak_mb": 2.0}),
            _row(variant="big", value=0.75, efficiency={"params": 1300.0, "train_s": 20.0, "step_peak_mb": 40.0})]
    (table,) = task_tables(rows, METRICS)
    entries = {e.variant: e for e in table.entries}
    assert table.ratios(entries["fast"]) == {"train_s": 0.5, "step_peak_mb": 0.5}
    assert table.fairness(entries["fast"]) == "" and table.fairness(entries["big"]) == "params 1.30×sdpa"
    assert table.pareto() == {"sdpa", "fast"}  # big is worse and slower than sdpa
    header, body = task_rows(table)
    line = dict(zip(header, body[[r[1] for r in body].index("big")], strict=True))
    assert line["memory ×sdpa"] == "10.00×" and line["pareto"] == "" and line["fairness"] == "params 1.30×sdpa"


def test_variant_options_rank_beside_the_same_task_setup():
    rows = [_row(variant="sdpa", value=0.8, config={"steps": 5}),
            _row(variant="local", value=0.7, config={"steps": 5, "variant_options": {"window": 8}})]
    (table,) = task_tables(rows, METRICS)
    assert [e.variant for e in table.entries] == ["sdpa", "local[window=8]"]


def test_a_sweep_over_one_key_tabulates_quality_and_cost_per_value():
    rows = [_row(variant=v, value=acc, config={"length": n, "steps": 5},
                 efficiency={"train_s": t, "step_peak_mb": m})
            for v, n, acc, t, m in [("sdpa", 256, 0.6, 10.0, 4.0), ("sdpa", 512, 0.62, 30.0, 8.0),
                                    ("linear", 256, 0.5, 8.0, 3.0), ("linear", 512, 0.52, 15.0, 6.0)]]
    rows.append(_row(variant="softmax", status="failed", error="out of memory", config={"length": 512, "steps": 5}))
    (sweep,) = sweeps(rows, METRICS)
    assert sweep.key == "length" and sweep.values == [256, 512]
    header, body = sweep_rows(sweep)
    assert header == ["variant", "length=256", "length=512"]
    table = {r[0]: r[1:] for r in body}
    assert table["linear"][1] == "0.52 · 15 s · 6 MB" and table["softmax"] == ["", "failed"]


def test_every_number_in_a_task_table_comes_from_a_stored_row():
    rows = [_row(variant="sdpa", seed=s, metrics={"accuracy": a, "f1": f}) for s, a, f in [(0, 0.61, 0.5), (1, 0.63, 0.52)]]
    (table,) = task_tables(rows, METRICS)
    header, body = task_rows(table)
    line = dict(zip(header, body[0], strict=True))
    assert line["accuracy ↑"] == "0.62 ± 0.13" and line["f1"] == "0.51 ± 0.13" and line["seeds"] == "2"
    assert line["params"] == "1k" and line["train s"] == "2"


def test_names_from_plugins_cannot_change_the_page_or_the_table():
    from attnbench.leaderboard.html import render

    hostile = "<script>alert(1)</script>| x |"
    rows = [_row(variant="sdpa", value=0.8), _row(variant=hostile, value=0.7, error="<img src=x onerror=alert(1)>")]
    tables = task_tables(rows, METRICS)
    page = render(tables, overall_matrix(tables), [], rows, "store.sqlite")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    header, body = task_rows(tables[0])
    md = markdown(header, body)
    line = next(line for line in md.splitlines() if "script" in line)
    assert line.count(" | ") == md.splitlines()[0].count(" | ")  # the name's pipes are escaped, columns intact


def test_environments_are_compared_only_on_request_and_then_shown_as_a_column():
    rows = [_row(variant="sdpa", env="cpu | torch 2.9", value=0.6), _row(variant="sdpa", env="cuda:H100 | torch 2.9", value=0.7)]
    assert len(task_tables(rows, METRICS)) == 2
    (table,) = task_tables(rows, METRICS, compare_environments=True)
    header, body = task_rows(table)
    assert header[:3] == ["rank", "variant", "environment"]
    assert [r[1:3] for r in body] == [["sdpa @ cuda:H100", "cuda:H100 | torch 2.9"], ["sdpa @ cpu", "cpu | torch 2.9"]]


def test_a_reason_is_kept_whole_and_a_traceback_keeps_its_exception_lines():
    from attnbench.leaderboard.tables import reason

    long = "attention 'x' does not support padding masks (it hashes buckets),\nwhich task 't' requires. " * 3
    assert reason(long) == " ".join(line.strip() for line in long.splitlines() if line.strip())  # never cut
    trace = ('Traceback (most recent call last):\n  File "a.py", line 1, in f\n    boom()\n'
             "ValueError: first line of the message\nsecond line of the message\n")
    assert reason(trace) == "ValueError: first line of the message second line of the message"
    rows = [_row(variant="x", status="unsupported", error=long), _row(variant="sdpa", value=0.5)]
    (matrix,) = overall_matrix(task_tables(rows, METRICS))
    header, body = matrix_rows(matrix)
    assert {r[1]: r[0] for r in body} == {"sdpa": "complete", "x": "none"}
