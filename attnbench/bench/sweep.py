"""The sweep: which (variant, L) pairs to measure, in what order, and what came of each.

``sdpa`` is always measured as the baseline, so every figure has a ratio to it taken
on the same machine in the same run. Lengths run shortest first, every variant at one
L before the next L, so an interrupted sweep still compares all variants at the
lengths it finished. A variant that ran out of memory or time at some L is not tried
at longer ones (recorded as ``skipped``) unless ``keep_going`` is set.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from attnbench import __version__
from attnbench.bench.fit import SlopeFit, efficiency_length, loglog_slope, ratio
from attnbench.bench.measure import Job, memory_method
from attnbench.bench.worker import Outcome, run_isolated
from attnbench.errors import AttnbenchError, Terminated
from attnbench.runner.device import describe
from attnbench.specs import AttentionSpec

BASELINE = "sdpa"

#: Default lengths per device type: CPU stops where full attention needs ~4 GiB a matrix.
DEFAULT_LENGTHS: dict[str, tuple[int, ...]] = {
    "cpu": (256, 512, 1024, 2048, 4096, 8192, 16384),
    "cuda": (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
}

#: The costs compared with the baseline: record field -> short label.
METRICS: dict[str, str] = {
    "fwd_ms": "fwd ms",
    "fwdbwd_ms": "fwd+bwd ms",
    "peak_fwd_mb": "fwd peak MB",
    "peak_fwdbwd_mb": "fwd+bwd peak MB",
    "gflops_fwd": "fwd GFLOPs",
}

#: Statuses of a measurement that produced no figures because it was not attempted.
NOT_RUN = ("unavailable", "skipped", "unsupported")


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """Everything that decides what the sweep measures."""

    specs: Sequence[AttentionSpec]
    lengths: Sequence[int]
    batch: int = 1
    heads: int = 4
    head_dim: int = 64
    causal: bool = False
    dtype: str = "float32"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    repeats: int = 5
    warmup: int = 1
    timeout: float = 180.0
    budget: float = float("inf")
    memory_limit: str = "auto"
    backward: bool = True
    keep_going: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def job(self, spec: AttentionSpec, length: int) -> Job:
        """The measurement of ``spec`` at ``length``."""
        return Job(variant=spec.name, length=length, batch=self.batch, heads=self.heads,
                   head_dim=self.head_dim, causal=self.causal, dtype=self.dtype, device=str(self.device),
                   repeats=self.repeats, warmup=self.warmup, backward=self.backward, budget=self.budget,
                   memory_limit=self.memory_limit, options=dict(self.options))


@dataclass(kw_only=True)
class Measurement:
    """One (variant, L) cell: its status and figures, with ratios to the baseline."""

    variant: str
    length: int
    status: str
    error: str = ""
    fwd_ms: float | None = None
    fwdbwd_ms: float | None = None
    peak_fwd_mb: float | None = None
    peak_fwdbwd_mb: float | None = None
    gflops_fwd: float | None = None
    ratios: dict[str, float | None] = field(default_factory=dict)
    fwd_ms_all: list[float] = field(default_factory=list)
    fwdbwd_ms_all: list[float] = field(default_factory=list)
    params: int | None = None
    threads: int | None = None
    wall_s: float = 0.0

    def value(self, metric: str) -> float | None:
        """The figure ``metric`` (a key of :data:`METRICS`), or None when it was not measured."""
        return getattr(self, metric)

    @classmethod
    def from_outcome(cls, spec: AttentionSpec, length: int, outcome: Outcome) -> Measurement:
        """The record of a finished worker, keeping whatever figures it sent."""
        known = {k: v for k, v in outcome.figures.items() if k in cls.__dataclass_fields__}
        return cls(variant=spec.name, length=length, status=outcome.status, error=outcome.error,
                   wall_s=round(outcome.wall_s, 3), **known)


@dataclass(frozen=True, kw_only=True)
class VariantSummary:
    """One variant's scaling over the sweep: slopes, their fit range, efficiency lengths."""

    variant: str
    complexity: str
    status: str  # ok when at least one length finished; otherwise the status of its first length
    reason: str  # why it never finished ("" when status is ok)
    slopes: dict[str, SlopeFit | None]
    efficiency: dict[str, int | None]


@dataclass(kw_only=True)
class SweepResult:
    """All measurements of one run with the run's environment and the per-variant summaries."""

    plan: SweepPlan
    measurements: list[Measurement]
    meta: dict[str, Any]
    summaries: list[VariantSummary] = field(default_factory=list)

    def of(self, variant: str) -> list[Measurement]:
        """The measurements of ``variant``, shortest L first."""
        return sorted((m for m in self.measurements if m.variant == variant), key=lambda m: m.length)

    def variants(self) -> list[str]:
        """Variant names in the order they were planned (baseline first)."""
        return [spec.name for spec in self.plan.specs]


def with_baseline(specs: Sequence[AttentionSpec], baseline: AttentionSpec) -> list[AttentionSpec]:
    """``specs`` with the baseline first, added if it was not selected."""
    return [baseline] + [s for s in specs if s.name != baseline.name]


def why_not(spec: AttentionSpec, plan: SweepPlan) -> tuple[str, str] | None:
    """``(status, reason)`` when ``spec`` cannot be measured under ``plan``; None when it can."""
    if spec.available is not None:
        reason = spec.available(plan.device)
        if reason:
            return "unavailable", reason
    if plan.causal and not spec.causal:
        return "unsupported", f"{spec.name!r} does not support causal attention (its spec has causal=False)"
    return None


