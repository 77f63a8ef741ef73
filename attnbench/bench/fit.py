"""Scaling figures from a sweep: the log-log slope of a cost and the efficiency length.

A cost that grows like ``c · L^p`` has slope ``p`` on a log-log plot: 2 for full
attention's score matrix, 1 for a linear-memory variant. The *efficiency length* of a
variant is where it starts to beat the baseline (``sdpa``) measured in the same run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class SlopeFit:
    """A least-squares line through ``(log L, log cost)``: ``cost ≈ exp(intercept) · L^slope``."""

    slope: float
    intercept: float
    lo: int
    hi: int
    points: int

    @property
    def fit_range(self) -> str:
        """The lengths the fit used, e.g. ``1024–16384 (5 pts)``."""
        return f"{self.lo}–{self.hi} ({self.points} pts)"


def loglog_slope(
    lengths: Sequence[int], values: Sequence[float | None], *, lo: int | None = None, hi: int | None = None
) -> SlopeFit | None:
    """Fit ``log value = slope · log L + intercept`` over the points that were measured.

    Points whose value is missing or not positive (a failed or skipped measurement)
    are left out, as are lengths outside ``[lo, hi]``. Returns None with fewer than two
    distinct lengths left, since no line is determined then.
    """
    points = [
        (int(length), float(value))
        for length, value in zip(lengths, values, strict=True)
        if value is not None and value > 0 and math.isfinite(value)
        and (lo is None or length >= lo) and (hi is None or length <= hi)
    ]
    if len({length for length, _ in points}) < 2:
        return None
    xs = [math.log(length) for length, _ in points]
    ys = [math.log(value) for _, value in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return SlopeFit(
        slope=slope, intercept=mean_y - slope * mean_x,
        lo=min(length for length, _ in points), hi=max(length for length, _ in points), points=len(points),
    )


def efficiency_length(
    lengths: Sequence[int], values: Sequence[float | None], baseline: Sequence[float | None]
) -> int | None:
    """The smallest L from which on the variant costs less than the baseline at every measured L.

    ``values[i]`` and ``baseline[i]`` are the costs at ``lengths[i]`` (ascending); None
    means that measurement did not finish (out of memory, timeout, error, skipped). At
    one L the variant *wins* when it finished and the baseline did not or cost more; it
    *loses* when it did not finish but the baseline did, or cost at least as much. An L
    where neither finished says nothing. The answer is the first winning L after which
    it never loses again, so one noisy crossing at a short length does not count; None
    ("—") when the variant never stays ahead.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    verdicts: list[tuple[int, bool]] = []
    for i in order:
        mine, base = values[i], baseline[i]
        if mine is None and base is None:
            continue
        verdicts.append((int(lengths[i]), mine is not None and (base is None or mine < base)))
    answer: int | None = None
    for length, wins in reversed(verdicts):
        if not wins:
            break
        answer = length
    return answer


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline
