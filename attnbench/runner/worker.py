"""The worker process: runs one pairing and reports back over a pipe.

Messages sent to the parent are tuples: ``("progress", done, total, description, info)``,
``("row", ResultRow)``, ``("data_error", message)`` or ``("crash", traceback)``. A worker whose parent dies
(``kill -9``) exits within a second instead of running on as an orphan.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, check_finite, execute


class PipeProgress:
    """Progress that forwards to the parent, at most ten messages a second."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._done = 0
        self._total = 0
        self._description = ""
        self._last = 0.0

    def start(self, total: int, description: str = "") -> None:
        self._done, self._total, self._description = 0, int(total), description
        self._send({})

    def advance(self, steps: int = 1, **info: float) -> None:
        check_finite(info)
        self._done += steps
        now = time.monotonic()
        if now - self._last >= 0.1 or self._done >= self._total:
            self._send(info)

    def _send(self, info: dict[str, float]) -> None:
        self._last = time.monotonic()
        self._conn.send(("progress", self._done, self._total, self._description,
                         {k: float(v) for k, v in info.items()}))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (the parent may be a fork server's child)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): existence is all we can tell
        return True


def _exit_with_parent(parent_pid: int) -> None:
    while _alive(parent_pid):
        time.sleep(0.5)
    os._exit(3)


def cap_memory(max_memory_mb: float | None) -> None:
    """Let this process allocate at most ``max_memory_mb`` MiB beyond what it has mapped now.

    An address-space limit (``RLIMIT_AS``) makes an allocation past the cap fail inside the
    process — torch raises, and the pairing becomes a clean ``failed: out of memory`` row —
    instead of the kernel's OOM killer taking down the worker, or the whole machine.
    """
    if not max_memory_mb:
        return
    import resource

    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + int(max_memory_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def take_environment(environ: dict[str, str] | None) -> None:
    """Make this process's environment variables ``environ`` (the parent's when it started this
    worker: a fork server's own are those of when the server started)."""
    if environ is None:
        return
    os.environ.clear()
    os.environ.update(environ)
    tempfile.tempdir = None  # chosen again from TMPDIR & co. on next use


def main(conn: Connection, pairing: Pairing, device: str, threads: int, workdir: str, parent_pid: int,
         max_memory_mb: float | None = None, environ: dict[str, str] | None = None) -> None:
    """Worker entry point (the target of the started process)."""
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    take_environment(environ)
    # Ctrl-C reaches the whole process group; the parent handles it and stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    plugins.load()  # third-party plugins are imported here, in this fresh process, before the cap
    cap_memory(max_memory_mb)
    torch.set_num_threads(threads)
    try:
        row = execute(pairing, torch.device(device), progress=PipeProgress(conn), workdir=Path(workdir))
    except DataError as exc:
        conn.send(("data_error", str(exc)))
    except Exception:  # noqa: BLE001 — reported as a 'failed' row by the parent
        conn.send(("crash", traceback.format_exc()))
    else:
        conn.send(("row", row))
    finally:
        conn.close()
