"""Harness overhead: one pairing through `attnbench run` vs the same task trained by a bare loop.

Both sides run as fresh subprocesses timed from here, so both pay for the interpreter and
the torch import. The harness side adds what attnbench wraps around a task: CLI, plugin
discovery, the worker process, progress over a pipe, the cost meter (FLOPs, latency, peak
memory) and the SQLite write. The bare side calls the task's own ``run`` with no-op
progress and meter. Same task, variant, profile, seed and steps.

    python benchmarks/harness_overhead.py --task listops --variant sdpa --profile quick --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_LOOP = """
import contextlib, os, sys, tempfile
from pathlib import Path
import torch
from attnbench import RunContext, plugins
from attnbench.nn import build_attention
from attnbench.training import seed_everything

class NoMeter:
    def train(self): return contextlib.nullcontext()
    def count(self, n): pass
    def model(self, model, *inputs): pass

class NoProgress:
    def start(self, total, description=""): pass
    def advance(self, steps=1, **info): pass

task_name, variant, profile = sys.argv[1:4]
task = plugins.get_task(task_name)
spec = plugins.get_attention(variant)
torch.set_num_threads(os.cpu_count())
seed_everything(0)
ctx = RunContext(attention=spec, make_attention=lambda c: build_attention(spec, c), device=torch.device("cpu"),
                 seed=0, profile=profile, config=task.profiles[profile], data_dir=None, progress=NoProgress(),
                 workdir=Path(tempfile.mkdtemp()), meter=NoMeter())
print(task.run(ctx))
"""


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="listops")
    parser.add_argument("--variant", default="sdpa")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each side; medians compared")
    args = parser.parse_args()
    harness, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            bare.append(_wall([sys.executable, "-c", BARE_LOOP, args.task, args.variant, args.profile]))
            store = Path(tmp) / f"r{i}.sqlite"
            harness.append(_wall([sys.executable, "-m", "attnbench", "run", "--tasks", args.task, "--variants",
                                  args.variant, "--profile", args.profile, "--device", "cpu", "--store", str(store)]))
    h, b = statistics.median(harness), statistics.median(bare)
    print(f"task={args.task} variant={args.variant} profile={args.profile} repeats={args.repeats}")
    print(f"bare loop      : {b:7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in bare)})")
    print(f"attnbench run  : {h:7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in harness)})")
    print(f"overhead ratio : {h / b:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
