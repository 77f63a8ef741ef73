"""Index batches over a split, reshuffled every epoch by a seeded generator."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, *, drop_last: bool = True) -> Iterator[torch.Tensor]:
    """Index tensors of ``batch_size`` over ``n`` examples, a fresh permutation every epoch, forever.

    With ``drop_last`` (the default) every batch is full; a split smaller than one batch
    yields the whole split each time, so training never stalls on tiny data.
    """
    if n <= 0:
        raise ValueError("cannot draw batches from an empty split")
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        stop = n - batch_size + 1 if drop_last else n
        for start in range(0, stop, batch_size):
            yield order[start : start + batch_size]
