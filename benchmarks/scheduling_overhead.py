"""Scheduling overhead: the same smoke pairings run in-process, through the local executor
(one worker process per pairing) and through the Ray executor (a local Ray, one Ray task per
pairing), each as a ratio to in-process, all measured in one run of this script.

In-process calls :func:`attnbench.runner.pairing.execute` one pairing after another. The
local executor adds a worker process per pairing, forked from its fork server (a fresh
interpreter that imported torch, attnbench and its plugins once, :mod:`attnbench.runner.preload`,
and then only forks; never a copy of this process), progress over a pipe and the row sent back;
Ray adds a fresh Ray worker process per pairing (``max_calls=1``), which imports torch and the
plugins anew. Every side gives a pairing the same number of torch threads (the executors'
``threads_per_worker``). The local executor goes first, after one warm-up pairing through it,
which starts the fork server (about 2 s of CPU, once per process) and fills the data caches, so
the timed side holds neither. Then one warm-up pairing in-process, the in-process side, and Ray.
``ray.init`` is timed separately and is not in the Ray side.

    OMP_NUM_THREADS=1 python benchmarks/scheduling_overhead.py --task listops --variants sdpa,softmax,linear,local
"""

from __future__ import annotations

import argparse
import time

import torch

from attnbench.runner.local import LocalExecutor, threads_per_worker
from attnbench.runner.matrix import plan
from attnbench.runner.pairing import execute

CPU = torch.device("cpu")


class Quiet:
    """A display that shows nothing (the executors' progress is not what is measured)."""

    def started(self, pairing): ...

    def progress(self, pairing, done, total, description, info): ...

    def finished(self, pairing, row): ...


def _timed(run) -> tuple[float, list]:
    rows: list = []
    start = time.perf_counter()
    run(rows)
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="listops")
    parser.add_argument("--variants", default="sdpa,softmax,linear,local")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--jobs", type=int, default=1, help="pairings at once in the executors (default 1: sequential)")
    args = parser.parse_args()
    pairings = plan(tasks=[args.task], variants=args.variants.split(","), profile=args.profile, seeds=[0])
    threads = threads_per_worker(args.jobs)  # what each executor gives a pairing, so every side computes alike
    torch.set_num_threads(threads)

    def in_process(rows):
        rows.extend(execute(p, CPU) for p in pairings)

    def local(rows):
        LocalExecutor(CPU, jobs=args.jobs).run(pairings, rows.append, Quiet())

    LocalExecutor(CPU).run(pairings[:1], [].append, Quiet())  # warm-up: starts the fork server, fills data caches
    results = {"local executor": _timed(local)}
    execute(pairings[0], CPU)  # warm-up in this process: plugins, data caches
    results["in-process"] = _timed(in_process)
    import ray  # started only now, so its daemons do not run beside the first two sides

    from attnbench.runner.ray_cluster import RayExecutor

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_init = time.perf_counter() - start
    results["ray executor"] = _timed(
        lambda rows: RayExecutor(CPU, jobs=args.jobs, num_cpus=2).run(pairings, rows.append, Quiet()))
    ray.shutdown()
    base = results["in-process"][0]
    print(f"task={args.task} variants={args.variants} profile={args.profile} pairings={len(pairings)} "
          f"jobs={args.jobs} (executors), torch threads per pairing={threads}")
    for name, (seconds, rows) in results.items():
        statuses = ",".join(sorted({r.status for r in rows}))
        print(f"{name:15}: {seconds:7.2f} s  ratio to in-process {seconds / base:5.2f}  "
              f"({seconds / len(pairings):.2f} s a pairing; statuses {statuses})")
    print(f"ray.init (not included above): {ray_init:.2f} s")


if __name__ == "__main__":
    main()
