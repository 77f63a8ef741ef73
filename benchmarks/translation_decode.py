"""Translation decoding with and without the decoder's cache: same tokens, same BLEU, less time.

Runs one translation pairing through the harness (``attnbench.runner.pairing.execute``, in this
process) and, where the task translates its test split, translates it twice with the trained
model: re-running the decoder over the whole prefix at every step (``cache=False``, the task's
decoding before issue 20) and stepping the decoder's KV cache / recurrent state (``cache=True``,
what the task does now). Prints the pairing's BLEU, whether the two decodes produced the same
sentences, and each decode's wall time::

    .venv/bin/python benchmarks/translation_decode.py --profile smoke
    .venv/bin/python benchmarks/translation_decode.py --profile quick --variant sdpa

Times are wall-clock seconds of one decode each on whatever else the host is running: compare
them within one run.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from attnbench_plugins.tasks.translation import model as model_module
from attnbench_plugins.tasks.translation import task as task_module

from attnbench.runner.pairing import Pairing, execute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", choices=("smoke", "quick", "standard"))
    parser.add_argument("--variant", default="sdpa")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    original = task_module.translate
    decodes: dict[bool, tuple[float, list[str]]] = {}

    def translate_both(*a, **k) -> list[str]:
        for cache in (False, True):
            task_module.greedy = functools.partial(model_module.greedy, cache=cache)
            task_module.beam_search = functools.partial(model_module.beam_search, cache=cache)
            start = time.perf_counter()
            hypotheses = original(*a, **k)
            decodes[cache] = (time.perf_counter() - start, hypotheses)
        task_module.greedy, task_module.beam_search = model_module.greedy, model_module.beam_search
        return decodes[True][1]

    task_module.translate = translate_both
    row = execute(Pairing(task="translation", variant=args.variant, profile=args.profile, seed=args.seed),
                  torch.device("cpu"))
    if row.status != "ok":
        raise SystemExit(f"the pairing ended {row.status}: {row.error}")
    (before, recomputed), (after, stepped) = decodes[False], decodes[True]
    differ = sum(a != b for a, b in zip(recomputed, stepped, strict=True))
    print(f"translation × {args.variant} at {args.profile}, seed {args.seed}: BLEU {row.metrics['bleu']!r} "
          f"(chrF {row.metrics['chrf']:.4f}) over {len(stepped)} test sentences")
    print(f"sentences that differ between the two decodes: {differ}")
    print(f"decode without cache (recompute the prefix): {before:.2f} s; with the cache: {after:.2f} s; "
          f"speed-up ×{before / after:.2f}")


if __name__ == "__main__":
    main()
