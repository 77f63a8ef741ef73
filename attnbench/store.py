"""The results store: one SQLite file (WAL), one row per task, variant, profile, seed,
environment and task configuration.

Every finished pairing is committed the moment it finishes, so a crash, Ctrl-C or
``kill -9`` loses nothing that finished. Opening a file that is not an attnbench store
is an error that says so, rather than a silent new table in someone else's database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
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


class Store:
    """A results store file; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a directory; pass a file such as {self.path / 'results.sqlite'}")
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if fresh:
                self._db.executescript(_CREATE)
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?), ('version', ?)",
                                 (SCHEMA_NAME, str(SCHEMA_VERSION)))
            self._check_schema()
            self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not an attnbench results store ({exc}); "
                "pass a new path with --store, or move that file away"
            ) from None

    def _check_schema(self) -> None:
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            meta = {}
        if meta.get("schema") != SCHEMA_NAME:
            raise StoreError(
                f"{self.path} is an SQLite file but not an attnbench results store "
                "(no attnbench schema marker); pass a new path with --store"
            )
        if int(meta.get("version", 0)) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer attnbench (store version {meta['version']}, "
                f"this one reads {SCHEMA_VERSION}); upgrade attnbench"
            )

    def _upgrade(self) -> None:
        """Bring a store written by an older attnbench up to this version (columns only ever added)."""
        present = {r[1] for r in self._db.execute("PRAGMA table_info(results)")}
        for column, definition in _ADDED.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE results ADD COLUMN {column} {definition}")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))

    def write(self, row: ResultRow) -> None:
        """Insert or replace one row, committed at once."""
        values = asdict(row)
        for name in _JSON:
            values[name] = json.dumps(dict(values[name]), sort_keys=True)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        self._db.execute(
            f"INSERT OR REPLACE INTO results ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
            [values[c] for c in _COLUMNS],
        )

    def rows(self, **where: object) -> list[ResultRow]:
        """All rows, optionally filtered by equality on columns (``task="listops"``)."""
        unknown = set(where) - set(_COLUMNS)
        if unknown:
            raise StoreError(f"unknown store column(s) {sorted(unknown)}; columns are {_COLUMNS}")
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM results" + (f" WHERE {clause}" if clause else "")
        sql += " ORDER BY task, variant, profile, seed, finished_at"
        return [self._row(r) for r in self._db.execute(sql, list(where.values()))]

    def finished_keys(self) -> set[tuple]:
        """Keys of rows that --resume counts as done."""
        marks = ", ".join("?" for _ in FINISHED)
        cur = self._db.execute(f"SELECT {', '.join(_KEY)} FROM results WHERE status IN ({marks})", FINISHED)
        return {tuple(r) for r in cur}

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
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
