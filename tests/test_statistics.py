"""The numbers a reader cites: intervals over seeds, paired differences to sdpa, the rank rule,
the normalized score's exclusions, coverage groups, fairness against the Pareto front, and the
cross-task Friedman / Nemenyi test. Every store here is a real SQLite file written through the
public store API; the report is read back through the library and through the CLI."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from pathlib import Path

import pytest
from conftest import run_cli

from attnbench import Metric, ResultRow
from attnbench.leaderboard import overall_matrix, task_tables
from attnbench.leaderboard.formats import matrix_notes, matrix_rows, task_rows
from attnbench.leaderboard.stats import friedman, nemenyi_cd
from attnbench.store import Store

T_975_2 = 4.302652729911275  # Student t, 95 % two-sided, 2 degrees of freedom
ACC = Metric(name="accuracy", baseline="majority_baseline")


def _row(task: str, variant: str, seed: int, score: float | None, *, baseline: float = 0.1, status: str = "ok",
         params: float = 1000.0, train_s: float = 10.0, error: str = "") -> ResultRow:
    metrics = {"accuracy": score, "majority_baseline": baseline} if status == "ok" else {}
    return ResultRow(task=task, variant=variant, profile="quick", seed=seed, environment="cpu | test", config_hash="h",
                     status=status, metrics=metrics, efficiency={"params": params, "train_s": train_s}, error=error,
                     config={"steps": 10}, finished_at=float(seed))


def _store(tmp_path: Path, rows: list[ResultRow]) -> Path:
    path = tmp_path / "results.sqlite"
    with Store(path) as store:
        for r in rows:
            store.write(r)
    return path


def _tables(path: Path, metric: Metric = ACC):
    with Store(path) as store:
        rows = store.rows()
    return task_tables(rows, {r.task: metric for r in rows})


SDPA = (0.70, 0.74, 0.66)
#: better than sdpa by 0.020 ± 0.005 on every seed: the separate intervals overlap, the paired one does not
CLOSE = tuple(s + d for s, d in zip(SDPA, (0.020, 0.025, 0.015), strict=True))


def test_interval_and_paired_difference_arithmetic(tmp_path: Path):
    path = _store(tmp_path, [_row("t", "sdpa", s, v) for s, v in enumerate(SDPA)]
                  + [_row("t", "close", s, v) for s, v in enumerate(CLOSE)])
    (table,) = _tables(path)
    entries = {e.variant: e for e in table.entries}
    sdpa = table.interval(entries["sdpa"])
    assert sdpa.mean == pytest.approx(0.70) and sdpa.n == 3
    assert sdpa.half_width == pytest.approx(T_975_2 * 0.04 / math.sqrt(3))  # std of (0.70, 0.74, 0.66) is 0.04
    gap = table.difference_to_reference(entries["close"])
    assert gap.mean == pytest.approx(0.020) and gap.n == 3
    assert gap.half_width == pytest.approx(T_975_2 * 0.005 / math.sqrt(3))
    # The unpaired intervals overlap, the paired difference excludes 0: the rank rule sees it.
    assert table.interval(entries["close"]).low < sdpa.high and gap.excludes_zero()
    assert table.ranks() == {"close": 1, "sdpa": 2}
    header, body = task_rows(table)
    line = dict(zip(header, body[0], strict=True))
    assert line["variant"] == "close" and line["accuracy ↑"] == "0.72 ± 0.11" and line["Δ sdpa"] == "+0.020 ± 0.012"


def test_the_tie_rule_shares_rank_1_among_variants_not_significantly_below_the_best(tmp_path: Path):
    noisy = (0.75, 0.69, 0.71)  # mean 0.717, above sdpa's 0.70 but its paired difference to close straddles 0
    worse = tuple(v - 0.2 for v in SDPA)
    rows = [_row("t", "sdpa", s, v) for s, v in enumerate(SDPA)] + [_row("t", "close", s, v) for s, v in enumerate(CLOSE)]
    rows += [_row("t", "noisy", s, v) for s, v in enumerate(noisy)] + [_row("t", "worse", s, v) for s, v in enumerate(worse)]
    (table,) = _tables(_store(tmp_path, rows))
    ranks = table.ranks()
    assert ranks["close"] == 1 and ranks["noisy"] == 1  # noisy is not significantly below the best
    assert ranks["sdpa"] == 2  # close is significantly better, noisy is not
    assert ranks["worse"] == 4  # below all three
    assert "ranks are not reliable" not in table.title


def test_a_one_seed_table_says_its_ranks_are_not_reliable(tmp_path: Path):
    (table,) = _tables(_store(tmp_path, [_row("t", "sdpa", 0, 0.7), _row("t", "a", 0, 0.7), _row("t", "b", 0, 0.6)]))
    assert table.title.endswith("1 seed: ranks are not reliable")
    assert table.ranks() == {"sdpa": 1, "a": 1, "b": 3}  # with one seed only equal scores tie
    header, body = task_rows(table)
    assert dict(zip(header, body[-1], strict=True))["Δ sdpa"] == "-0.1"  # a difference, without an interval


def test_digits_follow_the_width_of_the_interval(tmp_path: Path):
    rows = [_row("t", "sdpa", s, v) for s, v in enumerate((0.70001, 0.70003, 0.70002))]
    rows += [_row("t", "wide", s, v) for s, v in enumerate((0.2, 0.6, 0.9))]
    (table,) = _tables(_store(tmp_path, rows))
    header, body = task_rows(table)
    cells = {r[1]: r[header.index("accuracy ↑")] for r in body}
    assert cells == {"sdpa": "0.700020 ± 0.000025", "wide": "0.57 ± 0.87"}


def test_normalized_score_excludes_tasks_where_sdpa_does_not_beat_its_baseline(tmp_path: Path):
    # Real task names, so that the CLI finds each task's metric and baseline. lra-pathfinder: sdpa at the
    # baseline (as at quick); listops: under it (as at smoke); lra-text: well above it.
    rows = [
        _row("lra-pathfinder", "sdpa", 0, 0.505, baseline=0.505), _row("lra-pathfinder", "linformer", 0, 0.5525, baseline=0.505),
        _row("listops", "sdpa", 0, 0.180, baseline=0.234), _row("listops", "linear", 0, 0.200, baseline=0.234),
        _row("lra-text", "sdpa", 0, 0.60, baseline=0.20), _row("lra-text", "linear", 0, 0.40, baseline=0.20),
        _row("lra-text", "linformer", 0, 0.50, baseline=0.20),
    ]
    # text-classification: sdpa beats the baseline by 0.02, less than its 95 % interval over three seeds
    rows += [_row("text-classification", "sdpa", s, v, baseline=0.50) for s, v in enumerate((0.47, 0.52, 0.57))]
    rows += [_row("text-classification", "linear", s, 0.6, baseline=0.50) for s in range(3)]
    path = _store(tmp_path, rows)
    (matrix,) = overall_matrix(_tables(path))
    assert set(matrix.excluded) == {"lra-pathfinder", "listops", "text-classification"}
    assert matrix.excluded["lra-pathfinder"] == "sdpa 0.505 (1 seed) does not beat the baseline majority_baseline 0.505"
    assert "by more than its 95 % interval" in matrix.excluded["text-classification"]
    # no min–max fallback: linformer is not 1.0 on lra-pathfinder, linear is not first from listops
    assert matrix.normalized == pytest.approx({"sdpa": 1.0, "linear": 0.5, "linformer": 0.75})
    assert any(n.startswith("normalized score excludes listops: sdpa 0.18 (1 seed)") for n in matrix_notes(matrix))
    # the exclusion reaches every format: the json (library and CLI), and the csv's normalized column
    data = json.loads(run_cli("report", "--store", str(path), "--format", "json").stdout)
    at = next(t for t in data["tasks"] if t["task"] == "lra-pathfinder")
    assert at["normalized_excluded"] == matrix.excluded["lra-pathfinder"] and data["overall"][0]["excluded"] == matrix.excluded
    rows_csv = list(csv.DictReader(io.StringIO(run_cli("report", "--store", str(path), "--format", "csv").stdout)))
    assert {r["normalized"] for r in rows_csv if r["task"] == "listops"} == {"excluded: " + matrix.excluded["listops"]}


def test_partial_coverage_is_ranked_in_its_own_group_and_friedman_runs_on_the_complete_one(tmp_path: Path):
    scores = {"t1": {"sdpa": 0.7, "a": 0.8, "b": 0.6, "c": 0.5, "p": 0.9},
              "t2": {"sdpa": 0.6, "a": 0.7, "b": 0.5, "c": 0.4},
              "t3": {"sdpa": 0.5, "a": 0.65, "b": 0.45, "c": 0.3, "p": 0.95}}
    rows = [_row(t, v, 0, x) for t, by in scores.items() for v, x in by.items()]
    rows.append(_row("t2", "p", 0, None, status="unsupported", error="attention 'p' does not support padding_mask, "
                     "which task 't2' requires"))
    (matrix,) = overall_matrix(_tables(_store(tmp_path, rows)))
    assert matrix.complete == ["a", "b", "c", "sdpa"] and matrix.covered["p"] == 2
    assert matrix.friedman.average_rank == {"a": 1.0, "sdpa": 2.0, "b": 3.0, "c": 4.0}
    assert matrix.mean_rank["p"] == 1.0  # first on both tasks it ran, but not ranked among the complete group
    assert matrix.order() == ["a", "sdpa", "b", "c", "p"]
    header, body = matrix_rows(matrix)
    assert [(r[0], r[1], r[header.index("tasks")]) for r in body][-1] == ("partial", "p", "2/3")
    assert body[-1][header.index("t2 (accuracy ↑)")] == "unsupported"
    assert "partial coverage, ranked in their own group: p" in matrix_notes(matrix)
    # a perfectly consistent order over 3 tasks: χ² = 9, p ≈ 0.029, Nemenyi CD for k = 4, N = 3 is 2.71
    assert matrix.friedman.statistic == pytest.approx(9.0) and matrix.friedman.p_value == pytest.approx(0.0293, abs=1e-4)
    assert matrix.friedman.critical_difference == pytest.approx(2.708, abs=1e-3)
    assert matrix.friedman.cliques() == [["a", "sdpa", "b"], ["sdpa", "b", "c"]]


def test_nemenyi_critical_difference_matches_demsar():
    # Demšar (2006) §3.2.4: four classifiers over 14 data sets, q_0.05 = 2.569, CD = 1.25
    assert nemenyi_cd(4, 14) == pytest.approx(1.253, abs=1e-3)
    # ties share the average rank, and lower-is-better tasks are oriented before ranking
    result = friedman({"u": {"a": 1.0, "b": 1.0, "c": 3.0}, "v": {"a": 0.9, "b": 0.5, "c": 0.1}},
                      {"u": False, "v": True})
    assert result.average_rank == {"a": 1.25, "b": 1.75, "c": 3.0}


def test_a_flagged_row_is_never_on_the_pareto_front_and_the_matrix_shows_its_flag(tmp_path: Path):
    rows = [_row("t", "sdpa", 0, 0.70, train_s=10.0), _row("t", "fast", 0, 0.65, train_s=5.0),
            _row("t", "big", 0, 0.90, train_s=4.0, params=1490.0),  # better and faster than all, 1.49× the params
            _row("t", "slow", 0, 0.60, train_s=20.0)]
    path = _store(tmp_path, rows)
    (table,) = _tables(path)
    assert table.fairness(next(e for e in table.entries if e.variant == "big")) == "params 1.49×sdpa"
    assert table.pareto() == {"sdpa", "fast"}  # big would have dominated both
    (matrix,) = overall_matrix([table])
    header, body = matrix_rows(matrix)
    big = next(r for r in body if r[1] == "big")
    assert big[header.index("t (accuracy ↑)")] == "0.9 ⚑" and big[-1] == "t: params 1.49×sdpa"
    data = json.loads(run_cli("report", "--store", str(path), "--format", "json").stdout)
    entries = {e["variant"]: e for e in data["tasks"][0]["entries"]}
    assert entries["big"]["pareto"] is False and entries["big"]["fairness"] == "params 1.49×sdpa"
    assert data["overall"][0]["flags"] == {"big": {"t": "params 1.49×sdpa"}}


def test_json_md_and_csv_carry_the_interval_and_the_paired_difference(tmp_path: Path):
    path = _store(tmp_path, [_row("t", "sdpa", s, v) for s, v in enumerate(SDPA)]
                  + [_row("t", "close", s, v) for s, v in enumerate(CLOSE)])
    data = json.loads(run_cli("report", "--store", str(path), "--format", "json").stdout)
    (table,) = data["tasks"]
    close = next(e for e in table["entries"] if e["variant"] == "close")
    assert close["interval"]["n"] == 3 and close["interval"]["low"] < close["interval"]["mean"] < close["interval"]["high"]
    assert close["difference_to_sdpa"]["mean"] == pytest.approx(0.02)
    assert close["difference_to_sdpa"]["half_width"] == pytest.approx(T_975_2 * 0.005 / math.sqrt(3))
    assert close["per_seed"] == {"0": pytest.approx(0.72), "1": pytest.approx(0.765), "2": pytest.approx(0.675)}
    assert table["ranks_reliable"] is True and "Ranks: 1 + the number of variants significantly better" in data["rules"]
    out = tmp_path / "report"
    assert run_cli("report", "--store", str(path), "--out", str(out)).returncode == 0
    (md,) = out.glob("t-quick-*.md")
    assert "| +0.020 ± 0.012 |" in md.read_text() and "Δ sdpa" in md.read_text()
    (csv_file,) = out.glob("t-quick-*.csv")
    line = next(r for r in csv.DictReader(io.StringIO(csv_file.read_text())) if r["variant"] == "close")
    assert line["accuracy ↑"] == "0.72 ± 0.11" and line["Δ sdpa"] == "+0.020 ± 0.012"


def test_the_html_report_shows_intervals_the_critical_difference_diagram_and_the_exclusions(tmp_path: Path):
    offsets = {"sdpa": 0.0, "a": 0.05, "b": -0.05, "c": -0.1}
    rows = [_row(task, v, seed, 0.6 + off + 0.01 * seed, baseline=base)
            for task, base in (("listops", 0.2), ("lra-text", 0.2), ("text-classification", 0.9))
            for v, off in offsets.items() for seed in range(2)]
    path = _store(tmp_path, rows)
    result = run_cli("report", "--store", str(path), "--out", str(tmp_path / "md"), "--html", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "report.html").read_text()
    (diagram,) = re.findall(r'alt="critical difference diagram, [^"]+" src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(diagram).startswith(b"\x89PNG")
    assert "Friedman over 3 tasks × 4 variants (the complete group)" in page
    assert "normalized score excludes text-classification: sdpa 0.605 ± 0.064 does not beat the baseline" in page
    assert "<th>Δ sdpa</th>" in page and "<td>0.605 ± 0.064</td>" in page
    assert "listops (accuracy ↑)" in page  # matrix columns name metric and direction
    overall = (tmp_path / "md" / "overall.md").read_text()
    assert "- Nemenyi" not in overall and "- Friedman over 3 tasks" in overall
