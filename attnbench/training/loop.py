"""The training loop every task shares: AdamW steps under the harness's meter and progress."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnbench.specs import RunContext
from attnbench.training.convergence import late_drop_share
from attnbench.training.schedule import warmup_cosine


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The optimiser settings a profile gives: steps, peak rate, decay, warm-up, clipping.

    ``budget_s`` (``time_budget_s`` in a profile, set by ``attnbench run --budget``) trains
    for that many seconds of wall time instead of ``steps`` steps: the cosine schedule then
    runs over the elapsed fraction of the budget, and the steps reached are recorded.
    """

    steps: int
    lr: float
    weight_decay: float = 0.01
    warmup_steps: int = 0
    clip_norm: float | None = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    budget_s: float | None = None

    @classmethod
    def from_profile(cls, config: Mapping[str, Any]) -> TrainConfig:
        """Read ``steps``, ``lr``, ``weight_decay``, ``warmup_steps``, ``clip_norm`` from a profile dict."""
        clip = config.get("clip_norm", 1.0)
        budget = config.get("time_budget_s")
        return cls(
            steps=int(config["steps"]), lr=float(config["lr"]),
            weight_decay=float(config.get("weight_decay", 0.01)), warmup_steps=int(config.get("warmup_steps", 0)),
            clip_norm=None if clip is None else float(clip), budget_s=None if budget is None else float(budget),
        )


def train_steps(
    model: nn.Module,
    ctx: RunContext,
    config: TrainConfig,
    batches: Iterator[Any],
    loss_fn: Callable[[Any], tuple[torch.Tensor, int]],
    *,
    description: str = "train",
) -> list[float]:
    """Run ``config.steps`` optimiser steps (or train for ``config.budget_s`` seconds) and
    return every step's loss.

    ``loss_fn(batch)`` computes the loss of one item from ``batches`` (moving it to the
    device itself) and returns ``(loss, examples_in_batch)``. The whole loop is timed by
    ``ctx.meter.train()``, examples are counted for throughput, and each step's loss goes
    to ``ctx.progress.advance``, which marks the pairing ``diverged`` when it is NaN or Inf.
    The loss curve is saved beside the pairing's other files (:func:`save_loss_curve`); the
    row gets ``train_steps`` and ``late_drop_share`` (:mod:`attnbench.training.convergence`).
    Under a time budget the clock is read after each step's ``loss.item()``, which waits
    for the device, so the budget is wall time on the device, not time spent queueing work.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
    )
    budget = config.budget_s
    schedule = warmup_cosine(config.warmup_steps, config.steps)
    losses: list[float] = []
    ctx.progress.start(config.steps if budget is None else int(math.ceil(budget)), description)
    model.train()
    with ctx.meter.train():
        start = time.perf_counter()
        elapsed = 0.0
        while len(losses) < config.steps if budget is None else elapsed < budget:
            step = len(losses)
            factor = schedule(step) if budget is None else _budget_factor(step, elapsed / budget, config.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * factor
            loss, examples = loss_fn(next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            ctx.meter.count(examples)
            losses.append(loss.item())
            if budget is None:
                ctx.progress.advance(1, loss=losses[-1])
            else:
                now = time.perf_counter() - start
                ctx.progress.advance(int(now) - int(elapsed), loss=losses[-1])
                elapsed = now
    ctx.meter.record("train_steps", len(losses))
    share = late_drop_share(losses)
    if share is not None:
        ctx.meter.record("late_drop_share", round(share, 4))
    save_loss_curve(ctx, losses, description)
    return losses


def _budget_factor(step: int, fraction: float, warmup: int) -> float:
    """The learning-rate factor under a time budget: linear warm-up over ``warmup`` steps,
    then cosine decay over the elapsed fraction of the budget (0 at the end)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))


def save_loss_curve(ctx: RunContext, losses: list[float], name: str = "train") -> Path:
    """Write the per-step losses to ``ctx.workdir/loss-<name>.json`` and record it as the
    ``loss_curve`` artifact, so a report can plot training curves per pairing."""
    path = Path(ctx.workdir) / f"loss-{name}.json"
    path.write_text(json.dumps({"step": list(range(1, len(losses) + 1)), "loss": losses}))
    ctx.meter.artifact("loss_curve" if name == "train" else f"loss_curve_{name}", path)
    return path
