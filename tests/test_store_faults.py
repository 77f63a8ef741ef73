"""The results store under hostile conditions, through the CLI with real SQLite files and real
subprocesses: locked by another writer, read-only, a full disk, a file that is not a store, a
newer and an older schema version, and two `attnbench run` processes writing one store at once.

What must hold every time: a one-line error naming the file and the fix before any work starts
(exit code 2), or — when a write fails after a pairing finished — that row is absent (never half
written), the store passes SQLite's integrity check, and ``--resume`` runs the pairing again.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import run_cli

from attnbench import ResultRow
from attnbench.errors import StoreError
from attnbench.store import SCHEMA_VERSION, Store

#: Generous: a CLI start (torch, plugins) took minutes on the shared 2-core machine under load.
CLI_TIMEOUT = 600
SMOKE = ("--tasks", "listops", "--profile", "smoke", "--set", "steps=2")


def _row(**kw) -> ResultRow:
    base = dict(task="t", variant="v", profile="smoke", seed=0, environment="cpu", config_hash="abc",
                status="ok", metrics={"accuracy": 0.5}, efficiency={"params": 10.0})
    return ResultRow(**{**base, **kw})


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(path: Path) -> list[tuple]:
    """The store's rows' keys, after asserting SQLite finds the file sound."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT task, variant, seed, status FROM results ORDER BY variant").fetchall()
    finally:
        db.close()


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert ``result`` stopped with exit code 2 and one ``error:`` line holding every needle."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _run(*args: str, preexec=None, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """``python -m attnbench ARGS`` with a ``preexec_fn`` (limits, dropped privileges)."""
    full_env = {**os.environ, "COLUMNS": "250", **(env or {})}
    return subprocess.run([sys.executable, "-m", "attnbench", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, preexec_fn=preexec)


# --- locked by another writer ------------------------------------------------------------------

def _hold_lock(path: Path) -> sqlite3.Connection:
    """Another connection holding an open write transaction on ``path`` (``BEGIN EXCLUSIVE``)."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # a timer may release it
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT OR REPLACE INTO meta VALUES ('held', 'by a test')")
    return holder


