"""--set, --variant-option and --sweep: parsed, checked before any work, and part of a row's identity."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from attnbench import plugins
from attnbench.errors import AttnbenchError, UnknownNameError
from attnbench.runner.matrix import plan
from attnbench.runner.overrides import parse_assignment, parse_sweep, parse_variant_options
from attnbench.runner.pairing import Pairing, config_hash, execute, row_config


def test_values_take_the_type_of_the_key_they_replace():
    (p,) = plan(tasks=["listops"], variants=["sdpa"], profile="smoke", seeds=[0],
                overrides={"steps": 3.0, "lr": 1, "dropout": 0})
    assert dict(p.overrides) == {"steps": 3, "lr": 1.0}  # dropout=0 equals the profile's 0.0: no change
    assert isinstance(dict(p.overrides)["steps"], int) and isinstance(dict(p.overrides)["lr"], float)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"stepz": 3}, "has no setting 'stepz'; --set/--sweep accept: batch_size"),
    ({"steps": "many"}, "takes an integer"),
    ({"steps": 2.5}, "takes an integer"),
    ({"lr": "fast"}, "takes a number"),
])
def test_bad_overrides_are_errors_listing_what_is_valid(overrides, message):
    with pytest.raises(AttnbenchError, match=message):
        plan(tasks=["listops"], variants=["sdpa"], profile="smoke", seeds=[0], overrides=overrides)


def test_variant_options_are_checked_against_the_spec():
    opts = parse_variant_options(["local.window=8", "performer.num_features=16"])
    pairings = plan(tasks=["listops"], variants=["local", "performer", "sdpa"], profile="smoke", seeds=[0],
                    variant_options=opts)
    assert {p.variant: p.variant_options for p in pairings} == {
        "local": (("window", 8),), "performer": (("num_features", 16),), "sdpa": ()}
    with pytest.raises(UnknownNameError, match="has no option 'windw'; its options: window"):
        plan(tasks=["listops"], variants=["local"], profile="smoke", seeds=[0],
             variant_options=parse_variant_options(["local.windw=8"]))
    with pytest.raises(UnknownNameError, match="not among the selected variants"):
        plan(tasks=["listops"], variants=["sdpa"], profile="smoke", seeds=[0],
             variant_options=parse_variant_options(["local.window=8"]))


def test_parsers_reject_malformed_arguments():
    assert parse_assignment("lr=1e-3", "--set") == ("lr", 0.001)
    assert parse_sweep("length=256, 512") == ("length", [256, 512])
    for bad in ("steps", "=3"):
        with pytest.raises(AttnbenchError, match="KEY=VALUE"):
            parse_assignment(bad, "--set")
    with pytest.raises(AttnbenchError, match="KEY=V1,V2"):
        parse_sweep("length=")
    with pytest.raises(AttnbenchError, match="NAME.KEY=VALUE"):
        parse_variant_options(["window=8"])


def test_overrides_and_options_change_the_hash_only_when_they_change_the_setup():
    task = plugins.get_task("listops")
    plain = Pairing(task="listops", variant="local", profile="smoke", seed=0)
    assert config_hash(task, plain) == config_hash(task, Pairing(**{**plain.__dict__, "overrides": (("steps", 20),)}))
    hashes = {config_hash(task, plain),
              config_hash(task, Pairing(**{**plain.__dict__, "overrides": (("steps", 3),)})),
              config_hash(task, Pairing(**{**plain.__dict__, "variant_options": (("window", 8),)}))}
    assert len(hashes) == 3


def test_the_variant_module_is_built_with_the_option():
    pairing = Pairing(task="listops", variant="local", profile="smoke", seed=0,
                      overrides=(("steps", 2),), variant_options=(("window", 3),))
    row = execute(pairing, torch.device("cpu"))
    assert row.status == "ok", row.error
    assert row.config["steps"] == 2 and row.config["variant_options"] == {"window": 3}
    assert row_config(plugins.get_task("listops"), pairing) == dict(row.config)


@pytest.mark.slow
def test_cli_sweep_stores_one_row_per_value_with_its_configuration(tmp_path: Path):
    store = tmp_path / "r.sqlite"
    result = run_cli("run", "--tasks", "listops", "--variants", "sdpa", "--profile", "smoke", "--set", "steps=2",
                     "--sweep", "max_length=48,64", "--store", str(store), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = sqlite3.connect(store).execute("SELECT config_hash, config FROM results").fetchall()
    configs = sorted((json.loads(c)["max_length"], json.loads(c)["steps"]) for _, c in rows)
    assert configs == [(48, 2), (64, 2)] and len({h for h, _ in rows}) == 2
    bad = run_cli("run", "--tasks", "listops", "--variants", "sdpa", "--profile", "smoke", "--set", "nope=1",
                  "--store", str(store), cwd=tmp_path)
    assert bad.returncode != 0 and "has no setting 'nope'" in bad.stderr