def run_sweep(
    plan: SweepPlan,
    on_start: Callable[[AttentionSpec, int], None] | None = None,
    on_done: Callable[[Measurement], None] | None = None,
    fit_range: tuple[int | None, int | None] = (None, None),
) -> SweepResult:
    """Measure every planned (variant, L) pair, each in a fresh worker process.

    ``on_start``/``on_done`` report progress. On KeyboardInterrupt the measurements so
    far are kept: the result is returned with ``meta["interrupted"] = True``.
    """
    if not plan.specs or plan.specs[0].name != BASELINE:
        raise AttnbenchError(f"the sweep needs the baseline {BASELINE!r} first in its variants")
    result = SweepResult(plan=plan, measurements=[], meta=environment(plan))
    blocked: dict[str, str] = {}  # variant -> why longer lengths are skipped
    for spec in plan.specs:
        refusal = why_not(spec, plan)
        if refusal:
            blocked[spec.name] = refusal[1]
            result.measurements += [Measurement(variant=spec.name, length=n, status=refusal[0], error=refusal[1])
                                    for n in plan.lengths]
    refused = set(blocked)
    started = time.perf_counter()
    try:
        for length in sorted(plan.lengths):
            for spec in plan.specs:
                if spec.name in refused:
                    continue
                if spec.name in blocked:
                    done = Measurement(variant=spec.name, length=length, status="skipped", error=blocked[spec.name])
                else:
                    if on_start:
                        on_start(spec, length)
                    done = Measurement.from_outcome(spec, length, run_isolated(plan.job(spec, length), plan.timeout))
                    if done.status in ("oom", "timeout") and not plan.keep_going:
                        blocked[spec.name] = f"not tried after {done.status} at L={length}"
                result.measurements.append(done)
                if on_done:
                    on_done(done)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (attnbench.errors.Terminated)
        result.meta["interrupted"] = "SIGTERM" if isinstance(stop, Terminated) else "SIGINT"
    result.meta["wall_s"] = round(time.perf_counter() - started, 1)
    result.meta["load_average_end"] = _load_average()
    result.meta["threads"] = next((m.threads for m in result.measurements if m.threads), None)
    add_ratios(result.measurements)
    result.summaries = summarize(result, fit_range)
    return result


def add_ratios(measurements: list[Measurement]) -> None:
    """Set each measurement's ratio to the baseline's figure at the same L."""
    base = {m.length: m for m in measurements if m.variant == BASELINE}
    for m in measurements:
        ref = base.get(m.length)
        m.ratios = {metric: ratio(m.value(metric), ref.value(metric) if ref else None) for metric in METRICS}


def summarize(result: SweepResult, fit_range: tuple[int | None, int | None] = (None, None)) -> list[VariantSummary]:
    """Per variant: log-log slopes of every cost over L and efficiency lengths against the baseline."""
    lo, hi = fit_range
    base = {m.length: m for m in result.of(BASELINE)}
    summaries = []
    for spec in result.plan.specs:
        rows = result.of(spec.name)
        lengths = [m.length for m in rows]
        ok = [m for m in rows if m.value("fwd_ms") is not None]
        status = "ok" if ok else (rows[0].status if rows else "not run")
        reason = "" if ok else (rows[0].error if rows else "")
        slopes = {metric: loglog_slope(lengths, [m.value(metric) for m in rows], lo=lo, hi=hi) for metric in METRICS}
        efficiency = {
            metric: efficiency_length(
                lengths, [m.value(metric) for m in rows],
                [base[n].value(metric) if n in base else None for n in lengths])
            for metric in ("fwd_ms", "fwdbwd_ms", "peak_fwd_mb", "peak_fwdbwd_mb")
        }
        summaries.append(VariantSummary(variant=spec.name, complexity=spec.complexity, status=status, reason=reason,
                                        slopes=slopes, efficiency=efficiency))
    return summaries


def environment(plan: SweepPlan) -> dict[str, Any]:
    """Where and how the sweep ran: enough to tell whether two runs are comparable."""
    return {
        "attnbench_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": describe(plan.device),
        "memory_method": memory_method(plan.device),
        "flops_method": "torch.utils.flop_counter.FlopCounterMode, one forward pass",
        "timing": f"median of up to {plan.repeats} timed call(s) after {plan.warmup} warm-up call(s), "
                  "between device synchronisations"
                  + (f"; fewer once the timed calls took {plan.budget:g} s" if plan.budget != float("inf") else ""),
        "memory_limit": (f"worker heap capped (RLIMIT_DATA) at {plan.memory_limit}"
                         + (" = 90% of available memory at worker start" if plan.memory_limit == "auto" else " MiB")
                         if plan.device.type == "cpu" and plan.memory_limit != "none" else "none"),
        "isolation": f"one fresh spawned process per measurement, timeout {plan.timeout:g} s (start-up included)",
        "shape": {"batch": plan.batch, "heads": plan.heads, "head_dim": plan.head_dim, "dtype": plan.dtype,
                  "causal": plan.causal},
        "lengths": list(plan.lengths),
        "backward": plan.backward,
        "options": dict(plan.options),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_start": _load_average(),
    }


def _load_average() -> list[float] | None:
    """The host's 1/5/15-minute load averages: other work on the machine skews timings."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def measurement_dict(m: Measurement) -> dict[str, Any]:
    """A measurement as plain data (for json), ratios flattened to ``<metric>_vs_sdpa``."""
    data = asdict(m)
    data.update({f"{metric}_vs_{BASELINE}": value for metric, value in data.pop("ratios").items()})
    return data
