"""Evaluation over a split in eval mode, batch by batch, without gradients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def batched_eval(model: nn.Module, n: int, batch_size: int, fn: Callable[[torch.Tensor], T]) -> Iterator[T]:
    """``fn(index)`` for consecutive index batches over ``n`` examples, with ``model`` in eval mode
    and gradients off; the model's training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                yield fn(torch.arange(start, min(start + batch_size, n)))
    finally:
        model.train(was_training)
