"""The measurement scripts under benchmarks/ run end to end at smoke size and print what they promise.

They are timed by their users, never here: these tests check the plumbing (the task's own
``run()``, the sweep through the CLI, the best-of-lr pick read back from a real store), not speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)


def test_pairing_cost_predicts_each_variants_pairing_as_a_multiple_of_sdpa(tmp_path):
    done = script("pairing_cost.py", "--task", "mqar", "--variants", "linear", "--profile", "smoke", "--steps", "2",
                  "--repeats", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("task mqar, profile smoke (20 steps; timed with 2)")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"sdpa", "linear"}
    assert rows["sdpa"][2] == "1.00" and rows["sdpa"][5] == "1.00"  # sdpa against itself
    assert float(rows["linear"][2]) > 0 and float(rows["linear"][4]) > 0


def test_lr_sensitivity_ranks_at_the_fixed_rate_and_at_each_variants_best_rate(tmp_path):
    store, out, reference = tmp_path / "grid.sqlite", tmp_path / "lr.md", tmp_path / "reference.sqlite"
    fixed = subprocess.run([sys.executable, "-m", "attnbench", "run", "--profile", "smoke", "--tasks", "listops",
                            "--variants", "sdpa,linear", "--store", str(reference)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600, check=False)
    assert fixed.returncode == 0, fixed.stderr
    done = script("lr_sensitivity.py", "--profile", "smoke", "--tasks", "listops", "--variants", "sdpa,linear",
                  "--factors", "1,3", "--store", str(store), "--out", str(out), "--reuse", str(reference), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"listops: 2 fixed-rate row(s) copied from {reference}" in done.stdout
    assert "resume: 2 of 4 pairings already in" in done.stdout  # only the ×3 rate is trained
    assert "listops: τ = " in done.stdout
    table = out.read_text()
    row = next(line for line in table.splitlines() if line.startswith("| listops (accuracy)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "0.001 (0.001, 0.003)"  # listops' smoke rate and three times it
    assert {name.split()[0] for name in cells[2].split(" > ")} == {"sdpa", "linear"}
    assert all("@0.00" in part for part in cells[3].split(" > "))  # every variant shows its picked rate
    assert cells[5] in {"yes", "no"}
    again = script("lr_sensitivity.py", "--profile", "smoke", "--tasks", "listops", "--variants", "sdpa,linear",
                   "--factors", "1,3", "--store", str(store), "--analyse-only", cwd=tmp_path)
    assert again.returncode == 0 and row in again.stdout  # read back from the store alone: the same row
