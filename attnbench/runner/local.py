"""Local executor: each pairing in its own worker process, up to ``jobs`` at a time, each
with a timeout.

Workers never start from a copy of the process that runs the matrix, whose state is
whatever its plugins made of it at import (a warmed torch thread pool makes a forked copy
wait forever). On CPU (Linux, macOS) they are forked from a *fork server*: a fresh
interpreter that imports torch, attnbench and attnbench's own plugin modules once
(:mod:`attnbench.runner.preload`) and then only forks, so a worker is ready after about
0.05 s of CPU time; the first pairing of a process also waits for the server's start (about
2 s of CPU). ``benchmarks/worker_startup.py`` measures both.
Accelerators do not survive a fork, so on CUDA and MPS workers are spawned (a fresh
interpreter each). Either way the worker loads the plugin set itself, and takes the
parent's environment variables and ``sys.path`` as they are when it starts.

A script that drives the executor must guard its top level with ``if __name__ ==
"__main__":``, as with any spawned multiprocessing worker: the worker imports the
script's main module, as spawn does.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

import torch

from attnbench.errors import DataError, DeviceError, Terminated
from attnbench.runner import worker
from attnbench.runner.pairing import Pairing, base_fields, without_files_in
from attnbench.specs import ResultRow


class Display(Protocol):
    """What the executor reports to whoever shows progress (the CLI uses rich)."""

    def started(self, pairing: Pairing) -> None: ...

    def progress(self, pairing: Pairing, done: int, total: int, description: str, info: dict[str, float]) -> None: ...

    def finished(self, pairing: Pairing, row: ResultRow) -> None: ...


@dataclass
class _Running:
    pairing: Pairing
    process: Any
    conn: Connection
    scratch: str | None = None
    started: float = field(default_factory=time.monotonic)


#: What the fork server imports before it forks any worker.
PRELOAD = "attnbench.runner.preload"


def start_method(device: torch.device) -> str:
    """How workers for ``device`` start: ``forkserver`` for CPU where the platform has it, else ``spawn``."""
    if device.type == "cpu" and "forkserver" in mp.get_all_start_methods():
        return "forkserver"
    return "spawn"


def _context(device: torch.device) -> mp.context.BaseContext:
    """The multiprocessing context for ``device``'s workers; a fork server is started (in the
    background: this returns at once) the first time one is needed in this process."""
    method = start_method(device)
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([PRELOAD])
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return ctx


@contextmanager
def _interrupt_deferred() -> Iterator[list[int]]:
    """Hold back Ctrl-C (and SIGTERM) while a worker starts, then let it through.

    A KeyboardInterrupt raised inside fork's at-fork callbacks is reported as "Exception
    ignored" and swallowed, so a Ctrl-C landing during a worker's start would be lost and
    the run would go on. The handler here only records the signal; the caller re-raises afterwards.
    """
    interrupted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = {sig: signal.signal(sig, lambda signum, _: interrupted.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def threads_per_worker(jobs: int) -> int:
    """Split this machine's cores evenly between concurrent workers."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


class LocalExecutor:
    """Runs pairings in worker processes on this machine."""

    def __init__(self, device: torch.device, *, jobs: int = 1, timeout: float | None = None,
                 artifacts: Path | None = None, max_memory_mb: float | None = None) -> None:
        if max_memory_mb and device.type != "cpu":
            raise DeviceError(f"--max-memory caps host memory of CPU workers; on {device} use the device's own limits")
        self.device = device
        self.artifacts = artifacts
        self.max_memory_mb = max_memory_mb
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self._ctx = _context(device)

    def run(self, pairings: list[Pairing], on_row: Callable[[ResultRow], None], display: Display) -> None:
        """Run every pairing; ``on_row`` is called (in this process) the moment each finishes.

        A data error in one worker stops the run: running workers are stopped, finished rows
        are kept, and the :class:`DataError` is raised.
        """
        queue = list(pairings)
        running: list[_Running] = []
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    with _interrupt_deferred() as interrupted:
                        running.append(self._start(queue.pop(0)))
                    if interrupted:
                        raise Terminated if signal.SIGTERM in interrupted else KeyboardInterrupt
                    display.started(running[-1].pairing)
                ready = wait([r.conn for r in running], timeout=0.2)
                for r in list(running):
                    row = self._poll(r, r.conn in ready, display)
                    if row is not None:
                        running.remove(r)
                        row = release_workdir(row, r.scratch)
                        on_row(row)
                        display.finished(r.pairing, row)
        finally:
            for r in running:
                _stop(r)
                release_workdir(None, r.scratch)

    def _start(self, pairing: Pairing) -> _Running:
        parent, child = self._ctx.Pipe(duplex=False)
        workdir = pairing_workdir(pairing, self.device, self.artifacts)
        process = self._ctx.Process(
            target=worker.main,
            args=(child, pairing, str(self.device), threads_per_worker(self.jobs), workdir, os.getpid(),
                  self.max_memory_mb, dict(os.environ)),
            daemon=True,
        )
        process.start()
        child.close()
        return _Running(pairing=pairing, process=process, conn=parent,
                        scratch=workdir if self.artifacts is None else None)

    def _poll(self, r: _Running, readable: bool, display: Display) -> ResultRow | None:
        """Drain the worker's messages; return its row once it has one (or has died)."""
        while readable and r.conn.poll():
            try:
                message = r.conn.recv()
            except EOFError:  # the worker died without sending its row
                r.process.join(timeout=5)
                return self._row(r, "failed", f"worker process exited with code {r.process.exitcode} without "
                                              "a result (killed for memory, or crashed in native code)")
            kind = message[0]
            if kind == "progress":
                display.progress(r.pairing, *message[1:])
            elif kind == "row":
                r.process.join(timeout=5)
                return message[1]
            elif kind == "data_error":
                raise DataError(message[1])
            elif kind == "crash":
                r.process.join(timeout=5)
                return self._row(r, "failed", message[1])
        elapsed = time.monotonic() - r.started
        if self.timeout and elapsed > self.timeout:
            _stop(r)
            return self._row(r, "timeout", f"exceeded --timeout {self.timeout:g} s (stopped after {elapsed:.1f} s)")
        return None

    def _row(self, r: _Running, status: str, error: str) -> ResultRow:
        return ResultRow(**base_fields(r.pairing, self.device), status=status, error=error,
                         finished_at=time.time(), duration_s=round(time.monotonic() - r.started, 3))


def pairing_workdir(pairing: Pairing, device: torch.device, root: Path | None) -> str:
    """Where a pairing writes its files: ``ROOT/<task>/<variant>/<profile>-seed<N>-<config hash>``,
    kept beside the store so a report can show them; a temporary folder when there is no root,
    which the executor removes with :func:`release_workdir` when the pairing finishes."""
    if root is None:
        return tempfile.mkdtemp(prefix=f"attnbench-{pairing.task}-{pairing.variant}-")
    base = base_fields(pairing, device)
    path = Path(root) / pairing.task / pairing.variant / f"{pairing.profile}-seed{pairing.seed}-{base['config_hash']}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def release_workdir(row: ResultRow | None, scratch: str | None) -> ResultRow | None:
    """Remove a pairing's temporary work folder (``scratch``; None: a kept one, nothing to do)
    and return ``row`` without artifacts that lived in it."""
    if scratch is None:
        return row
    shutil.rmtree(scratch, ignore_errors=True)
    return without_files_in(row, scratch) if row is not None else None


def _stop(r: _Running) -> None:
    if r.process.is_alive():
        r.process.kill()
    r.process.join(timeout=5)
    r.conn.close()
