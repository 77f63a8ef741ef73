"""``attnbench bench``: the scaling math, the sweep's bookkeeping, and real runs of the command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from attnbench.bench import sweep as sweep_module
from attnbench.bench.fit import efficiency_length, loglog_slope, ratio
from attnbench.bench.measure import Job
from attnbench.bench.sweep import BASELINE, SweepPlan, run_sweep, why_not
from attnbench.bench.table import measurement_table, summary_table, to_markdown
from attnbench.bench.worker import Outcome, run_isolated
from attnbench.specs import AttentionSpec

LENGTHS = [1024, 2048, 4096, 8192, 16384]


# --- the math -----------------------------------------------------------------------------


def test_loglog_slope_recovers_the_exponent_of_a_power_law():
    for power in (0.5, 1.0, 2.0):
        fit = loglog_slope(LENGTHS, [3.0 * n**power for n in LENGTHS])
        assert fit is not None and fit.slope == pytest.approx(power)
        assert (fit.lo, fit.hi, fit.points) == (1024, 16384, 5)


def test_loglog_slope_fits_only_finished_points_inside_the_range():
    values = [1.0 * n for n in LENGTHS]
    values[-1] = None  # e.g. out of memory at 16k
    values[0] = 0.0  # nothing measurable
    fit = loglog_slope(LENGTHS, values)
    assert fit.slope == pytest.approx(1.0) and (fit.lo, fit.hi, fit.points) == (2048, 8192, 3)
    # a knee: quadratic below 4k, linear from 4k; the range picks the regime
    knee = [n**2 if n < 4096 else 4096 * n for n in LENGTHS]
    assert loglog_slope(LENGTHS, knee, lo=4096).slope == pytest.approx(1.0)
    assert loglog_slope(LENGTHS, knee, hi=4096).slope == pytest.approx(2.0)
    assert loglog_slope(LENGTHS, [None, None, 5.0, None, None]) is None
    assert loglog_slope([], []) is None


def test_efficiency_length_is_where_the_variant_stays_cheaper():
    base = [n**2 / 1e4 for n in LENGTHS]  # quadratic baseline
    linear = [n / 5 for n in LENGTHS]  # crosses between 1k and 2k: 204.8 > 104.9, 409.6 < 419.4
    assert efficiency_length(LENGTHS, linear, base) == 2048
    assert efficiency_length(LENGTHS, base, base) is None  # equal is not cheaper
    assert efficiency_length(LENGTHS, [2 * b for b in base], base) is None


def test_efficiency_length_ignores_a_noisy_early_crossing_and_counts_failures():
    base = [10.0, 20.0, 40.0, 80.0, 160.0]
    noisy = [9.0, 25.0, 30.0, 50.0, 90.0]  # wins at 1k, loses at 2k, wins from 4k on
    assert efficiency_length(LENGTHS, noisy, base) == 4096
    # the baseline ran out of memory at 16k: a variant that finished there wins there
    assert efficiency_length(LENGTHS, [20.0, 40.0, 80.0, 160.0, 320.0], base[:4] + [None]) == 16384
    # the variant failed at 16k where the baseline finished: it never stays ahead
    assert efficiency_length(LENGTHS, [1.0, 1.0, 1.0, 1.0, None], base) is None
    # neither finished at 16k: that length says nothing
    assert efficiency_length(LENGTHS, [1.0, 1.0, 1.0, 1.0, None], base[:4] + [None]) == 1024
    # lengths need not arrive sorted
    assert efficiency_length(LENGTHS[::-1], noisy[::-1], base[::-1]) == 4096


def test_ratio_is_undefined_without_both_figures():
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(None, 1.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None


# --- the sweep's bookkeeping, with a stand-in for the worker process ---------------------------


def _spec(name: str, *, causal: bool = True, available=None) -> AttentionSpec:
    return AttentionSpec(name=name, build=lambda config: torch.nn.Identity(), summary=name,
                         complexity="O(L)", causal=causal, available=available)


def _fake_worker(costs: dict[str, dict[int, str | float]]):
    """run_isolated's stand-in: cost per (variant, L), or a failure status."""
    def run(job: Job, timeout: float) -> Outcome:
        cost = costs[job.variant][job.length]
        if isinstance(cost, str):
            return Outcome(status=cost, error=f"{cost} in test")
        return Outcome(status="ok", figures={"fwd_ms": cost, "peak_fwd_mb": cost * 2, "gflops_fwd": 1.0})
    return run


