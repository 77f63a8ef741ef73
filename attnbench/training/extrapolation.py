"""Length extrapolation: train at length L, score at L, 2L and 4L (ALiBi's protocol).

:func:`length_metrics` scores a trained model at each multiple of the training length and
names the results ``<metric>`` (1×), ``<metric>@2x`` and ``<metric>@4x``. A model that cannot
run past its training length (learned absolute positions, a variant built for a fixed
``max_len``) says so through ``length_limit()``; its longer cells are left out of the metrics,
never filled with a made-up number, and the reason is written to the pairing's
``extrapolation.json`` artifact with every length's value, so a report can show the cell
marked and plot the metric against the test length.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from attnbench.specs import EXTRAPOLATION_FACTORS, RunContext, extrapolated_metric


def limit_of(model: nn.Module) -> tuple[int, str] | None:
    """The model's ``length_limit()`` (``(longest length, why)``), or None when it has none or no limit."""
    limit = getattr(model, "length_limit", None)
    return limit() if callable(limit) else None


def length_metrics(
    model: nn.Module,
    ctx: RunContext,
    metric: str,
    train_length: int,
    score: Callable[[int], float],
    *,
    factors: Sequence[int] = EXTRAPOLATION_FACTORS,
) -> dict[str, float]:
    """``score(factor)`` at each factor the model can run, as ``{extrapolated_metric(metric, f): value}``.

    ``score(factor)`` evaluates the model on sequences ``factor`` times the training length
    (scaling what the task scales with length). Factors past the model's limit are skipped
    and explained in ``ctx.workdir/extrapolation.json`` (artifact ``extrapolation``)::

        {"metric": "accuracy", "train_length": 64,
         "lengths": {"1x": 64, "2x": 128, "4x": 256},
         "values": {"1x": 0.99, "2x": 0.71},
         "not_evaluated": {"4x": "learned absolute positions exist only for the first 64 positions"}}
    """
    limit = limit_of(model)
    metrics: dict[str, float] = {}
    record: dict = {"metric": metric, "train_length": train_length, "lengths": {}, "values": {}, "not_evaluated": {}}
    for factor in factors:
        label, length = f"{factor}x", factor * train_length
        record["lengths"][label] = length
        if limit is not None and length > limit[0]:
            record["not_evaluated"][label] = limit[1]
            continue
        value = float(score(factor))
        metrics[extrapolated_metric(metric, factor)] = value
        record["values"][label] = value
    path = Path(ctx.workdir) / "extrapolation.json"
    path.write_text(json.dumps(record, indent=1))
    ctx.meter.artifact("extrapolation", path)
    return metrics