def test_a_locked_store_stops_run_before_any_work_with_the_file_and_the_fix(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    Store(path).close()
    holder = _hold_lock(path)
    try:
        ran = run_cli("run", *SMOKE, "--variants", "sdpa", "--store", str(path),
                      env={"ATTNBENCH_STORE_TIMEOUT": "1"}, cwd=tmp_path, timeout=CLI_TIMEOUT)
        _one_line_error(ran, str(path), "is locked by another process", "--store", "ATTNBENCH_STORE_TIMEOUT")
        assert "running" not in ran.stdout and not (tmp_path / "artifacts").exists()  # no pairing started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _intact(path) == []


def test_a_write_blocked_by_a_lock_leaves_no_row_and_resume_counts_it_as_not_done(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    with Store(path, timeout=0.5) as store:
        store.write(_row(variant="before"))
        holder = _hold_lock(path)
        with pytest.raises(StoreError, match=r"row of t × blocked \(seed 0\) was not saved: store .* is locked"):
            store.write(_row(variant="blocked"))
        holder.execute("ROLLBACK")
        holder.close()
        assert [k[1] for k in store.finished_keys()] == ["before"]
        store.write(_row(variant="after"))  # the lock gone, the same connection writes again
    assert [r[1] for r in _intact(path)] == ["after", "before"]


def test_a_writer_that_holds_the_lock_briefly_is_waited_for(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    Store(path).close()
    holder = _hold_lock(path)
    releaser = threading.Timer(0.5, lambda: (holder.execute("COMMIT"), holder.close()))
    releaser.start()
    try:
        with Store(path, timeout=20) as store:
            store.write(_row())
    finally:
        releaser.join()
    assert _intact(path) == [("t", "v", 0, "ok")]


# --- read-only ---------------------------------------------------------------------------------

def _without_root_overrides() -> None:
    """In the child: make file permissions bind even for root, by dropping the capabilities that
    bypass them from the bounding set (root's capabilities after exec come from it)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            os._exit(97)


def test_a_read_only_store_stops_run_before_any_work_and_still_reports(tmp_path: Path):
    folder = tmp_path / "shelf"
    folder.mkdir()
    path = folder / "results.sqlite"
    with Store(path) as store:
        store.write(_row(task="listops", variant="sdpa"))
    path.chmod(0o444)
    before = _digest(path)
    try:
        ran = _run("run", *SMOKE, "--variants", "linear", "--store", str(path), preexec=_without_root_overrides,
                   cwd=tmp_path)
        if ran.returncode == 97:
            pytest.skip("cannot drop root's permission overrides (prctl PR_CAPBSET_DROP refused) in this sandbox")
        _one_line_error(ran, str(path), "is read-only", "writable", "--store")
        assert not (folder / "artifacts").exists()  # no pairing started
        report = _run("report", "--store", str(path), "--format", "json", preexec=_without_root_overrides)
        assert report.returncode == 0, report.stderr
        assert [e["variant"] for t in json.loads(report.stdout)["tasks"] for e in t["entries"]] == ["sdpa"]
        folder.chmod(0o555)  # and a folder where SQLite cannot create FILE-wal / FILE-shm
        ran = _run("run", *SMOKE, "--variants", "linear", "--store", str(path), preexec=_without_root_overrides)
        _one_line_error(ran, str(path), "--store")
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert _digest(path) == before


# --- a full disk -------------------------------------------------------------------------------

def _file_size_limit(nbytes: int):
    """A ``preexec_fn``: files may grow to ``nbytes`` at most; SIGXFSZ ignored, so writes fail with EFBIG."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def test_a_full_disk_at_start_is_one_line_and_leaves_no_broken_store(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    ran = _run("run", *SMOKE, "--variants", "sdpa", "--store", str(path), preexec=_file_size_limit(2000), cwd=tmp_path)
    _one_line_error(ran, str(path), "disk is full", "--resume")
    assert not (tmp_path / "artifacts").exists()
    # SQLite could not write its first page: an empty file, which the next run simply creates anew
    assert path.stat().st_size == 0
    with Store(path) as store:
        assert store.rows() == []


@pytest.mark.slow
def test_a_full_disk_mid_run_loses_only_the_unsaved_row_and_resume_runs_it_again(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    Store(path).close()
    variants = "sdpa,linear,local,softmax"
    # 32 KiB: room for SQLite's shared-memory index and a few WAL frames, not for four rows
    ran = _run("run", *SMOKE, "--variants", variants, "--store", str(path), preexec=_file_size_limit(32768))
    line = _one_line_error(ran, str(path), "was not saved", "disk is full", "--resume")
    saved = _intact(path)
    assert len(saved) < 4 and all(status == "ok" for *_, status in saved), saved
    assert f"listops × {variants.split(',')[len(saved)]} (seed 0) was not saved" in line  # the next one in order
    resumed = run_cli("run", *SMOKE, "--variants", variants, "--store", str(path), "--resume", timeout=CLI_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resume: {len(saved)} of 4 pairings already in" in resumed.stdout
    assert sorted(v for _, v, _, _ in _intact(path)) == sorted(variants.split(","))


# --- not a store, newer, older -----------------------------------------------------------------

def test_run_refuses_a_file_that_is_not_a_store_and_leaves_it_untouched(tmp_path: Path):
    junk = tmp_path / "notes.sqlite"
    junk.write_bytes(b"my notes, not a database\n" * 200)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    for path in (junk, other):
        before = _digest(path)
        ran = run_cli("run", *SMOKE, "--variants", "sdpa", "--store", str(path), cwd=tmp_path, timeout=CLI_TIMEOUT)
        _one_line_error(ran, str(path), "not an attnbench results store", "--store")
        assert _digest(path) == before
    assert not (tmp_path / "artifacts").exists()


def test_a_store_from_a_newer_attnbench_is_refused_by_run_and_report_untouched(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    with Store(path) as store:
        store.write(_row())
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = _digest(path)
    for command in (("run", *SMOKE, "--variants", "sdpa"), ("report", "--format", "json")):
        ran = run_cli(*command, "--store", str(path), cwd=tmp_path, timeout=CLI_TIMEOUT)
        _one_line_error(ran, str(path), f"store version {SCHEMA_VERSION + 1}", "upgrade attnbench")
    assert _digest(path) == before


def test_a_version_1_store_is_migrated_in_place_and_reports(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    db = sqlite3.connect(path)
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
        INSERT INTO results VALUES ('listops', 'sdpa', 'smoke', 0, 'cpu | old', 'h1', 'ok', '{"accuracy": 0.25}',
            '{}', '', '0.0.1', 'attnbench:sdpa', 'attnbench', '0.0.1', '2.0', 'cpu', 1.0, 2.0);
    """)
    db.close()
    report = run_cli("report", "--store", str(path), "--format", "json", timeout=CLI_TIMEOUT)
    assert report.returncode == 0, report.stderr
    entries = [e for t in json.loads(report.stdout)["tasks"] for e in t["entries"]]
    assert [(e["variant"], e["status"]) for e in entries] == [("sdpa", "ok")]
    db = sqlite3.connect(path)  # report opens the store read-only: it read the old store as it is
    assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == ("1",)
    db.close()
    with Store(path) as store:  # a writer migrates it in place
        (row,) = store.rows()
        assert row.metrics == {"accuracy": 0.25} and row.config == {} and row.artifacts == {}
        store.write(_row(task="listops", variant="linear", config={"steps": 2}))  # and takes new rows
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (str(SCHEMA_VERSION),)
    assert db.execute("SELECT config, artifacts FROM results WHERE variant = 'sdpa'").fetchall() == [("{}", "{}")]
    db.close()
    assert len(_intact(path)) == 2


# --- two writers at once -----------------------------------------------------------------------

@pytest.mark.slow
def test_two_runs_writing_one_new_store_at_once_lose_and_duplicate_nothing(tmp_path: Path):
    path = tmp_path / "results.sqlite"  # does not exist yet: both processes race to create it, too
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "attnbench", "run", *SMOKE, "--variants", variants,
                              "--store", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
            for variants in ("sdpa,softmax,local", "softmax,linear")]  # softmax in both: one row, not two
    outputs = [p.communicate(timeout=2 * CLI_TIMEOUT) for p in runs]
    for p, (out, err) in zip(runs, outputs, strict=True):
        assert p.returncode == 0, out[-2000:] + err[-2000:]
    rows = _intact(path)
    assert sorted(v for _, v, _, _ in rows) == ["linear", "local", "sdpa", "softmax"]
    assert all(status == "ok" for *_, status in rows)
    report = run_cli("report", "--store", str(path), "--format", "json", timeout=CLI_TIMEOUT)
    assert report.returncode == 0, report.stderr
    entries = [e["variant"] for t in json.loads(report.stdout)["tasks"] for e in t["entries"]]
    assert sorted(entries) == ["linear", "local", "sdpa", "softmax"]
