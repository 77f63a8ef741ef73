"""The fault catalogue, with real subprocesses: each fault becomes its own honest row, the rest of
the matrix goes on, and the store stays readable. Faults come from tests/plugin_packages/attnbench-faults."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.mark.slow
def test_every_fault_becomes_its_own_row_and_the_matrix_goes_on(plugin_site: Path, tmp_path: Path):
    store = tmp_path / "r.sqlite"
    ran = run_cli("run", "--tasks", "fault-*,listops", "--variants", "sdpa,faulty-build", "--profile", "smoke",
                  "--timeout", "15", "--max-memory", "600", "--jobs", "2", "--store", str(store),
                  site=plugin_site, cwd=tmp_path, timeout=400)
    assert ran.returncode == 1, ran.stdout[-3000:] + ran.stderr[-3000:]  # failed rows: exit status 1
    rows = {(t, v): (s, e) for t, v, s, e in
            sqlite3.connect(store).execute("SELECT task, variant, status, error FROM results")}
    assert len(rows) == 12  # 6 tasks × 2 variants, every one recorded
    status = {k: s for k, (s, _) in rows.items()}
    error = {k: e for k, (_, e) in rows.items()}
    assert status[("listops", "sdpa")] == "ok"
    assert status[("fault-abort", "sdpa")] == "failed" and "exited with code -6" in error[("fault-abort", "sdpa")]
    assert status[("fault-hang", "sdpa")] == "timeout" and "exceeded --timeout 15 s" in error[("fault-hang", "sdpa")]
    assert status[("fault-hang", "faulty-build")] == "unsupported"
    assert status[("fault-memory", "sdpa")] == "failed"
    assert error[("fault-memory", "sdpa")].rstrip().endswith("out of memory: the pairing needed more memory than it may use "
                                                              "(see --max-memory)")
    assert status[("fault-raises", "sdpa")] == "failed" and "a bug inside the task's run()" in error[("fault-raises", "sdpa")]
    assert status[("fault-nan", "sdpa")] == "diverged"
    for task in ("listops", "fault-abort", "fault-memory", "fault-raises", "fault-nan"):
        assert status[(task, "faulty-build")] == "failed", task
        assert "cannot be built" in error[(task, "faulty-build")]
    # the plugin that raised while registering is reported with its distribution and entry point
    assert "attnbench-faults:raises-at-registration" in ran.stderr
    plugins = {i["name"]: i for i in json.loads(run_cli("plugins", "--json", site=plugin_site).stdout)}
    assert "broken while registering" in plugins["raises-at-registration"]["error"]
    assert plugins["raises-at-registration"]["distribution"] == "attnbench-faults"
    # and the store is a readable store: the report renders every status
    report = run_cli("report", "--store", str(store), "--format", "json")
    assert report.returncode == 0, report.stderr
    statuses = {e["status"] for t in json.loads(report.stdout)["tasks"] for e in t["entries"]}
    assert statuses == {"ok", "failed", "timeout", "unsupported", "diverged"}
