"""Opening the results store: read-only (what `attnbench report` does) never creates, migrates
or writes anything and still reads a store in a folder it may not write to; a writer creates a
missing folder and says which, and names a file that stands where a folder should be."""

from __future__ import annotations

import ctypes
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench import ResultRow
from attnbench.errors import StoreError
from attnbench.store import Store


def _row(**kw) -> ResultRow:
    base = dict(task="listops", variant="sdpa", profile="smoke", seed=0, environment="cpu", config_hash="abc",
                status="ok", metrics={"accuracy": 0.5})
    return ResultRow(**{**base, **kw})


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_missing_store_is_named_and_nothing_is_created(tmp_path: Path):
    with pytest.raises(StoreError, match=r"^no results store at .*nope\.sqlite; run `attnbench run` first"):
        Store(tmp_path / "deeper" / "nope.sqlite", readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_store_reads_rows_and_refuses_to_write(tmp_path: Path):
    path = tmp_path / "r.sqlite"
    with Store(path) as store:
        store.write(_row())
    before = (tmp_path / "r.sqlite").read_bytes()
    with Store(path, readonly=True) as store:
        assert [(r.variant, r.status) for r in store.rows()] == [("sdpa", "ok")]
        assert store.statuses() == {("listops", "sdpa", "smoke", 0, "cpu", "abc"): "ok"}
        with pytest.raises(StoreError, match="opened read-only"):
            store.write(_row(variant="linear"))
        with pytest.raises(StoreError, match="opened read-only"):
            store.check_writable()
    assert path.read_bytes() == before


def test_a_read_only_open_neither_migrates_an_old_store_nor_takes_someone_elses_database(tmp_path: Path):
    old = tmp_path / "v1.sqlite"
    db = sqlite3.connect(old)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', 'attnbench-results'), ('version', '1');
        CREATE TABLE results (
            task TEXT NOT NULL, variant TEXT NOT NULL, profile TEXT NOT NULL, seed INTEGER NOT NULL,
            environment TEXT NOT NULL, config_hash TEXT NOT NULL, status TEXT NOT NULL,
            metrics TEXT NOT NULL, efficiency TEXT NOT NULL, error TEXT NOT NULL,
            attnbench_version TEXT NOT NULL, plugin TEXT NOT NULL, distribution TEXT NOT NULL,
            distribution_version TEXT NOT NULL, torch_version TEXT NOT NULL, device TEXT NOT NULL,
            finished_at REAL NOT NULL, duration_s REAL NOT NULL,
            PRIMARY KEY (task, variant, profile, seed, environment, config_hash));
        INSERT INTO results VALUES ('listops', 'sdpa', 'smoke', 0, 'cpu', 'h1', 'ok', '{"accuracy": 0.25}',
            '{}', '', '0.0.1', 'attnbench:sdpa', 'attnbench', '0.0.1', '2.0', 'cpu', 1.0, 2.0);
    """)
    db.close()
    before = old.read_bytes()
    with Store(old, readonly=True) as store:
        (row,) = store.rows()
    assert row.metrics == {"accuracy": 0.25} and row.config == {} and row.artifacts == {}
    assert old.read_bytes() == before
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not an attnbench results store"):
        Store(other, readonly=True)


def _without_root_overrides() -> None:
    """In the child: file permissions bind even for root (drop the capabilities that bypass them)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)


def test_a_store_in_a_read_only_folder_still_reads(tmp_path: Path):
    folder = tmp_path / "shelf"
    folder.mkdir()
    path = folder / "results.sqlite"
    with Store(path) as store:
        store.write(_row())
    before = _files(folder)
    probe = ("import sys\nfrom attnbench.store import Store\n"
             "with Store(sys.argv[1], readonly=True) as s:\n    print([r.variant for r in s.rows()])")
    path.chmod(0o444)
    folder.chmod(0o555)  # SQLite cannot create FILE-wal / FILE-shm here
    try:
        ran = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120,
                             preexec_fn=_without_root_overrides)
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    if ran.returncode == 97:
        pytest.skip("cannot drop root's permission overrides (prctl PR_CAPBSET_DROP refused) in this sandbox")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['sdpa']"
    assert _files(folder) == before


def test_a_writer_creates_a_missing_folder_and_says_which(tmp_path: Path):
    with Store(tmp_path / "new" / "deeper" / "r.sqlite") as store:
        assert store.created_folder == tmp_path / "new"
    with Store(tmp_path / "new" / "deeper" / "r.sqlite") as store:
        assert store.created_folder is None
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match=r"a-file is a file, not a folder; pass a file in a folder with --store"):
        Store(tmp_path / "a-file" / "sub" / "r.sqlite")
