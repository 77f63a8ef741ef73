"""The statistics behind the leaderboards: intervals over seeds, paired differences, and the
cross-task Friedman test with its Nemenyi critical difference (Demšar 2006).

* :func:`interval` — a mean with its 95 % Student-t confidence interval over seeds.
* :func:`paired_difference` — the mean of per-seed differences between two variants run
  with the same seeds (same data order, same initialisation of the shared parts), with its
  t interval: it varies far less than either score, so it separates variants that the two
  separate intervals cannot.
* :func:`friedman` — average ranks over data sets (ties share the average rank), Friedman's
  χ² test (:func:`scipy.stats.friedmanchisquare`, with its tie correction) and Nemenyi's
  critical difference ``q_α · √(k(k+1) / 6N)``, where ``q_α`` is the studentized range
  quantile for k groups over √2 (Demšar 2006, §3.2.2).

Nemenyi is computed here from :data:`scipy.stats.studentized_range` (scipy is already a
runtime dependency) rather than through scikit-posthocs or autorank: both pull pandas,
statsmodels and seaborn for one formula, and the formula is the one Demšar's tables use
(checked against his Table 5 in the tests).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LEVEL = 0.95


@dataclass(frozen=True, kw_only=True)
class Interval:
    """A mean over ``n`` values with the half width of its confidence interval (None below 2 values)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        """Lower end of the interval."""
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        """Upper end of the interval."""
        return None if self.half_width is None else self.mean + self.half_width

    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or below 0 (never, without an interval)."""
        return self.half_width is not None and abs(self.mean) > self.half_width


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile for ``df`` degrees of freedom (12.71 for df = 1 at 95 %)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean and Student-t confidence interval of ``values`` (no interval for fewer than 2)."""
    n = len(values)
    if n == 0:
        raise ValueError("an interval needs at least one value")
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean=mean, half_width=None, n=n)
    return Interval(mean=mean, half_width=t_quantile(n - 1, level) * statistics.stdev(values) / math.sqrt(n), n=n)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Interval | None:
    """``a − b`` over the seeds both ran: the mean per-seed difference and its t interval.

    None when they share no seed.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return interval([a[s] - b[s] for s in seeds], level)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval | None:
    """``mean(a) − mean(b)`` with Welch's interval, for variants that share fewer than 2 seeds.

    None unless both have at least 2 values.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    mean = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return Interval(mean=mean, half_width=0.0, n=min(len(a), len(b)))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    from scipy.stats import t

    return Interval(mean=mean, half_width=float(t.ppf(0.5 + level / 2, df)) * math.sqrt(va + vb),
                    n=min(len(a), len(b)))


def decimals_for(half_width: float | None) -> int | None:
    """How many decimals show an interval of ``half_width`` with two significant digits
    (None without an interval: the caller keeps its own precision)."""
    if half_width is None or not math.isfinite(half_width):
        return None
    if half_width == 0:
        return 4
    return max(0, 1 - math.floor(math.log10(abs(half_width))))


def format_interval(mean: float, half_width: float | None, *, signed: bool = False) -> str:
    """``0.82 ± 0.25``: the half width to two significant digits, the mean to the same decimal
    place; without an interval, the mean to four significant digits."""
    digits = decimals_for(half_width)
    sign = "+" if signed else ""
    if digits is None:
        return f"{mean:{sign}.4g}"
    return f"{mean:{sign}.{digits}f} ± {half_width:.{digits}f}"


def average_ranks(scores: Mapping[str, float], higher_is_better: bool) -> dict[str, float]:
    """Rank 1 = best; tied scores share the average of the ranks they span (Friedman's convention)."""
    ordered = sorted(scores, key=lambda v: -scores[v] if higher_is_better else scores[v])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and scores[ordered[j + 1]] == scores[ordered[i]]:
            j += 1
        for v in ordered[i:j + 1]:
            ranks[v] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@dataclass(frozen=True, kw_only=True)
class Friedman:
    """Friedman's test over ``datasets`` tasks for a set of variants, with Nemenyi's critical difference."""

    variants: list[str]
    datasets: list[str]
    average_rank: dict[str, float]
    statistic: float
    p_value: float
    critical_difference: float
    alpha: float = 1 - LEVEL

    def significant(self) -> bool:
        """Whether Friedman rejects "all variants rank alike" at ``alpha``."""
        return self.p_value < self.alpha

    def cliques(self) -> list[list[str]]:
        """Maximal runs of variants (by average rank) whose ranks differ by less than the critical difference:
        the bars of the diagram."""
        order = sorted(self.variants, key=lambda v: self.average_rank[v])
        runs: list[list[str]] = []
        for i, first in enumerate(order):
            run = [v for v in order[i:] if self.average_rank[v] - self.average_rank[first] < self.critical_difference]
            if len(run) > 1 and not any(set(run) <= set(r) for r in runs):
                runs.append(run)
        return runs


def nemenyi_cd(k: int, n: int, alpha: float = 1 - LEVEL) -> float:
    """Nemenyi's critical difference of average ranks for ``k`` methods over ``n`` data sets."""
    from scipy.stats import studentized_range

    q = float(studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def friedman(scores: Mapping[str, Mapping[str, float]], higher_is_better: Mapping[str, bool]) -> Friedman | None:
    """Friedman + Nemenyi over ``scores[task][variant]`` (every variant on every task).

    None when the test is undefined: fewer than 3 variants or fewer than 2 tasks.
    """
    tasks = sorted(scores)
    variants = sorted({v for t in tasks for v in scores[t]})
    if len(variants) < 3 or len(tasks) < 2:
        return None
    missing = [(t, v) for t in tasks for v in variants if v not in scores[t]]
    if missing:
        raise ValueError(f"friedman needs every variant on every task; missing {missing[:3]}")
    per_task = [average_ranks(scores[t], higher_is_better[t]) for t in tasks]
    k, n = len(variants), len(tasks)
    mean_rank = {v: statistics.fmean(r[v] for r in per_task) for v in variants}
    from scipy.stats import friedmanchisquare

    # scipy ranks each task's scores ascending (with its tie correction): orient every task as "higher is better".
    oriented = [[(1 if higher_is_better[t] else -1) * scores[t][v] for t in tasks] for v in variants]
    if all(len(set(column)) == 1 for column in zip(*oriented, strict=True)):
        statistic, p = 0.0, 1.0  # every task a k-way tie: nothing to tell apart (scipy would divide by zero)
    else:
        result = friedmanchisquare(*oriented)
        statistic, p = float(result.statistic), float(result.pvalue)
    return Friedman(variants=variants, datasets=tasks, average_rank=mean_rank, statistic=statistic, p_value=p,
                    critical_difference=nemenyi_cd(k, n))
