"""The report a reader sees: an HTML page with tables and plots, JSON and CSV for machines,
and tables that survive a pipe."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short ListOps pairings (softmax returns attention weights, sdpa does not)."""
    path = tmp_path_factory.mktemp("report") / "results.sqlite"
    ran = run_cli("run", "--tasks", "listops", "--variants", "sdpa,softmax", "--profile", "smoke",
                  "--set", "steps=3", "--store", str(path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return path


def test_html_report_is_one_self_contained_page_with_tables_and_plots(store: Path, tmp_path: Path):
    result = run_cli("report", "--store", str(store), "--out", str(tmp_path / "md"), "--html", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "report.html").read_text()
    assert "<h2>overall" in page and "<h2>listops</h2>" in page and "step peak MB" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3  # quality vs time, quality vs memory, training loss
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert 'alt="listops training loss"' in page


def test_json_and_csv_reports_carry_ranks_and_every_row(store: Path):
    result = run_cli("report", "--store", str(store), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # nothing but JSON on stdout
    (table,) = data["tasks"]
    assert {e["variant"] for e in table["entries"]} == {"sdpa", "softmax"}
    assert all(e["rank"] >= 1 and "step_peak_mb" in e["cost"] for e in table["entries"])
    sdpa = next(e for e in table["entries"] if e["variant"] == "sdpa")
    assert sdpa["cost_ratio_to_sdpa"]["train_s"] == pytest.approx(1.0)
    rows = list(csv.DictReader(io.StringIO(run_cli("report", "--store", str(store), "--format", "csv").stdout)))
    assert {r["variant"] for r in rows} == {"sdpa", "softmax"} and all(r["task"] == "listops" for r in rows)


def test_piped_tables_keep_whole_names_and_machine_formats_parse():
    piped = run_cli("list", "attention", env={"COLUMNS": "80"})
    lines = [line for line in piped.stdout.splitlines() if "sdpa-efficient" in line]
    assert lines and "O(L^2)" in lines[0]  # one line per variant, not folded at 80 columns
    listed = json.loads(run_cli("list", "attention", "--format", "json").stdout)
    local = next(v for v in listed if v["name"] == "local")
    assert local["causal"] is True and "window=64" in local["options"]
    settings = list(csv.DictReader(io.StringIO(run_cli("list", "--settings", "smoke", "--format", "csv").stdout)))
    assert {"task": "listops", "setting": "steps", "smoke": "20"} in settings
