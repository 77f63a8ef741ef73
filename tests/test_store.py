"""The SQLite results store: round trips, resume keys, and files that are not stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

from attnbench import ResultRow
from attnbench.errors import StoreError
from attnbench.store import Store


def _row(**kw) -> ResultRow:
    base = dict(task="t", variant="v", profile="smoke", seed=0, environment="cpu", config_hash="abc",
                status="ok", metrics={"accuracy": 0.5}, efficiency={"params": 10.0})
    return ResultRow(**{**base, **kw})


def test_rows_round_trip_and_replace_by_key(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.write(_row())
        store.write(_row(metrics={"accuracy": 0.75}))  # same key: replaces
        store.write(_row(seed=1, status="failed", error="boom"))
        store.write(_row(config_hash="other"))  # a different setup never merges
    with Store(path) as store:
        rows = store.rows()
        assert len(rows) == 3
        assert store.rows(seed=0, config_hash="abc")[0].metrics == {"accuracy": 0.75}
        assert ("t", "v", "smoke", 1, "cpu", "abc") not in store.finished_keys()  # failed rows are retried
        assert ("t", "v", "smoke", 0, "cpu", "abc") in store.finished_keys()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not an attnbench results store"):
        Store(junk)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not an attnbench results store"):
        Store(other)
    assert sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]  # untouched
    result = run_cli("report", "--store", str(junk))
    assert result.returncode == 2 and "not an attnbench results store" in result.stderr
    assert "Traceback" not in result.stderr
