"""Learning-rate schedules, as multiplicative factors for ``torch.optim.lr_scheduler.LambdaLR``."""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to the peak rate over ``warmup`` steps, then cosine decay to zero at ``total``."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor
