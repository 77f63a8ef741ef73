"""One seed for Python, NumPy and torch: CPU runs with one seed are then reproducible."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; CPU runs with one seed are then reproducible."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for tasks that do not use it
        pass
