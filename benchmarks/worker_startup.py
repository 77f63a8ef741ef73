"""Worker start-up: how long a pairing waits for its worker process, per way of starting one.

Each sample starts a worker the way the local executor does (same context, same target
module) and times from ``Process.start()`` until the worker has loaded the plugin set,
which is the moment it could begin the pairing: the wall time, and the CPU time the
worker spent getting there (its CPU clock starts at zero when it is forked or spawned),
which is the steadier figure on a loaded machine. Measured for the fork server (the CPU
default; its one-off start is reported on its own), spawn (CUDA and MPS workers) and, for
reference, a plain fork of this process (what the executor did before: fast, but it
inherits whatever the plugins did at import, and hangs after a multi-threaded torch op).

    python benchmarks/worker_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from multiprocessing import forkserver

from attnbench.runner.local import PRELOAD


def ready(conn) -> None:
    """The worker's side: load the plugins (as worker.main does first), then say so."""
    from attnbench import plugins

    plugins.load()
    conn.send(time.process_time())
    conn.close()


def sample(ctx: mp.context.BaseContext) -> tuple[float, float]:
    """(wall seconds, the worker's CPU seconds) from start to ready."""
    receive, send = ctx.Pipe(duplex=False)
    start = time.perf_counter()
    process = ctx.Process(target=ready, args=(send,), daemon=True)
    process.start()
    send.close()
    cpu = receive.recv()
    seconds = time.perf_counter() - start
    process.join()
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="workers started per method (default 5)")
    args = parser.parse_args()
    results = {}
    server = mp.get_context("forkserver")
    server.set_forkserver_preload([PRELOAD])
    forkserver.ensure_running()
    results["forkserver (first worker: server start)"] = [sample(server)]
    results["forkserver"] = [sample(server) for _ in range(args.repeats)]
    results["spawn"] = [sample(mp.get_context("spawn")) for _ in range(args.repeats)]
    from attnbench import plugins

    plugins.load()  # as the parent of `attnbench run` has, before a plain fork
    results["fork (reference)"] = [sample(mp.get_context("fork")) for _ in range(args.repeats)]
    for name, samples in results.items():
        wall, cpu = zip(*samples, strict=True)
        print(f"{name:42}: wall median {statistics.median(wall):.3f} s (min {min(wall):.3f}), "
              f"worker CPU median {statistics.median(cpu):.3f} s (min {min(cpu):.3f}), n={len(samples)}")


if __name__ == "__main__":
    main()
