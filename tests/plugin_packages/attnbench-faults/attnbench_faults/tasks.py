"""Tasks that fail inside ``run()``: abort the process, hang, exhaust memory, raise, or go NaN."""

from __future__ import annotations

import os
import time

import torch

import attnbench

PROFILES = {p: {"size": 1} for p in attnbench.PROFILES}


class _Fault:
    domain = "fault"
    metric = attnbench.Metric(name="score", lower=0.0, upper=1.0)
    requires = frozenset()
    profiles = PROFILES

    def __init__(self, name: str, description: str, action, requires=frozenset()) -> None:
        self.name, self.description, self._action, self.requires = name, description, action, frozenset(requires)

    def run(self, ctx: attnbench.RunContext) -> dict[str, float]:
        ctx.make_attention(attnbench.AttentionConfig(num_heads=1, head_dim=4))  # a variant's build() runs first
        self._action(ctx)
        return {"score": 0.5}


def _abort(ctx) -> None:
    os.abort()  # SIGABRT: the worker dies in native code, without a result


def _hang(ctx) -> None:
    while True:
        time.sleep(1)


def _exhaust_memory(ctx) -> None:
    hoard = []
    while True:
        hoard.append(torch.ones(64 * 2**20 // 4))  # 64 MiB at a time, kept alive


def _raise(ctx) -> None:
    raise RuntimeError("fault-raises: a bug inside the task's run()")


def _nan(ctx) -> None:
    ctx.progress.start(1, "train")
    ctx.progress.advance(1, loss=float("nan"))


TASKS = [
    _Fault("fault-abort", "calls os.abort() inside run()", _abort),
    _Fault("fault-hang", "sleeps forever inside run() (needs arbitrary masks: faulty-build skips it)", _hang,
           {"arbitrary_mask"}),
    _Fault("fault-memory", "allocates 64 MiB tensors until memory runs out", _exhaust_memory),
    _Fault("fault-raises", "raises RuntimeError inside run()", _raise),
    _Fault("fault-nan", "reports a NaN training loss", _nan),
]


@attnbench.hookimpl
def register_tasks(register):
    for task in TASKS:
        register(task)
