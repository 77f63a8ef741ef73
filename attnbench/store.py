"""The results store: one SQLite file (WAL), one row per task, variant, profile, seed,
environment and task configuration.

Every finished pairing is committed the moment it finishes, so a crash, Ctrl-C or
``kill -9`` loses nothing that finished. Opening a file that is not an attnbench store
is an error that says so, rather than a silent new table in someone else's database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, fields
from pathlib import Path

from attnbench.errors import StoreError
from attnbench.specs import ResultRow

SCHEMA_NAME = "attnbench-results"
SCHEMA_VERSION = 2
DEFAULT_STORE = Path("attnbench-results") / "results.sqlite"

#: Columns added since version 1, with their definitions (added in place when an older store opens).
_ADDED = {"config": "TEXT NOT NULL DEFAULT '{}'", "artifacts": "TEXT NOT NULL DEFAULT '{}'"}

#: Statuses that --resume treats as done; failed and timed-out pairings are retried.
FINISHED = ("ok", "unsupported", "diverged")

_KEY = ("task", "variant", "profile", "seed", "environment", "config_hash")
_JSON = ("metrics", "efficiency", "config", "artifacts")
_COLUMNS = [f.name for f in fields(ResultRow)]

_CREATE = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    task TEXT NOT NULL, variant TEXT NOT NULL, profile TEXT NOT NULL, seed INTEGER NOT NULL,
    environment TEXT NOT NULL, config_hash TEXT NOT NULL, status TEXT NOT NULL,
    metrics TEXT NOT NULL, efficiency TEXT NOT NULL, error TEXT NOT NULL,
    attnbench_version TEXT NOT NULL, plugin TEXT NOT NULL, distribution TEXT NOT NULL,
    distribution_version TEXT NOT NULL, torch_version TEXT NOT NULL, device TEXT NOT NULL,
    finished_at REAL NOT NULL, duration_s REAL NOT NULL,
    config TEXT NOT NULL DEFAULT '{{}}', artifacts TEXT NOT NULL DEFAULT '{{}}',
    PRIMARY KEY ({", ".join(_KEY)})
);
"""


def busy_timeout() -> float:
    """Seconds a store waits for another writer's lock: ``ATTNBENCH_STORE_TIMEOUT``, else 30."""
    value = os.environ.get("ATTNBENCH_STORE_TIMEOUT", "30")
    try:
        return float(value)
    except ValueError:
        raise StoreError(f"ATTNBENCH_STORE_TIMEOUT must be a number of seconds, got {value!r}; "
                         "unset it to wait the default 30 s") from None


def explain(path: Path, exc: sqlite3.Error, timeout: float) -> str:
    """What an SQLite error on the store at ``path`` means for the user, with the fix (one line)."""
    text = str(exc)
    lower = text.lower()
    if "locked" in lower or "busy" in lower:
        return (f"store {path} is locked by another process holding a write transaction (waited {timeout:g} s: "
                f"{text}); let that process finish, pass another file with --store, or wait longer with "
                "ATTNBENCH_STORE_TIMEOUT=SECONDS")
    if "readonly" in lower or "read-only" in lower:
        return (f"store {path} is read-only for this process ({text}); make the file and its folder writable "
                "(SQLite writes FILE-wal and FILE-shm beside it), or pass a writable file with --store")
    if "unable to open" in lower:
        return (f"cannot open store {path} ({text}); its folder must exist and be writable (SQLite writes "
                "FILE-wal and FILE-shm beside it), or pass another file with --store")
    if "full" in lower or "disk i/o" in lower or "too large" in lower:
        return (f"cannot write store {path}: the disk is full, a file-size limit was hit or the device failed "
                f"({text}); free some space (or raise the limit) and re-run with --resume: every row committed "
                "before this is kept")
    return (f"{path} is not an attnbench results store ({text}); pass a new path with --store, "
            "or move that file away")


