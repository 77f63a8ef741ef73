"""How far along its training a run stopped: the share of the loss drop left to the last fifth.

A quick profile is early training for some tasks (sdpa's loss is still falling steeply at
its last step) and converged training for others; a reader comparing variants needs to know
which. :func:`late_drop_share` reads the per-step losses and says how much of the run's
whole loss drop came in its last fifth: near 0 when the curve has flattened, about 0.2 for a
straight line, larger when the run stopped while still improving fast.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The fraction of the steps at the end of a run whose loss drop is measured.
LATE_FRACTION = 0.2

#: A run whose last fifth brought at most this share of its loss drop has plateaued.
PLATEAU_SHARE = 0.1


def _window_mean(losses: Sequence[float], centre: int, half: int) -> float:
    lo, hi = max(0, centre - half), min(len(losses), centre + half + 1)
    return sum(losses[lo:hi]) / (hi - lo)


def late_drop_share(losses: Sequence[float]) -> float | None:
    """The share of the total loss drop that came in the last fifth of the steps.

    Step losses are noisy, so each point of the curve is the mean of a window of 5 % of the
    steps: the start (first window), the point four fifths in, and the end (last window).
    The result is ``(loss@4/5 − loss@end) / (loss@start − loss@end)``, clipped to [0, 1].
    None when the run is too short to tell (fewer than 10 steps) or its loss did not drop.
    """
    n = len(losses)
    if n < 10:
        return None
    half = max(1, n // 40)  # windows of ~5 % of the steps
    start = _window_mean(losses, half, half)
    end = _window_mean(losses, n - 1 - half, half)
    late = _window_mean(losses, int(round(n * (1 - LATE_FRACTION))), half)
    drop = start - end
    if not drop > 0:
        return None
    return min(1.0, max(0.0, (late - end) / drop))