def test_sweep_records_failures_skips_longer_lengths_and_takes_ratios(monkeypatch):
    costs = {
        BASELINE: {1024: 10.0, 2048: 40.0, 4096: 160.0},
        "quick": {1024: 20.0, 2048: 30.0, 4096: 40.0},
        "fragile": {1024: 5.0, 2048: "oom", 4096: 1.0},
        "absent": {}, "acausal": {},
    }
    monkeypatch.setattr(sweep_module, "run_isolated", _fake_worker(costs))
    specs = [_spec(BASELINE), _spec("quick"), _spec("fragile"),
             _spec("absent", available=lambda device: "needs a GPU"), _spec("acausal", causal=False)]
    plan = SweepPlan(specs=specs, lengths=[1024, 2048, 4096], causal=True, backward=False)
    result = run_sweep(plan)
    cell = {(m.variant, m.length): m for m in result.measurements}
    assert cell[("quick", 2048)].ratios["fwd_ms"] == pytest.approx(0.75)
    assert cell[(BASELINE, 4096)].ratios["peak_fwd_mb"] == 1.0
    assert cell[("fragile", 2048)].status == "oom"
    assert cell[("fragile", 4096)].status == "skipped" and "oom at L=2048" in cell[("fragile", 4096)].error
    assert {cell[("absent", n)].status for n in plan.lengths} == {"unavailable"}
    assert cell[("acausal", 1024)].status == "unsupported"
    summary = {s.variant: s for s in result.summaries}
    assert summary["quick"].efficiency["fwd_ms"] == 2048
    assert summary["quick"].slopes["fwd_ms"].slope == pytest.approx(0.5)
    assert summary["fragile"].efficiency["fwd_ms"] is None  # it failed where sdpa finished
    assert summary["absent"].status == "unavailable" and summary["absent"].reason == "needs a GPU"
    md = to_markdown(measurement_table(result)) + to_markdown(summary_table(result))
    assert "unavailable: needs a GPU" in md and "| quick | O(L) | 0.50 |" in md


def test_keep_going_measures_past_a_failure(monkeypatch):
    costs = {BASELINE: {1: 1.0, 2: 2.0}, "fragile": {1: "timeout", 2: 3.0}}
    monkeypatch.setattr(sweep_module, "run_isolated", _fake_worker(costs))
    plan = SweepPlan(specs=[_spec(BASELINE), _spec("fragile")], lengths=[1, 2], keep_going=True)
    statuses = [m.status for m in run_sweep(plan).of("fragile")]
    assert statuses == ["timeout", "ok"]


def test_why_not_reports_the_variants_own_reason():
    plan = SweepPlan(specs=[], lengths=[1])
    assert why_not(_spec("x", available=lambda device: f"not on {device.type}"), plan) == (
        "unavailable", "not on cpu")
    assert why_not(_spec("x"), plan) is None


def test_a_worker_past_its_timeout_is_killed_and_recorded():
    job = Job(variant=BASELINE, length=64, batch=1, heads=1, head_dim=8, causal=False, dtype="float32",
              device="cpu", repeats=1, warmup=0, backward=False)
    outcome = run_isolated(job, timeout=0.2)  # a fresh interpreter cannot even import torch that fast
    assert outcome.status == "timeout" and "timed out after 0.2 s" in outcome.error
    assert outcome.wall_s < 10


# --- the command, for real ----------------------------------------------------------------------


def test_bench_cli_measures_writes_files_and_takes_ratios_to_sdpa(tmp_path: Path):
    out = tmp_path / "tmp"
    done = run_cli("bench", "--variants", "softmax", "--lengths", "64,128", "--repeats", "1", "--warmup", "0",
                   "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for suffix in ("json", "csv", "png", "md"):
        assert (out / f"bench.{suffix}").stat().st_size > 0
    data = json.loads((out / "bench.json").read_text())
    rows = {(m["variant"], m["length"]): m for m in data["measurements"]}
    assert set(rows) == {(v, n) for v in (BASELINE, "softmax") for n in (64, 128)}
    for n in (64, 128):
        base = rows[(BASELINE, n)]
        assert base["status"] == "ok", base
        for metric in ("fwd_ms", "fwdbwd_ms", "peak_fwd_mb", "peak_fwdbwd_mb", "gflops_fwd"):
            assert base[metric] > 0 and base[f"{metric}_vs_sdpa"] == pytest.approx(1.0), metric
        soft = rows[("softmax", n)]
        assert soft["status"] == "ok"
        assert soft["gflops_fwd_vs_sdpa"] == pytest.approx(1.0)  # same two matrix products
        assert soft["peak_fwd_mb"] > base["peak_fwd_mb"]  # softmax materialises the L×L scores
    assert "profiler" in data["meta"]["memory_method"]
    assert [s["variant"] for s in data["summary"]] == [BASELINE, "softmax"]
    with (out / "bench.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4 and float(table[0]["fwd_ms_vs_sdpa"]) == 1.0
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "slope" in done.stdout and "softmax" in done.stdout


def test_bench_cli_unknown_variant_exits_2_with_a_suggestion(tmp_path: Path):
    done = run_cli("bench", "--variants", "sofmax", "--lengths", "64", cwd=tmp_path)
    assert done.returncode == 2
    assert "did you mean 'softmax'" in done.stderr


def test_bench_cli_records_timeouts_and_goes_on(tmp_path: Path):
    out = tmp_path / "out"
    done = run_cli("bench", "--variants", "softmax", "--lengths", "64", "--timeout", "0.2", "--no-backward",
                   "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    measurements = json.loads((out / "bench.json").read_text())["measurements"]
    # sdpa timed out first; softmax was still measured (and timed out too)
    assert [(m["variant"], m["status"]) for m in measurements] == [(BASELINE, "timeout"), ("softmax", "timeout")]
    assert all("timed out after 0.2 s" in m["error"] for m in measurements)
    assert "timeout" in done.stdout


def test_a_length_that_does_not_fit_is_recorded_as_oom():
    job = Job(variant="softmax", length=8192, batch=1, heads=4, head_dim=8, causal=False, dtype="float32",
              device="cpu", repeats=1, warmup=0, backward=False, memory_limit="256")  # scores alone: 1 GiB
    outcome = run_isolated(job, timeout=60)
    assert outcome.status == "oom", outcome
    assert "during fwd" in outcome.error
