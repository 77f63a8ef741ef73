"""Each measurement in a fresh process, with a timeout, so no failure stops the sweep.

The worker is started with the ``spawn`` method: it imports torch anew, owns its
allocator and device context, and takes nothing over from earlier measurements. It
sends each phase's figures to the parent as soon as they exist, so a measurement
that runs out of time in its backward pass still reports its forward figures.
Failures become a status: ``oom`` (an allocator error, or the process killed by
SIGKILL, which is what the kernel's OOM killer sends; on CPU the worker caps its
own heap at the memory available, so it fails cleanly before the OOM killer acts), ``timeout`` (killed after
``timeout`` seconds, process start-up included) or ``error`` (any other exception,
with its message).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from attnbench.bench.measure import Job, run_job

_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "outofmemory")


@dataclass(kw_only=True)
class Outcome:
    """What came back from one worker: a status, its message and the figures it sent."""

    status: str  # ok | oom | timeout | error
    error: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def _worker_main(job: Job, conn: Connection, runner: Callable[..., None] = run_job) -> None:
    """The worker process: measure ``job`` with ``runner`` (a module-level function, so spawn can
    import it), sending ``("figures", {...})`` then a final message."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's CUDA probe is noise on CPU-only hosts
    try:
        if job.device.startswith("cpu"):
            limit_host_memory(job.memory_limit)
        runner(job, lambda figures: conn.send(("figures", figures)))
    except BaseException as exc:  # noqa: BLE001 — everything goes back to the parent as a status
        conn.send(("failed", _classify(exc)))
    else:
        conn.send(("done", {}))
    finally:
        conn.close()


def limit_host_memory(limit: str) -> int | None:
    """Cap this process's heap growth so an L that does not fit fails as ``oom`` in this process.

    Without a cap the kernel's OOM killer picks a victim, which may be another program.
    ``limit`` is ``"none"``, ``"auto"`` (90 % of the memory available now) or MiB. The cap
    is ``RLIMIT_DATA`` (private writable memory, where tensors live) above what the
    process holds already. Returns the cap in bytes, or None where none was set
    (``"none"``, or no ``/proc`` to read from).
    """
    if limit == "none":
        return None
    import resource  # POSIX only; imported here so the module loads everywhere

    try:
        held = _proc_kib("/proc/self/status", "VmData:")
        budget = 0.9 * _proc_kib("/proc/meminfo", "MemAvailable:") if limit == "auto" else float(limit) * 1024
    except OSError:
        return None
    cap = int((held + budget) * 1024)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    return cap


def _proc_kib(path: str, field: str) -> int:
    with open(path) as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1])
    raise OSError(f"{field} not found in {path}")


def _classify(exc: BaseException) -> dict[str, str]:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    is_oom = type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError) or any(
        marker in text.lower() for marker in _OOM_MARKERS)
    return {"status": "oom" if is_oom else "error", "error": first[:400]}


def run_isolated(job: Job, timeout: float, runner: Callable[..., None] = run_job) -> Outcome:
    """Run ``job`` in a fresh spawned process; kill it after ``timeout`` seconds.

    ``runner(job, emit)`` does the measuring (default :func:`~attnbench.bench.measure.run_job`;
    ``attnbench.bench.decode`` passes its own).
    """
    context = mp.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_worker_main, args=(job, sender, runner), daemon=True,
                              name=f"attnbench-bench-{job.variant}-{getattr(job, 'length', 'decode')}")
    start = time.perf_counter()
    process.start()
    sender.close()
    outcome = Outcome(status="")
    phase = "start-up and set-up"
    try:
        while not outcome.status:
            left = timeout - (time.perf_counter() - start)
            if left <= 0:
                outcome.status, outcome.error = "timeout", f"timed out after {timeout:g} s (during {phase})"
                break
            if not receiver.poll(min(left, 0.2)):
                if not process.is_alive() and not receiver.poll(0):
                    outcome.status, outcome.error = _died(process.exitcode)
                continue
            try:
                kind, payload = receiver.recv()
            except EOFError:
                process.join(5)
                outcome.status, outcome.error = _died(process.exitcode)
                continue
            if kind == "figures":
                outcome.figures.update(payload)
                phase = _next_phase(outcome.figures) if runner is run_job else f"after {len(outcome.figures)} figures"
            elif kind == "failed":
                outcome.status, outcome.error = payload["status"], f"{payload['error']} (during {phase})"
            else:
                outcome.status = "ok"
    finally:
        outcome.wall_s = time.perf_counter() - start
        receiver.close()
        _stop(process, grace=2.0 if outcome.status in ("ok", "error", "oom") else 0.0)
    return outcome


def _next_phase(figures: dict[str, Any]) -> str:
    """The phase the worker is in, given the figures it has sent so far (see ``run_job``)."""
    for key, phase in (("peak_fwd_mb", "fwd warm-up and memory/FLOPs pass"),
                       ("fwd_ms", "fwd timing"), ("peak_fwdbwd_mb", "fwd+bwd warm-up and memory pass"),
                       ("fwdbwd_ms", "fwd+bwd timing")):
        if key not in figures:
            return phase
    return "shutdown"


def _died(exitcode: int | None) -> tuple[str, str]:
    if exitcode is not None and exitcode == -signal.SIGKILL:
        return "oom", "worker killed by SIGKILL (most likely the kernel's OOM killer)"
    if exitcode is not None and exitcode < 0:
        return "error", f"worker killed by signal {signal.Signals(-exitcode).name}"
    return "error", f"worker exited with status {exitcode} without reporting a result"


def _stop(process: mp.process.BaseProcess, grace: float) -> None:
    """End ``process`` (this worker only): let it exit for ``grace`` seconds, then ask, then insist."""
    process.join(grace)
    if process.is_alive():
        process.terminate()
        process.join(5)
    if process.is_alive():
        process.kill()
        process.join(5)
