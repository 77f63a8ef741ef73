"""The training loop every task shares: AdamW steps under the harness's meter and progress."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnbench.specs import RunContext
from attnbench.training.schedule import warmup_cosine


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The optimiser settings a profile gives: steps, peak rate, decay, warm-up, clipping."""

    steps: int
    lr: float
    weight_decay: float = 0.01
    warmup_steps: int = 0
    clip_norm: float | None = 1.0
    betas: tuple[float, float] = (0.9, 0.98)

    @classmethod
    def from_profile(cls, config: Mapping[str, Any]) -> TrainConfig:
        """Read ``steps``, ``lr``, ``weight_decay``, ``warmup_steps``, ``clip_norm`` from a profile dict."""
        clip = config.get("clip_norm", 1.0)
        return cls(
            steps=int(config["steps"]), lr=float(config["lr"]),
            weight_decay=float(config.get("weight_decay", 0.01)), warmup_steps=int(config.get("warmup_steps", 0)),
            clip_norm=None if clip is None else float(clip),
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
    """Run ``config.steps`` optimiser steps and return every step's loss.

    ``loss_fn(batch)`` computes the loss of one item from ``batches`` (moving it to the
    device itself) and returns ``(loss, examples_in_batch)``. The whole loop is timed by
    ``ctx.meter.train()``, examples are counted for throughput, and each step's loss goes
    to ``ctx.progress.advance``, which marks the pairing ``diverged`` when it is NaN or Inf.
    The loss curve is saved beside the pairing's other files (:func:`save_loss_curve`).
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, config.steps))
    losses: list[float] = []
    ctx.progress.start(config.steps, description)
    model.train()
    with ctx.meter.train():
        for _ in range(config.steps):
            loss, examples = loss_fn(next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
            ctx.meter.count(examples)
            losses.append(loss.item())
            ctx.progress.advance(1, loss=losses[-1])
    save_loss_curve(ctx, losses, description)
    return losses


def save_loss_curve(ctx: RunContext, losses: list[float], name: str = "train") -> Path:
    """Write the per-step losses to ``ctx.workdir/loss-<name>.json`` and record it as the
    ``loss_curve`` artifact, so a report can plot training curves per pairing."""
    path = Path(ctx.workdir) / f"loss-{name}.json"
    path.write_text(json.dumps({"step": list(range(1, len(losses) + 1)), "loss": losses}))
    ctx.meter.artifact("loss_curve" if name == "train" else f"loss_curve_{name}", path)
    return path
