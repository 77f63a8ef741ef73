"""On which tasks does a per-variant learning rate change the ranking? (issue 24, item 3)

For every task, each variant trains at three rates around the task's own rate (÷3, ×1, ×3 by
default) through ``attnbench run --sweep lr=…`` into one store. Then, per task, two rankings of
the variants on the test metric are compared:

* **fixed rate**: every variant at the task's rate (what the leaderboards show by default);
* **best of lr**: every variant at the rate that scored best on *validation*
  (:func:`attnbench.leaderboard.best_of.best_of`, the rule of ``report --best-of lr``).

Per task it prints both orders, the rate each variant picked, Kendall's τ between the two
rankings and whether the leader changed, and writes the same as a markdown file. A task where
τ is low or the leader changes is one where the reference should carry the three-point grid.

Runs resume: a row already in the store is not run again, so the script can be stopped and
restarted. ``--reuse STORE`` copies in the rows another store (the reference run's) already
has at each task's own rate, so they are not trained twice. Tasks that report no validation
metric (translation, detection, the probes) cannot be picked on validation and are not offered.

    python benchmarks/lr_sensitivity.py --store attnbench-results/lr-grid.sqlite \\
        --out benchmarks/lr-sensitivity-cpu.md
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

#: Tasks whose rows carry the validation twin of their primary metric (README, "Learning-rate fairness").
TASKS = ["listops", "text-classification", "image-classification", "lra-image", "lra-text", "lra-retrieval",
         "lra-pathfinder", "medical-imaging", "speech-commands", "sequential-recommendation", "language-modeling"]
#: The six variants of issue 24's seed study: softmax, positional, windowed, kernel, low-rank, state space.
VARIANTS = ["sdpa", "rope", "local", "linear", "linformer", "s4d"]


def grid(lr: float, factors: list[float]) -> list[float]:
    """The rates ``lr × factor``, rounded to two significant digits (0.003 → 0.001, 0.003, 0.009)."""
    return [float(f"{lr * f:.2g}") for f in factors]


def reuse_rows(task: str, args: argparse.Namespace) -> int:
    """Copy into the grid's store the ok rows ``--reuse`` holds for this task's fixed-rate cells.

    Only rows of this machine's environment and of the grid's profile, seeds and variants, with no
    variant options, are taken, each under its own key (task, variant, profile, seed, environment,
    configuration hash), and never over a row the store has: ``attnbench run --resume`` then skips
    what was copied. A store without a learning-rate sweep (the reference run's) holds only each
    task's own rate, so what it gives is the fixed-rate cells. Returns how many rows were copied.
    """
    import torch

    from attnbench.runner.pairing import environment
    from attnbench.store import Store

    env, seeds = environment(torch.device("cpu")), {int(s) for s in args.seeds.split(",")}
    with Store(args.reuse, readonly=True) as source:
        rows = [r for r in source.rows(task=task, profile=args.profile)
                if r.status == "ok" and r.environment == env and r.seed in seeds and r.variant in args.variants
                and not (r.config or {}).get("variant_options")]
    with Store(args.store) as store:
        have = set(store.statuses())
        fresh = [r for r in rows if r.key not in have]
        for row in fresh:
            store.write(row)
    return len(fresh)


def run_grid(task: str, rates: list[float], args: argparse.Namespace) -> int:
    command = [sys.executable, "-m", "attnbench", "run", "--profile", args.profile, "--tasks", task,
               "--variants", ",".join(args.variants), "--seeds", args.seeds, "--sweep",
               "lr=" + ",".join(f"{r:g}" for r in rates), "--store", str(args.store), "--resume",
               "--jobs", str(args.jobs), "--timeout", "1800"]
    print("$", " ".join(command[2:]), flush=True)
    return subprocess.run(command, check=False).returncode


def kendall_tau(first: dict[str, float], second: dict[str, float]) -> float:
    """Kendall's τ-b between two scorings of the same variants (1: same order, −1: reversed; ties counted as ties)."""
    from scipy.stats import kendalltau

    names = [n for n in first if n in second]
    if len(names) < 2:
        return math.nan
    return float(kendalltau([first[n] for n in names], [second[n] for n in names]).statistic)


def leaders(scores: dict[str, float], sign: int) -> set[str]:
    """The variants sharing the best score (to the three decimals the table shows)."""
    top = max(sign * round(s, 3) for s in scores.values())
    return {v for v, s in scores.items() if sign * round(s, 3) == top}


def analyse(task: str, base: float, args: argparse.Namespace) -> dict | None:
    """Both rankings of one task from the store, or None when it holds no grid for it."""
    from attnbench import plugins
    from attnbench.leaderboard.best_of import best_of
    from attnbench.leaderboard.tables import variant_label
    from attnbench.store import Store

    spec = plugins.load().tasks.get(task)
    with Store(args.store, readonly=True) as store:
        rows = [r for r in store.rows(task=task, profile=args.profile) if variant_label(r) in args.variants]
    found = best_of(rows, {task: spec.metric})
    if not found.tables:
        return None
    table = found.tables[0]
    sign = 1 if spec.metric.higher_is_better else -1
    seeds = sorted({r.seed for r in rows})

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    fixed = {}
    for variant in args.variants:
        scores = [r.metrics[spec.metric.name] for r in rows if variant_label(r) == variant and r.status == "ok"
                  and math.isclose(r.config["lr"], base) and spec.metric.name in r.metrics]
        if len(scores) == len(seeds):
            fixed[variant] = mean(scores)
    best = {v: mean([c.test for c in table.chosen[v].values()]) for v in table.chosen
            if len(table.chosen[v]) == len(seeds)}
    order_fixed = sorted(fixed, key=lambda v: -sign * fixed[v])
    order_best = sorted(best, key=lambda v: -sign * best[v])
    picks = {v: ", ".join(f"{c.value:g}" for _, c in sorted(table.chosen[v].items())) for v in table.chosen}
    return {"task": task, "metric": spec.metric.name, "base": base, "grid": table.grid, "fixed": fixed,
            "best": best, "order_fixed": order_fixed, "order_best": order_best, "picks": picks,
            "tau": kendall_tau(fixed, best),
            "leader_changed": bool(fixed and best and not leaders(fixed, sign) & leaders(best, sign))}


def markdown(results: list[dict], args: argparse.Namespace, command: str, minutes: float) -> str:
    ran = ("Read from the store (rows trained by earlier runs of this script)." if args.analyse_only
           else f"Wall time of this run: {minutes:.0f} min.")
    lines = ["# Learning-rate sensitivity of the quick rankings (issue 24, item 3)", "",
             "```bash", command, "```", "",
             f"Profile `{args.profile}`, seeds {args.seeds}, variants {', '.join(args.variants)}; each task's rate "
             f"× {', '.join(f'{f:g}' for f in args.factors)}. \"fixed\" ranks every variant at the task's own rate; "
             "\"best of lr\" at each variant's rate picked on validation (the rule of `report --best-of lr`), "
             "both on the test metric. τ is Kendall's τ between the two orders; 1 means the rate does not "
             f"change the ranking (τ-b: equal scores count as ties). \"Leader changed\": no variant that led at the "
             f"fixed rate (to three decimals) leads at its best rate. {ran}", "",
             "| task | rate (grid) | fixed-rate order | best-of-lr order | τ | leader changed |",
             "|---|---|---|---|---:|---|"]
    for r in results:
        fixed = " > ".join(f"{v} {r['fixed'][v]:.3f}" for v in r["order_fixed"])
        best = " > ".join(f"{v} {r['best'][v]:.3f} @{r['picks'][v]}" for v in r["order_best"])
        grid_text = ", ".join(f"{g:g}" for g in r["grid"])
        tau = "n/a (a tie)" if math.isnan(r["tau"]) else f"{r['tau']:.2f}"
        lines.append(f"| {r['task']} ({r['metric']}) | {r['base']:g} ({grid_text}) | {fixed} | {best} | "
                     f"{tau} | {'yes' if r['leader_changed'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=Path("attnbench-results/lr-grid.sqlite"))
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (default: print only)")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--factors", default="0.333,1,3", help="multiples of each task's rate")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--analyse-only", action="store_true", help="read the store, run nothing")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="another store (e.g. the reference run's) whose rows at each task's own rate are copied "
                             "in instead of being run again")
    args = parser.parse_args()
    args.variants = args.variants.split(",")
    args.factors = [float(f) for f in args.factors.split(",")]
    if 1.0 not in args.factors:
        parser.error("--factors must include 1 (the task's own rate, the fixed-rate ranking)")

    from attnbench import plugins

    start = time.monotonic()
    results = []
    for task in args.tasks.split(","):
        base = plugins.load().tasks.get(task).profiles[args.profile]["lr"]
        if args.reuse and not args.analyse_only:
            print(f"{task}: {reuse_rows(task, args)} fixed-rate row(s) copied from {args.reuse}", flush=True)
        if not args.analyse_only and run_grid(task, grid(base, args.factors), args) not in (0, 1):
            print(f"{task}: the run stopped; rerun this script to resume", file=sys.stderr)
            return 1
        result = analyse(task, float(f"{base:.2g}"), args)
        if result is None:
            print(f"{task}: no grid in {args.store}")
            continue
        results.append(result)
        print(f"{task}: τ = {result['tau']:.2f}; fixed {' > '.join(result['order_fixed'])}; "
              f"best of lr {' > '.join(result['order_best'])}", flush=True)
    command = "python benchmarks/lr_sensitivity.py " + " ".join(sys.argv[1:])
    text = markdown(results, args, command, (time.monotonic() - start) / 60)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "100")
    sys.exit(main())
