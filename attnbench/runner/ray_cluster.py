"""Ray executor: each pairing a Ray task on an existing cluster (or a local Ray instance).

The parent process stays the only writer of the results store: rows arrive as Ray tasks
finish and go through the same ``on_row`` as the local executor's, so ``--resume``,
Ctrl-C and ``kill -9`` keep their promises. Each pairing runs in a fresh Ray worker
process (``max_calls=1``), asks for one GPU on CUDA, and maps its outcome onto the same
statuses: a timeout → ``timeout`` (the task is cancelled), a dead worker → ``failed``, a
worker that cannot find a plugin → ``failed`` naming it, bad data → the run stops with the
:class:`~attnbench.errors.DataError`.

Plugins must be importable on every node: install attnbench and the plugin
distributions in the cluster's Python environment (or ship them with Ray's
``runtime_env={"pip": [...]}``).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from attnbench.errors import AttnbenchError, DataError, UnknownNameError
from attnbench.runner.local import Display, pairing_workdir, release_workdir, threads_per_worker
from attnbench.runner.pairing import Pairing, base_fields, execute
from attnbench.specs import ResultRow


class RayUnavailableError(AttnbenchError):
    """Ray is not installed, or the cluster cannot be reached."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            "--executor ray needs Ray: pip install 'attnbench[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def run_pairing(pairing: Pairing, device: str, workdir: str, threads: int) -> tuple[str, Any]:
    """What a Ray worker runs: one pairing, its outcome as a tagged, picklable tuple."""
    torch.set_num_threads(threads)
    try:
        return "row", execute(pairing, torch.device(device), workdir=Path(workdir))
    except DataError as exc:
        return "data_error", str(exc)
    except UnknownNameError as exc:
        return "missing", (f"Ray worker on {socket.gethostname()} (pid {os.getpid()}) cannot run this pairing: {exc}. "
                           "Install the plugin's distribution in the cluster's environment, or pass it in Ray's "
                           "runtime_env")
    except Exception:  # noqa: BLE001 — reported as a 'failed' row by the parent
        return "crash", traceback.format_exc()


class RayExecutor:
    """Runs pairings as Ray tasks, at most ``jobs`` at a time, each with an optional timeout."""

    def __init__(self, device: torch.device, *, jobs: int = 1, timeout: float | None = None,
                 artifacts: Path | None = None, address: str | None = None, num_cpus: int | None = None) -> None:
        self.device = device
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.artifacts = artifacts
        self.address = address
        self.num_cpus = num_cpus

    def _connect(self) -> Any:
        ray = _import_ray()
        if ray.is_initialized():
            return ray
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a new local instance"
            raise RayUnavailableError(f"cannot start or reach Ray at {where}: {exc}") from None
        return ray

    def run(self, pairings: list[Pairing], on_row: Callable[[ResultRow], None], display: Display) -> None:
        """Run every pairing; ``on_row`` is called here, in the parent, as each finishes."""
        ray = self._connect()
        gpus = 1 if self.device.type == "cuda" else 0
        threads = threads_per_worker(self.jobs) if not self.address else 1
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_calls=1)(run_pairing)
        queue = list(pairings)
        running: dict[Any, tuple[Pairing, float]] = {}
        scratch: dict[Any, str | None] = {}  # temporary work folders (no artifacts root), removed when done
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    pairing = queue.pop(0)
                    workdir = pairing_workdir(pairing, self.device, self.artifacts)
                    ref = remote.remote(pairing, str(self.device), workdir, threads)
                    running[ref] = (pairing, time.monotonic())
                    scratch[ref] = workdir if self.artifacts is None else None
                    display.started(pairing)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                for ref in ready:
                    pairing, started = running.pop(ref)
                    try:
                        row = self._outcome(ray, ref, pairing, started)
                    except BaseException:
                        release_workdir(None, scratch.pop(ref))
                        raise
                    row = release_workdir(row, scratch.pop(ref))
                    on_row(row)
                    display.finished(pairing, row)
                for ref, (pairing, started) in list(running.items()):
                    elapsed = time.monotonic() - started
                    if self.timeout and elapsed > self.timeout:
                        ray.cancel(ref, force=True)
                        running.pop(ref)
                        release_workdir(None, scratch.pop(ref))
                        row = self._row(pairing, started, "timeout",
                                        f"exceeded --timeout {self.timeout:g} s (stopped after {elapsed:.1f} s)")
                        on_row(row)
                        display.finished(pairing, row)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
                release_workdir(None, scratch.pop(ref, None))

    def _outcome(self, ray: Any, ref: Any, pairing: Pairing, started: float) -> ResultRow:
        try:
            kind, value = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker died: out of memory, a segfault, a lost node
            return self._row(pairing, started, "failed", f"Ray task failed without a result: {exc}")
        if kind == "row":
            return value
        if kind == "data_error":
            raise DataError(value)
        return self._row(pairing, started, "failed", value)

    def _row(self, pairing: Pairing, started: float, status: str, error: str) -> ResultRow:
        return ResultRow(**base_fields(pairing, self.device), status=status, error=error,
                         finished_at=time.time(), duration_s=round(time.monotonic() - started, 3))
