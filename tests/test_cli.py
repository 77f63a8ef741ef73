"""The command line as a user meets it: help, listing, a run and its report, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import run_cli


@pytest.mark.parametrize("command", ["list", "plugins", "run", "report", "bench"])
def test_every_command_has_useful_help(command: str):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "usage: attnbench" in result.stdout and len(result.stdout) > 300


def test_top_level_help_lists_commands():
    result = run_cli("--help")
    for command in ("list", "plugins", "run", "report", "bench"):
        assert command in result.stdout


def test_list_shows_capabilities_and_complexity():
    result = run_cli("list", "attention")
    assert result.returncode == 0
    assert "softmax" in result.stdout and "O(L^2)" in result.stdout and "padding_mask" in result.stdout


def test_run_then_report_prints_quality_and_cost(tmp_path: Path):
    store = tmp_path / "results.sqlite"
    ran = run_cli("run", "--tasks", "listops", "--variants", "sdpa,linear", "--profile", "smoke", "--jobs", "2",
                  "--store", str(store))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.count(" ok listops") == 2, ran.stdout
    report = run_cli("report", "--store", str(store), "--out", str(tmp_path / "report"), "--wide")
    assert report.returncode == 0, report.stderr
    for column in ("accuracy ↑", "majority_baseline", "params", "FLOPs/ex", "train s", "infer ms/batch", "peak RSS MB"):
        assert column in report.stdout, column
    files = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert "overall.md" in files and "leaderboard.json" in files
    assert any(f.startswith("listops-smoke") and f.endswith(".csv") for f in files)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--variants", "sofmax"], "unknown attention 'sofmax' — did you mean 'softmax'"),
    (["run", "--tasks", "listop"], "unknown task 'listop' — did you mean 'listops'"),
    (["run", "--tasks", "listops", "--data-dir", "/no/such/dir"], "--data-dir /no/such/dir does not exist"),
    (["run", "--device", "tpu"], "unknown device 'tpu'"),
    (["report", "--store", "/no/such/store.sqlite"], "no results store at /no/such/store.sqlite"),
])
def test_bad_input_gets_one_clear_line(args: list[str], message: str, tmp_path: Path):
    result = run_cli(*args, "--store", str(tmp_path / "s.sqlite")) if args[0] == "run" else run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.sqlite").exists()  # nothing started


def test_unknown_profile_is_refused_by_argparse():
    result = run_cli("run", "--profile", "huge")
    assert result.returncode == 2 and "invalid choice: 'huge'" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_device_is_an_error_before_any_work(tmp_path: Path):
    result = run_cli("run", "--device", "cuda", "--store", str(tmp_path / "s.sqlite"))
    assert result.returncode == 2
    assert "CUDA is not available" in result.stderr and "--device cpu" in result.stderr
    assert not (tmp_path / "s.sqlite").exists()


def test_a_corrupt_data_file_stops_the_run_with_the_file_named(tmp_path: Path):
    data = tmp_path / "lra"
    data.mkdir()
    header = "Source\tTarget\n"
    (data / "basic_train.tsv").write_text(header + "( [MAX 2 9 ] )\t9\n" + "( [MIN 3 \n")  # truncated line
    (data / "basic_val.tsv").write_text(header + "( [MAX 2 9 ] )\t9\n")
    (data / "basic_test.tsv").write_text(header + "( [MAX 2 9 ] )\t9\n")
    store = tmp_path / "s.sqlite"
    result = run_cli("run", "--tasks", "listops", "--variants", "sdpa", "--profile", "smoke",
                     "--data-dir", str(data), "--store", str(store))
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "basic_train.tsv" in message and "line 3" in message, message
    assert "Traceback" not in result.stderr
