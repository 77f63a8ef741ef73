"""The report's metric-versus-test-length section for the probes (trained at L, scored at L, 2L, 4L):
the terminal table after the task's own, the --out files, the JSON and the HTML section, from
hand-made stores written with attnbench.store, and once end to end from a real smoke run."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import statistics
from pathlib import Path

import pytest
from conftest import run_cli
from test_terminal_output import in_terminal

from attnbench import ResultRow
from attnbench.store import Store

REASON = "learned absolute positions exist only for the first 64 positions"
#: Per seed: accuracy at 1×, 2×, 4× (sdpa), and the figures of the variant whose 4× was not evaluated.
SDPA = [(0.99, 0.95, 0.90), (0.97, 0.93, 0.80), (0.98, 0.91, 0.85)]
LEARNED = [(0.90, 0.60), (0.88, 0.50), (0.86, 0.55)]


def _row(variant: str, seed: int, metrics: dict, status: str = "ok", **kw) -> ResultRow:
    return ResultRow(task="mqar", variant=variant, profile="quick", seed=seed, environment="cpu | test",
                     config_hash="h", status=status, metrics=metrics, finished_at=float(seed),
                     config={"length": 64, "steps": 10}, efficiency={"params": 1000.0, "train_s": 10.0 + seed}, **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mqar over 3 seeds: sdpa at every length; learned without 4× (its artifact says why); nofile
    without 4× and its artifact gone; s4d failed on every seed."""
    root = tmp_path_factory.mktemp("extrapolation")
    path = root / "results.sqlite"
    with Store(path) as s:
        for seed, ((a, b, c), (la, lb)) in enumerate(zip(SDPA, LEARNED, strict=True)):
            s.write(_row("sdpa", seed, {"accuracy": a, "accuracy@2x": b, "accuracy@4x": c, "context_baseline": 0.25}))
            artifact = root / f"learned-{seed}" / "extrapolation.json"
            artifact.parent.mkdir()
            artifact.write_text(json.dumps({
                "metric": "accuracy", "train_length": 64, "lengths": {"1x": 64, "2x": 128, "4x": 256},
                "values": {"1x": la, "2x": lb}, "not_evaluated": {"4x": REASON}}))
            s.write(_row("learned", seed, {"accuracy": la, "accuracy@2x": lb, "context_baseline": 0.25},
                         artifacts={"extrapolation": str(artifact)}))
            s.write(_row("nofile", seed, {"accuracy": la - 0.1, "accuracy@2x": lb - 0.1, "context_baseline": 0.25},
                         artifacts={"extrapolation": str(root / "removed" / "extrapolation.json")}))
            s.write(_row("s4d", seed, {}, status="failed", error="RuntimeError: boom"))
    return path


