"""``attnbench bench --decode``: the decode benchmark through the CLI, its files, and how it records failures."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from attnbench import plugins
from attnbench.bench.decode import (
    DecodeMeasurement,
    DecodePlan,
    DecodeResult,
    _cells,
    add_ratios,
    read_json,
    summary_table,
)


def test_decode_bench_writes_every_figure_with_its_ratio_to_sdpa(tmp_path: Path):
    result = run_cli("bench", "--decode", "--variants", "linear,cosformer", "--lengths", "64,128",
                     "--batches", "1,2", "--decode-steps", "2", "--repeats", "1", "--warmup", "0",
                     "--heads", "2", "--head-dim", "8", "--threads", "1", "--out", str(tmp_path), "--name", "d")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "crossover C (B=1)" in result.stdout and "cosformer" in result.stdout
    for suffix in ("json", "csv", "md", "png"):
        assert (tmp_path / f"d.{suffix}").stat().st_size > 0, suffix
    payload = json.loads((tmp_path / "d.json").read_text())
    cells = {(m["variant"], m["batch"], m["context"]): m for m in payload["measurements"]}
    assert len(cells) == 3 * 2 * 2  # sdpa (always measured first), linear, cosformer
    for batch in (1, 2):
        sdpa_64, sdpa_128 = cells[("sdpa", batch, 64)], cells[("sdpa", batch, 128)]
        linear_64, linear_128 = cells[("linear", batch, 64)], cells[("linear", batch, 128)]
        assert sdpa_64["status"] == linear_128["status"] == "ok"
        assert sdpa_64["decode_ms_vs_sdpa"] == 1.0 and linear_64["decode_ms_vs_sdpa"] > 0
        # A KV cache of B·2·H·C·D float32 values; linear attention's (D, D) and (D, 1) sums per head.
        assert sdpa_64["state_bytes"] == batch * 2 * 2 * 64 * 8 * 4 and sdpa_128["state_bytes"] == 2 * sdpa_64["state_bytes"]
        assert linear_64["state_bytes"] == linear_128["state_bytes"] == batch * 2 * (8 * 8 + 8) * 4
        assert linear_64["decode_tok_s"] == batch / (linear_64["decode_ms"] / 1000)
        assert cells[("cosformer", batch, 64)]["status"] == "unsupported"
        assert "divides by M" in cells[("cosformer", batch, 64)]["error"]
    assert set(payload["crossover"]) == {"sdpa", "linear", "cosformer"}
    again = read_json(tmp_path / "d.json")  # the file reads back into the same tables
    assert {v: {str(b): c for b, c in per.items()} for v, per in again.crossover.items()} == payload["crossover"]
    assert summary_table(again).rows[0][:2] == ["sdpa", "O(L^2)"]
    markdown = (tmp_path / "d.md").read_text()
    assert "attnbench bench --decode --variants linear,cosformer" in markdown and "torch threads per worker: 1" in markdown


def test_a_worker_that_stops_early_keeps_its_figures_and_skips_the_rest():
    spec = plugins.get_attention("sdpa")
    figures = {"kv_heads": 4, "64": {"prefill_ms": 2.0, "prefill_ms_all": [2.0], "decode_ms": 0.5,
                                     "decode_ms_all": [0.5], "state_bytes": 1024}}
    cells = _cells(spec, 1, [64, 128, 256], figures, "timeout", "timed out after 9 s")
    assert [c.status for c in cells] == ["ok", "timeout", "skipped"]
    assert cells[0].prefill_tok_s == 64 / 0.002 and cells[1].error == "timed out after 9 s"
    assert cells[2].error == "not tried after timeout at C=128"


def test_crossover_is_where_the_per_token_time_stays_below_sdpa():
    specs = [plugins.get_attention("sdpa"), plugins.get_attention("linear")]
    plan = DecodePlan(specs=specs, contexts=[1, 2, 4, 8], batches=[1])
    rows = []
    for variant, times in (("sdpa", [1.0, 2.0, 4.0, 8.0]), ("linear", [3.0, 1.5, 5.0, 3.0])):
        rows += [DecodeMeasurement(variant=variant, batch=1, context=c, status="ok", decode_ms=t, state_mb=0.1)
                 for c, t in zip(plan.contexts, times, strict=True)]
    result = DecodeResult(plan=plan, measurements=rows, meta={})
    add_ratios(result)
    assert result.crossover["linear"][1] == 8  # below at C=2, above again at 4: only from 8 on does it stay below
    assert result.crossover["sdpa"][1] is None
    assert summary_table(result).rows[1][-1] == "8"


def test_bad_batches_are_one_line():
    result = run_cli("bench", "--decode", "--batches", "0")
    assert result.returncode == 2 and "must be positive" in result.stderr
