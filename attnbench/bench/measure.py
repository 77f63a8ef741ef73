"""One measurement: a variant's forward and forward+backward cost at one sequence length.

Every variant is measured the same way, by the harness:

* **time** – ``warmup`` untimed calls, then up to ``repeats`` timed ones between
  device synchronisations, fewer once the timed calls took ``budget`` seconds (at
  least one); the median is reported and every timed call is kept.
* **peak memory** – memory allocated during one pass above what was live before it
  (q, k, v, the upstream gradient and the module's parameters are not counted). On CUDA
  the caching allocator's peak (``torch.cuda.max_memory_allocated`` after a reset); on
  CPU the peak of the running sum of the allocation and free events that
  ``torch.profiler`` records with ``profile_memory=True``. Both see tensors only, not
  library scratch space outside PyTorch's allocator.
* **FLOPs** – one forward pass under ``torch.utils.flop_counter.FlopCounterMode``,
  which counts matrix products and fused attention kernels (not elementwise work).

Everything here runs inside the fresh worker process of :mod:`attnbench.bench.worker`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from attnbench import memory
from attnbench.flops import flop_counter
from attnbench.runner.device import resolve_device, synchronize

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

MB = 2**20


@dataclass(frozen=True, kw_only=True)
class Job:
    """What to measure: one variant at one length, with the sweep's shape and settings."""

    variant: str
    length: int
    batch: int
    heads: int
    head_dim: int
    causal: bool
    dtype: str
    device: str
    repeats: int
    warmup: int
    backward: bool
    budget: float = float("inf")
    memory_limit: str = "none"  # "auto", "none" or MiB: a cap on the worker's host memory (CPU)
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0


def memory_method(device: torch.device) -> str:
    """How peak memory is read on ``device``, in words for the output."""
    return memory.method(device)


def time_call(fn: Callable[[], object], device: torch.device, *, repeats: int, budget: float = float("inf"),
              before: Callable[[], None] | None = None) -> list[float]:
    """Seconds per call of ``fn``: up to ``repeats`` timed calls, fewer once ``budget`` seconds were spent.

    At least one call is timed. ``before`` runs ahead of every call, outside the timed
    span (e.g. dropping gradients). Warm-up is the caller's (see :func:`warm_up`).
    """
    times: list[float] = []
    while len(times) < max(1, repeats) and (not times or sum(times) < budget):
        if before:
            before()
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def warm_up(fn: Callable[[], object], calls: int, before: Callable[[], None] | None = None) -> None:
    """Run ``fn`` ``calls`` times untimed: lazy initialisation, allocator caches, kernel selection."""
    for _ in range(calls):
        if before:
            before()
        fn()


def peak_memory_and_flops(fn: Callable[[], object], device: torch.device) -> tuple[float | None, float]:
    """One call of ``fn``: MiB allocated at its peak above what was live before it, and its FLOPs.

    FlopCounterMode only inspects shapes as ops pass, so it allocates nothing and the
    two figures can share one call.
    """
    counter = flop_counter()

    def counted() -> None:
        with counter:
            fn()

    peak = memory.peak_tensor_mb(counted, device)
    return peak, float(counter.get_total_flops())


def run_job(job: Job, emit: Callable[[dict[str, Any]], None]) -> None:
    """Measure ``job``; ``emit`` receives the figures of each phase as soon as it is done.

    Per pass (forward under ``no_grad``; forward+backward in training mode when
    ``job.backward``): warm-up calls, one call measuring peak memory (and, forward
    only, FLOPs), then the timed calls. Emits ``peak_fwd_mb``, ``gflops_fwd``,
    ``fwd_ms``, ``fwd_ms_all``, then ``peak_fwdbwd_mb``, ``fwdbwd_ms``,
    ``fwdbwd_ms_all``. Exceptions propagate to the worker.
    """
    from attnbench import plugins
    from attnbench.nn.attention import build_attention
    from attnbench.specs import AttentionConfig

    device = resolve_device(job.device)
    dtype = DTYPES[job.dtype]
    spec = plugins.get_attention(job.variant)
    torch.manual_seed(job.seed)
    config = AttentionConfig(num_heads=job.heads, head_dim=job.head_dim, max_len=job.length,
                             causal=job.causal, options=dict(job.options))
    module = build_attention(spec, config).to(device=device, dtype=dtype)
    shape = (job.batch, job.heads, job.length, job.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    emit({"threads": torch.get_num_threads(), "memory_method": memory_method(device),
          "params": sum(p.numel() for p in module.parameters())})

    module.eval()

    def forward() -> None:
        with torch.no_grad():
            module(q, k, v, is_causal=job.causal)

    warm_up(forward, job.warmup)
    peak, flops = peak_memory_and_flops(forward, device)
    emit({"peak_fwd_mb": peak, "gflops_fwd": flops / 1e9})
    times = time_call(forward, device, repeats=job.repeats, budget=job.budget)
    emit({"fwd_ms": statistics.median(times) * 1000, "fwd_ms_all": [t * 1000 for t in times]})
    if not job.backward:
        return

    module.train()
    for t in (q, k, v):
        t.requires_grad_(True)
    grad_out = torch.randn(shape[:-1] + (job.head_dim,), device=device, dtype=dtype)

    def forward_backward() -> None:
        module(q, k, v, is_causal=job.causal).backward(grad_out)

    def drop_grads() -> None:
        for t in (q, k, v):
            t.grad = None
        module.zero_grad(set_to_none=True)

    warm_up(forward_backward, job.warmup, before=drop_grads)
    drop_grads()
    # Memory only: FLOPs are a forward figure, and a FLOP counter around a backward breaks ops it cannot
    # dispatch (FlexAttention's) for no figure.
    emit({"peak_fwdbwd_mb": memory.peak_tensor_mb(forward_backward, device)})
    times = time_call(forward_backward, device, repeats=job.repeats, budget=job.budget, before=drop_grads)
    emit({"fwdbwd_ms": statistics.median(times) * 1000, "fwdbwd_ms_all": [t * 1000 for t in times]})
