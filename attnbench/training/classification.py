"""Training and scoring a classifier over token splits: what ListOps and LRA text share.

A split here is anything with ``len(split)``, ``split.batch(index, device) -> (tokens,
mask, labels)`` and ``split.majority_fraction()``; the model maps ``(tokens, mask)`` to
class logits.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.specs import RunContext
from attnbench.training.batches import shuffled_batches
from attnbench.training.evaluate import batched_eval
from attnbench.training.loop import TrainConfig, train_steps


class TokenSplit(Protocol):
    """A labelled split of token sequences (see the module docs)."""

    def __len__(self) -> int: ...

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def majority_fraction(self) -> float: ...


def train_classifier(model: nn.Module, split: TokenSplit, ctx: RunContext, batch_size: int) -> list[float]:
    """The profile's AdamW steps of cross-entropy on ``split`` through the shared loop; returns the losses."""

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        tokens, mask, labels = split.batch(index, ctx.device)
        return F.cross_entropy(model(tokens, mask), labels), len(index)

    batches = shuffled_batches(len(split), batch_size, torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(ctx.config), batches, loss)


def accuracy(model: nn.Module, split: TokenSplit, batch_size: int, device: torch.device) -> float:
    """Fraction of ``split`` classified correctly, in eval mode."""

    def correct(index: torch.Tensor) -> int:
        tokens, mask, labels = split.batch(index, device)
        return int((model(tokens, mask).argmax(-1) == labels).sum())

    return sum(batched_eval(model, len(split), batch_size, correct)) / len(split)


def classification_metrics(
    model: nn.Module, val: TokenSplit, test: TokenSplit, losses: list[float], ctx: RunContext, batch_size: int
) -> dict[str, float]:
    """Test accuracy (primary), validation accuracy, the test set's majority share and the mean
    loss of the last 10 steps; hands the model to the harness with one training-sized test batch.

    ``val_accuracy`` follows the convention ``report --best-of`` picks on: the primary metric
    measured on the validation split, named with the prefix ``val_``
    (:mod:`attnbench.leaderboard.best_of`)."""
    eval_size = int(ctx.config["eval_batch_size"])
    metrics = {
        "accuracy": accuracy(model, test, eval_size, ctx.device),
        "val_accuracy": accuracy(model, val, eval_size, ctx.device),
        "majority_baseline": test.majority_fraction(),
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
    }
    tokens, mask, _ = test.batch(torch.arange(min(batch_size, len(test))), ctx.device)
    ctx.meter.model(model, tokens, mask)
    return metrics
