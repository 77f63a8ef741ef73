"""nsa's cost against sdpa's: its fast path, its reference path and sdpa, timed alternately in one process.

Three measurements, each the median of ``--repeats`` rounds in which every contender runs once
on the same inputs (so a change in the machine's load hits all of them alike):

* ``mqar``: one attention call, forward and backward, at MQAR's quick shape (B 64, H 1, L 64,
  D 64, causal; nsa with window 16 as the task passes it).
* ``cls``: the same at a classification shape (B 32, H 4, L 512, D 16, not causal, a key padding
  mask with lengths drawn from [L/4, L]; nsa's default options). ``local`` with nsa's window is
  timed with them: nsa's window branch is that module.
* ``mqar-step``: one AdamW training step (forward, backward, clipping, update) of MQAR's quick
  model (a 2-layer causal LM of width 64 over 64 tokens, batch 64), the variant in its attention.

Ratios are to sdpa. ``--threads`` defaults to 1, what ``attnbench run --jobs 2`` gives each
worker on this 2-core machine. With 2 threads on a loaded machine every parallel region waits
for a descheduled thread, so a step's time counts its operations more than its arithmetic.

    python benchmarks/nsa_speed.py --repeats 21
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from attnbench import AttentionConfig, plugins
from attnbench.nn.causal_lm import CausalLM

SHAPES = {  # batch, heads, length, head_dim, causal, padded, nsa options
    "mqar": (64, 1, 64, 64, True, False, {"window": 16}),
    "cls": (32, 4, 512, 16, False, True, {}),
}


def attention(name: str, heads: int, dim: int, options: dict, fused: bool = True):
    torch.manual_seed(0)
    config = AttentionConfig(num_heads=heads, head_dim=dim, max_len=1024, options=options)
    module = plugins.load().attention.get(name).build(config)
    if name == "nsa":
        module.fused = fused
    return module


def attention_round(shape: str):
    """``{contender: callable}`` doing one forward and backward at ``shape``."""
    batch, heads, length, dim, causal, padded, options = SHAPES[shape]
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(batch, heads, length, dim, generator=g).requires_grad_() for _ in range(3))
    grad = torch.randn(batch, heads, length, dim, generator=g)
    mask = None
    if padded:
        lengths = torch.randint(length // 4, length + 1, (batch,), generator=g)
        mask = (torch.arange(length) < lengths[:, None])[:, None, None, :]
    window = {"window": options.get("window", 64)}  # local with nsa's window: what nsa's window branch costs
    modules = {"sdpa": attention("sdpa", heads, dim, {}), "nsa reference": attention("nsa", heads, dim, options, False),
               "nsa": attention("nsa", heads, dim, options), "local": attention("local", heads, dim, window)}

    def run(module):
        def call():
            q.grad = k.grad = v.grad = None
            module(q, k, v, attn_mask=mask, is_causal=causal).backward(grad)
        return call

    return {name: run(module) for name, module in modules.items()}


def step_round():
    """``{contender: callable}`` doing one training step of MQAR's quick model."""
    cfg = plugins.load().tasks.get("mqar").profiles["quick"]
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, int(cfg["vocab_size"]), (int(cfg["batch_size"]), int(cfg["length"])), generator=g)
    targets = torch.randint(0, int(cfg["vocab_size"]), tokens.shape, generator=g)

    def run(name: str, fused: bool = True):
        torch.manual_seed(0)
        model = CausalLM(plugins.load().attention.get(name), vocab_size=int(cfg["vocab_size"]), dim=int(cfg["dim"]),
                         depth=int(cfg["depth"]), heads=int(cfg["heads"]), positions=str(cfg["positions"]),
                         max_len=int(cfg["length"]), options=dict(cfg["attention_options"]))
        for module in model.modules():
            if hasattr(module, "fused") and type(module).__name__ == "NativeSparseAttention":
                module.fused = fused
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def call():
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return call

    return {"sdpa": run("sdpa"), "nsa reference": run("nsa", False), "nsa": run("nsa")}


def measure(calls, repeats: int) -> dict[str, float]:
    for call in calls.values():  # warm-up
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=["mqar", "cls", "mqar-step"], action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} (1 min) at the start")
    for what in args.only or ["mqar", "cls", "mqar-step"]:
        calls = step_round() if what == "mqar-step" else attention_round(what)
        med = measure(calls, args.repeats)
        cells = ", ".join(f"{name} {t * 1e3:.1f} ms ({t / med['sdpa']:.2f}×)" for name, t in med.items())
        print(f"{what}: {cells}")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
