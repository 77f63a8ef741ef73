"""The synthetic probes (mqar, induction-heads, selective-copy, passkey) through the public API and the CLI:
their generators, length extrapolation (cells a model cannot reach are left out with the reason),
the state-size figure, and --data-dir refused."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from attnbench_plugins.tasks.induction_heads import data as induction
from attnbench_plugins.tasks.mqar import data as mqar
from attnbench_plugins.tasks.passkey import data as passkey
from attnbench_plugins.tasks.selective_copy import data as selective

from attnbench import plugins
from attnbench.nn.causal_lm import CausalLM
from attnbench.runner import Pairing, execute
from attnbench.training.next_token import IGNORE
from attnbench.training.state_size import state_figures

CPU = torch.device("cpu")
PROBES = ("mqar", "induction-heads", "selective-copy", "passkey")


def test_the_probes_and_the_language_model_are_registered_in_their_domains():
    tasks = {t.name: t for t in plugins.load().tasks}
    assert {tasks[name].domain for name in PROBES} == {"synthetic"}
    assert tasks["language-modeling"].domain == "nlp"
    assert not tasks["language-modeling"].metric.higher_is_better


def test_mqar_follows_zoology_keys_values_and_one_query_per_key():
    length, kv, vocab = 64, 4, 256
    split = mqar.multiquery_ar(300, length, kv, vocab, 0.01, seed=3)
    assert split.inputs.shape == (300, length)
    keys, values = split.inputs[:, 0 : 2 * kv : 2], split.inputs[:, 1 : 2 * kv : 2]
    assert bool(((keys >= 1) & (keys < vocab // 2)).all()) and bool(((values >= vocab // 2) & (values < vocab)).all())
    assert all(len(set(row.tolist())) == kv for row in keys) and all(len(set(row.tolist())) == kv for row in values)
    gaps = []
    for n in range(300):
        where = (split.targets[n] != IGNORE).nonzero().flatten()
        assert len(where) == kv and bool((where >= 2 * kv).all()) and bool(((where - 2 * kv) % 2 == 0).all())
        asked = split.inputs[n, where].tolist()
        assert sorted(asked) == sorted(keys[n].tolist())  # each key queried exactly once
        answer = dict(zip(keys[n].tolist(), values[n].tolist(), strict=True))
        assert split.targets[n, where].tolist() == [answer[k] for k in asked]
        gaps += ((where - 2 * kv) // 2).tolist()
    space = (length - 2 * kv) // 2
    assert sum(gaps) / len(gaps) < space / 3  # the power law (a = 0.01) favours early queries
    again = mqar.multiquery_ar(300, length, kv, vocab, 0.01, seed=3)
    assert torch.equal(again.inputs, split.inputs) and torch.equal(again.targets, split.targets)
    with pytest.raises(ValueError, match="cannot hold 20 key-value pairs"):
        mqar.multiquery_ar(2, length, 20, vocab, 0.01, seed=0)


def test_induction_heads_asks_for_the_token_after_the_triggers_first_occurrence():
    vocab = 12
    split = induction.induction_head(200, 40, vocab, seed=1)
    trigger = vocab - 1
    for row, target in zip(split.inputs, split.targets, strict=True):
        places = (row == trigger).nonzero().flatten().tolist()
        assert len(places) == 2 and places[1] == 39
        assert (target != IGNORE).sum() == 1 and int(target[-1]) == int(row[places[0] + 1])


def test_selective_copy_targets_are_the_scattered_tokens_in_order():
    split = selective.selective_copy(100, 48, 6, 10, seed=2)
    for row, target in zip(split.inputs, split.targets, strict=True):
        context = row[:42]
        wanted = context[context >= selective.FIRST_DATA]
        assert bool((row[42:] == selective.MARKER).all()) and torch.equal(target[42:], wanted)
        assert bool((target[:42] == IGNORE).all())


def test_passkey_hides_the_number_that_the_targets_ask_for():
    for length in (128, 512):
        split = passkey.passkey(20, length, 5, seed=4)
        assert split.inputs.shape == (20, length)
        for row, target in zip(split.inputs, split.targets, strict=True):
            text = bytes(row.tolist()).decode("ascii")
            key = text.split("The pass key is ")[1][:5]
            assert key.isdigit() and text.endswith("What is the pass key? The pass key is " + key)
            assert bytes(target[target != IGNORE].tolist()).decode() == key


def _smoke(task: str, tmp_path: Path, **overrides):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    pairing = Pairing(task=task, variant="sdpa", profile="smoke", seed=0, overrides=tuple(sorted(overrides.items())))
    row = execute(pairing, CPU, workdir=work)
    assert row.status == "ok", row.error
    return row, json.loads(Path(row.artifacts["extrapolation"]).read_text())


def test_a_probe_reports_its_metric_at_three_lengths_with_baselines_and_state_size(tmp_path):
    row, record = _smoke("mqar", tmp_path)
    m = row.metrics
    for key in ("accuracy", "accuracy@2x", "accuracy@4x", "chance", "context_baseline"):
        assert 0.0 <= m[key] <= 1.0, (key, m)
    assert record["lengths"] == {"1x": 32, "2x": 64, "4x": 128} and not record["not_evaluated"]
    assert m["state_bytes"] == 2 * 32 * 32 * 4  # smoke: one layer, width 32, one head: a float32 KV cache
    assert m["mixer_params"] > 0


def test_learned_positions_leave_the_longer_cells_out_with_the_reason(tmp_path):
    row, record = _smoke("induction-heads", tmp_path, positions="learned")
    assert "accuracy" in row.metrics and "accuracy@2x" not in row.metrics and "accuracy@4x" not in row.metrics
    assert set(record["not_evaluated"]) == {"2x", "4x"}
    assert "learned absolute positions" in record["not_evaluated"]["2x"]


def test_a_variant_built_for_max_len_cannot_run_longer_and_says_why():
    spec = dataclasses.replace(plugins.get_attention("sdpa"), name="fixed-length", needs_max_len=True)
    model = CausalLM(spec, vocab_size=16, dim=16, depth=1, heads=1, max_len=8)
    limit, reason = model.length_limit()
    assert limit == 8 and "'fixed-length' needs max_len" in reason
    model(torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="sequence length 16 exceeds 8"):
        model(torch.zeros(2, 16, dtype=torch.long))


def _state(variant: str, length: int, **options) -> float:
    model = CausalLM(plugins.get_attention(variant), vocab_size=16, dim=32, depth=2, heads=2, max_len=length,
                     options=options)
    return state_figures(model.attention_layers(), length, CPU)["state_bytes"]


def test_state_size_grows_for_a_cache_is_bounded_for_a_window_and_constant_for_a_recurrent_state():
    assert _state("sdpa", 64) == 2 * (2 * 64 * 2 * 16 * 4)  # two layers of a float32 KV cache
    assert _state("sdpa", 128) == 2 * _state("sdpa", 64)
    assert _state("local", 128, window=8) == _state("local", 64, window=8) < _state("sdpa", 64)
    assert _state("linear", 256) == _state("linear", 32) < _state("sdpa", 256)
    assert _state("retention", 256) == _state("retention", 32)


def test_the_cli_refuses_a_data_dir_for_a_generated_probe_in_one_line(tmp_path):
    # (every probe's refusal is checked in-process by tests/test_bad_input.py)
    proc = subprocess.run(
        [sys.executable, "-m", "attnbench", "run", "--tasks", "mqar", "--variants", "sdpa", "--profile", "smoke",
         "--data-dir", str(tmp_path), "--store", str(tmp_path / "r.sqlite")],
        capture_output=True, text=True, timeout=600,
    )
    out = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "generates its data" in out and "Traceback" not in out, out


@pytest.mark.parametrize("positions", ["none", "shift", "sinusoidal"])
def test_positions_other_than_a_learned_table_run_at_any_length(positions):
    model = CausalLM(plugins.get_attention("sdpa"), vocab_size=16, dim=16, depth=1, heads=1, max_len=8,
                     positions=positions)
    assert model.length_limit() is None
    assert model(torch.zeros(2, 32, dtype=torch.long)).shape == (2, 32, 16)