def _t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % Student-t half width, computed here independently of the leaderboard code."""
    from scipy.stats import t

    return statistics.fmean(values), float(t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("│").split("│")]


def test_the_table_gives_mean_and_interval_per_length_and_explains_every_cell_not_evaluated(store: Path, tmp_path: Path):
    result = run_cli("report", "--store", str(store), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    title = next(i for i, line in enumerate(lines) if "versus test length" in line)
    assert lines[title].startswith("mqar · accuracy ↑ versus test length · quick · cpu | test · config ")
    assert "trained at L = 64" in lines[title]
    # after the task's own table and before the overall matrix
    assert next(i for i, line in enumerate(lines) if line.startswith("mqar · quick")) < title
    assert title < next(i for i, line in enumerate(lines) if line.startswith("overall"))
    header = next(line for line in lines[title:] if "variant" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == ["variant", "seeds", "1× (64)", "2× (128)", "4× (256)"]
    body = {(c := _cells(line))[0]: c[1:] for line in lines[title:] if line.startswith("│")}
    m1, h1 = _t_interval([a for a, _, _ in SDPA])
    m4, h4 = _t_interval([c for _, _, c in SDPA])
    assert (round(m1, 3), round(h1, 3), round(m4, 2), round(h4, 2)) == (0.98, 0.025, 0.85, 0.12)
    assert body["sdpa"] == ["3", "0.980 ± 0.025", "0.930 ± 0.050", "0.85 ± 0.12"]
    assert body["learned"] == ["3", "0.880 ± 0.050", "0.55 ± 0.12", "n/e [1]"]
    assert body["nofile"][-1] == "n/e [2]"
    assert body["s4d"] == ["", "failed", "failed", "failed"]
    assert f"[1] n/e (not evaluated): {REASON}" in lines
    assert "[2] n/e (not evaluated): not evaluated at this length" in lines
    # the files: the table with its footnotes, and one CSV line per variant and length with raw numbers
    md = (tmp_path / "mqar-quick-extrapolation-cpu.md").read_text()
    assert "| variant | seeds | 1× (64) | 2× (128) | 4× (256) |" in md and f"[1] n/e (not evaluated): {REASON}" in md
    assert "| sdpa | 3 | 0.980 ± 0.025 | 0.930 ± 0.050 | 0.85 ± 0.12 |" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "mqar-quick-extrapolation-cpu.csv").read_text())))
    assert len(rows) == 4 * 3
    four = next(r for r in rows if r["variant"] == "sdpa" and r["factor"] == "4")
    assert four["length"] == "256" and float(four["mean"]) == pytest.approx(m4) and float(four["half_width"]) == pytest.approx(h4)
    assert next(r for r in rows if r["variant"] == "learned" and r["factor"] == "4")["not_evaluated"] == REASON
    assert next(r for r in rows if r["variant"] == "s4d" and r["factor"] == "1")["status"] == "failed"


def test_the_json_carries_raw_numbers_intervals_and_the_reasons(store: Path):
    result = run_cli("report", "--store", str(store), "--format", "json")
    assert result.returncode == 0, result.stderr
    (ex,) = json.loads(result.stdout)["extrapolation"]
    assert (ex["task"], ex["metric"], ex["higher_is_better"], ex["train_length"]) == ("mqar", "accuracy", True, 64)
    assert ex["lengths"] == {"1x": 64, "2x": 128, "4x": 256}
    two = ex["variants"]["learned"]["2x"]
    mean, half = _t_interval([b for _, b in LEARNED])
    assert two["mean"] == pytest.approx(mean) and two["half_width"] == pytest.approx(half) and two["n"] == 3
    assert two["low"] == pytest.approx(mean - half) and two["high"] == pytest.approx(mean + half)
    assert two["values"] == {"0": 0.60, "1": 0.50, "2": 0.55}
    assert ex["variants"]["learned"]["4x"] == {"not_evaluated": REASON}
    assert ex["variants"]["nofile"]["4x"] == {"not_evaluated": "not evaluated at this length"}
    assert ex["variants"]["s4d"]["1x"] == {"status": "failed"}
    assert ex["not_evaluated_reasons"] == [REASON, "not evaluated at this length"]


def test_the_html_report_has_the_section_with_its_table_reasons_and_plot(store: Path, tmp_path: Path):
    result = run_cli("report", "--store", str(store), "--out", str(tmp_path / "md"), "--html", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "report.html").read_text()
    assert page.count("<h2>mqar: accuracy versus test length</h2>") == 1
    section = page[page.index("<h2>mqar: accuracy versus test length</h2>"):]
    assert "<th>4× (256)</th>" in section and "<td>0.85 ± 0.12</td>" in section and "<td>n/e [1]</td>" in section
    assert f"<li>[1] n/e (not evaluated): {REASON}</li>" in section
    plot = re.search(r'alt="mqar accuracy vs test length" src="data:image/png;base64,([^"]+)"', section)
    assert plot and base64.b64decode(plot[1]).startswith(b"\x89PNG")
    assert page.index("<h2>mqar</h2>") < page.index("<h2>mqar: accuracy versus test length</h2>")


def test_the_terminal_table_fits_100_columns(store: Path, tmp_path: Path):
    shown = in_terminal("report", "--store", str(store), "--out", str(tmp_path))
    assert max(len(line) for line in shown.splitlines()) <= 100, shown
    assert re.search(r"│ sdpa\s+│ 3\s+│ 0\.980 ± 0\.025\s+│ 0\.930 ± 0\.050\s+│ 0\.85 ± 0\.12\s+│", shown), shown


def test_a_store_without_probe_rows_shows_no_extrapolation_section(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    with Store(path) as s:
        for seed in range(2):
            s.write(ResultRow(task="listops", variant="sdpa", profile="quick", seed=seed, environment="cpu | test",
                              config_hash="h", status="ok", metrics={"accuracy": 0.5 + seed / 10}, config={"steps": 10}))
    result = run_cli("report", "--store", str(path), "--out", str(tmp_path / "out"), "--html", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    assert "test length" not in result.stdout
    assert not list((tmp_path / "out").glob("*extrapolation*"))
    assert json.loads((tmp_path / "out" / "leaderboard.json").read_text())["extrapolation"] == []
    assert "versus test length" not in (tmp_path / "site" / "report.html").read_text()


def test_a_real_smoke_run_reports_its_lengths_and_why_learned_positions_stop_at_l(tmp_path: Path):
    store = tmp_path / "results.sqlite"
    ran = run_cli("run", "--tasks", "mqar", "--variants", "sdpa", "--profile", "smoke", "--set", "steps=2",
                  "--sweep", "positions=shift,learned", "--store", str(store))
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    result = run_cli("report", "--store", str(store), "--format", "json")
    assert result.returncode == 0, result.stderr
    found = {e["config_hash"]: e for e in json.loads(result.stdout)["extrapolation"]}
    assert len(found) == 2
    for ex in found.values():
        assert ex["lengths"] == {"1x": 32, "2x": 64, "4x": 128} and ex["train_length"] == 32
    learned = next(e for e in found.values() if "not_evaluated" in e["variants"]["sdpa"]["2x"])
    assert learned["variants"]["sdpa"]["4x"] == {
        "not_evaluated": "learned absolute positions exist only for the first 32 positions"}
    shift = next(e for e in found.values() if e is not learned)
    assert all("mean" in shift["variants"]["sdpa"][f] for f in ("1x", "2x", "4x"))
    shown = run_cli("report", "--store", str(store), "--out", str(tmp_path / "out")).stdout
    assert "[1] n/e (not evaluated): learned absolute positions exist only for the first 32 positions" in shown


def test_the_training_protocol_names_its_metrics_as_the_specs_say(tmp_path):
    """Rows carry ``accuracy``, ``accuracy@2x``, ``accuracy@4x``: the names the report reads (attnbench.specs)."""
    import types

    from torch import nn

    from attnbench.specs import EXTRAPOLATION_FACTORS, extrapolated_metric
    from attnbench.training.extrapolation import length_metrics

    artifacts = {}
    ctx = types.SimpleNamespace(workdir=tmp_path, meter=types.SimpleNamespace(artifact=artifacts.__setitem__))
    metrics = length_metrics(nn.Linear(2, 2), ctx, "accuracy", 64, lambda factor: 1 / factor)
    assert EXTRAPOLATION_FACTORS == (1, 2, 4)
    assert metrics == {"accuracy": 1.0, "accuracy@2x": 0.5, "accuracy@4x": 0.25}
    assert list(metrics) == [extrapolated_metric("accuracy", f) for f in EXTRAPOLATION_FACTORS]
    assert json.loads(artifacts["extrapolation"].read_text())["lengths"] == {"1x": 64, "2x": 128, "4x": 256}