class Store:
    """A results store file; use as a context manager or call :meth:`close`.

    Opening only reads, unless the file is new (the schema is created, and its folder if
    missing: :attr:`created_folder` says so) or older (it is migrated); :meth:`check_writable`
    proves up front that rows can be written. ``readonly=True`` (what ``attnbench report``
    needs) never creates, migrates or writes anything, opens a store in a folder it may not
    write to, and names a missing file as such. Every
    SQLite failure (locked, read-only, disk full, not a database) becomes a one-line
    :class:`StoreError` naming the file and the fix. ``timeout`` is how long to wait for
    another writer's lock (default: :func:`busy_timeout`).
    """

    def __init__(self, path: str | Path, *, timeout: float | None = None, readonly: bool = False) -> None:
        self.path = Path(path)
        self.timeout = busy_timeout() if timeout is None else timeout
        self.readonly = readonly
        #: The folder this open created for the file (None: it existed), for the caller to say so.
        self.created_folder: Path | None = None
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a directory; pass a file such as {self.path / 'results.sqlite'}")
        self._db: sqlite3.Connection | None = None
        if readonly:
            self._open_readonly()
            return
        self._make_folder()
        try:
            self._db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            if not self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                self._create()
            self._check_schema()  # before anything that writes: someone else's database stays as it was
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._upgrade()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(explain(self.path, exc, self.timeout)) from None
        except StoreError:
            self.close()
            raise

    def _make_folder(self) -> None:
        """Create the file's folder if it is missing (the topmost one created goes in :attr:`created_folder`)."""
        folder = self.path.parent
        if folder.is_dir():
            return
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise StoreError(f"cannot create the folder of store {self.path}: {existing} is a file, not a folder; "
                             "pass a file in a folder with --store")
        missing = next(p for p in reversed((folder, *folder.parents)) if not p.exists())
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of store {self.path} ({exc.strerror or exc}); "
                             "pass a file in a writable folder with --store") from None
        self.created_folder = missing

    def _open_readonly(self) -> None:
        """Open for reading only: nothing is created, migrated or written, and a store in a
        folder this process may not write to still opens (SQLite then reads it as immutable,
        which is safe because no writer can add a FILE-wal beside it either)."""
        if not self.path.exists():
            raise StoreError(f"no results store at {self.path}; run `attnbench run` first, or pass --store FILE")
        uri = self.path.resolve().as_uri()
        try:
            try:
                self._db = self._connect_checked(f"{uri}?mode=ro")
            except sqlite3.OperationalError as exc:
                wal = self.path.with_name(self.path.name + "-wal")
                lower = str(exc).lower()
                cannot_share = "unable to open" in lower or "readonly" in lower or "read-only" in lower
                if not cannot_share or (wal.exists() and wal.stat().st_size):
                    raise
                self._db = self._connect_checked(f"{uri}?mode=ro&immutable=1")
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(explain(self.path, exc, self.timeout)) from None
        except StoreError:
            self.close()
            raise

    def _connect_checked(self, uri: str) -> sqlite3.Connection:
        self.close()
        self._db = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None)
        self._check_schema()
        return self._db

    def _create(self) -> None:
        """Create the schema in one transaction (two processes creating one file at once both succeed)."""
        with self._transaction():
            for statement in _CREATE.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('version', ?)",
                             (SCHEMA_NAME, str(SCHEMA_VERSION)))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any failure: a row is all there or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def _check_schema(self) -> None:
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            meta = {}
        if meta.get("schema") != SCHEMA_NAME:
            raise StoreError(
                f"{self.path} is an SQLite file but not an attnbench results store "
                "(no attnbench schema marker); pass a new path with --store"
            )
        if int(meta.get("version", 0)) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer attnbench (store version {meta['version']}, "
                f"this one reads {SCHEMA_VERSION}); upgrade attnbench (pip install -U attnbench), "
                "or pass another file with --store"
            )

    def _upgrade(self) -> None:
        """Bring a store written by an older attnbench up to this version (columns only ever added).

        A current store is left untouched, so opening one to read never writes.
        """
        present = {r[1] for r in self._db.execute("PRAGMA table_info(results)")}
        version = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if set(_ADDED) <= present and version and int(version[0]) == SCHEMA_VERSION:
            return
        with self._transaction():
            present = {r[1] for r in self._db.execute("PRAGMA table_info(results)")}  # another writer may have won
            for column, definition in _ADDED.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE results ADD COLUMN {column} {definition}")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))

    def check_writable(self) -> None:
        """Prove that a row can be committed now (not locked, not read-only, space for a page), or raise
        :class:`StoreError` — so ``attnbench run`` fails before any work rather than after it."""
        self._refuse_if_readonly()
        try:
            with self._transaction():
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('checked_at', ?)", (repr(time.time()),))
        except sqlite3.Error as exc:
            raise StoreError(explain(self.path, exc, self.timeout)) from None

    def write(self, row: ResultRow) -> None:
        """Insert or replace one row, committed at once in its own transaction.

        If the write fails (lock held past the timeout, disk full) nothing of the row is
        stored, the pairing counts as not done for ``--resume``, and :class:`StoreError` says so.
        """
        self._refuse_if_readonly()
        values = asdict(row)
        for name in _JSON:
            values[name] = json.dumps(dict(values[name]), sort_keys=True)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        try:
            with self._transaction():
                self._db.execute(
                    f"INSERT OR REPLACE INTO results ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                    [values[c] for c in _COLUMNS],
                )
        except sqlite3.Error as exc:
            raise StoreError(f"the row of {row.task} × {row.variant} (seed {row.seed}) was not saved: "
                             f"{explain(self.path, exc, self.timeout)}") from None

    def _refuse_if_readonly(self) -> None:
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only; open it without readonly=True to write rows")

    def _selected(self) -> str:
        """The SELECT list of every column; a column an older, unmigrated store lacks reads as its default."""
        present = {r[1] for r in self._db.execute("PRAGMA table_info(results)")}
        return ", ".join(c if c in present or c not in _ADDED else f"'{{}}' AS {c}" for c in _COLUMNS)

    def rows(self, **where: object) -> list[ResultRow]:
        """All rows, optionally filtered by equality on columns (``task="listops"``)."""
        unknown = set(where) - set(_COLUMNS)
        if unknown:
            raise StoreError(f"unknown store column(s) {sorted(unknown)}; columns are {_COLUMNS}")
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = f"SELECT {self._selected()} FROM results" + (f" WHERE {clause}" if clause else "")
        sql += " ORDER BY task, variant, profile, seed, finished_at"
        return [self._row(r) for r in self._db.execute(sql, list(where.values()))]

    def finished_keys(self) -> set[tuple]:
        """Keys of rows that --resume counts as done."""
        return {k for k, status in self.statuses().items() if status in FINISHED}

    def statuses(self) -> dict[tuple, str]:
        """Every stored row's key (task, variant, profile, seed, environment, config hash) and status."""
        cur = self._db.execute(f"SELECT {', '.join(_KEY)}, status FROM results")
        return {tuple(r[:-1]): r[-1] for r in cur}

    @staticmethod
    def _row(values: Iterable[object]) -> ResultRow:
        data = dict(zip(_COLUMNS, values, strict=True))
        for name in _JSON:
            data[name] = json.loads(data[name])
        return ResultRow(**data)

    def __iter__(self) -> Iterator[ResultRow]:
        return iter(self.rows())

    def close(self) -> None:
        """Close the connection (rows are already committed)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
