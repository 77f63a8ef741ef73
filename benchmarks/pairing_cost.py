"""What a quick pairing costs per variant, as a ratio to sdpa's, measured alternately in one process.

The reference run's pairing times come from a machine running two pairings at a time beside other
work, so they scatter by ±50 %. Here every variant runs the same task with the same settings in one
process, one after another, round after round, so load changes hit all of them alike; the medians
over rounds are compared. Each run is the task's own ``run()`` with its profile's settings and
``steps`` cut to ``--steps`` (training is the same step, repeated). The report predicts the quick
pairing as ``profile steps × (training time / steps run) + the rest`` (data, model, evaluation at
every test length) and gives it as a multiple of sdpa's, beside the training step's multiple.

    python benchmarks/pairing_cost.py --task selective-copy --variants sdpa,based,deltanet,performer --steps 20

One torch thread by default, what each of ``attnbench run --jobs 2``'s workers gets here.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from attnbench import RunContext, plugins
from attnbench.nn import build_attention
from attnbench.runner.pairing import NullProgress
from attnbench.training import seed_everything


class TrainClock:
    """A meter that only times the task's training phase."""

    def __init__(self) -> None:
        self.train_s = 0.0

    @contextlib.contextmanager
    def train(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.train_s += time.perf_counter() - start

    def count(self, n):
        pass

    def model(self, model, *inputs):
        pass

    def record(self, name, value):
        pass

    def artifact(self, name, path):
        pass


def one_run(task, variant: str, profile: str, config: dict, workdir: Path) -> tuple[float, float]:
    """(training seconds, whole run seconds) of one pairing with ``config``."""
    spec = plugins.get_attention(variant)
    seed_everything(0)
    clock = TrainClock()
    ctx = RunContext(attention=spec, make_attention=lambda c: build_attention(spec, c), device=torch.device("cpu"),
                     seed=0, profile=profile, config=config, data_dir=None, progress=NullProgress(), workdir=workdir,
                     meter=clock)
    start = time.perf_counter()
    task.run(ctx)
    return clock.train_s, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--variants", required=True, help="comma-separated; sdpa is added first if missing")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; every variant runs once per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = plugins.get_task(args.task)
    profile = dict(task.profiles[args.profile])
    full_steps = int(profile["steps"])
    config = {**profile, "steps": args.steps, "warmup_steps": min(int(profile.get("warmup_steps", 0)), args.steps // 2)}
    variants = ["sdpa", *[v for v in args.variants.split(",") if v != "sdpa"]]
    train: dict[str, list[float]] = {v: [] for v in variants}
    whole: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(task, "sdpa", args.profile, config, Path(tmp))  # warm-up: data caches, first-call costs
        for _ in range(args.repeats):
            for v in variants:
                (Path(tmp) / v).mkdir(exist_ok=True)
                t, w = one_run(task, v, args.profile, config, Path(tmp) / v)
                train[v].append(t)
                whole[v].append(w)
    print(f"task {args.task}, profile {args.profile} ({full_steps} steps; timed with {args.steps}), "
          f"{args.threads} thread(s), median of {args.repeats} alternating rounds")
    print(f"{'variant':16} {'step ms':>9} {'step ×sdpa':>10} {'rest s':>8} {'pairing s':>10} {'pairing ×sdpa':>13}")
    predicted = {}
    for v in variants:
        step = statistics.median(train[v]) / args.steps
        rest = statistics.median(w - t for w, t in zip(whole[v], train[v], strict=True))
        predicted[v] = (step, rest, full_steps * step + rest)
    s_step, _, s_pair = predicted["sdpa"]
    for v, (step, rest, pair) in predicted.items():
        print(f"{v:16} {step * 1e3:9.1f} {step / s_step:10.2f} {rest:8.1f} {pair:10.1f} {pair / s_pair:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
