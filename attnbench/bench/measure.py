"""One measurement: a variant's forward and forward+backward cost at one sequence length.

Every variant is measured the same way, by the harness:

* **time** – ``warmup`` untimed calls, then ``repeats`` timed ones between device
  synchronisations; the median is reported (all repeats are kept).
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
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from attnbench.runner.device import reset_peak_memory, resolve_device, synchronize

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
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0


def memory_method(device: torch.device) -> str:
    """How peak memory is read on ``device``, in words for the output."""
    if device.type == "cuda":
        return "cuda: torch.cuda.max_memory_allocated after reset, minus memory allocated before the pass"
    if device.type == "cpu":
        return ("cpu: torch.profiler memory events (profile_memory=True), peak of the running sum of "
                "allocations minus frees during the pass")
    return f"{device.type}: not measured (no peak-memory counter for this device)"


def time_call(fn: Callable[[], object], device: torch.device, *, warmup: int, repeats: int,
              before: Callable[[], None] | None = None) -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` untimed ones.

    ``before`` runs ahead of every call, outside the timed span (e.g. dropping gradients).
    """
    for _ in range(warmup):
        if before:
            before()
        fn()
    times = []
    for _ in range(max(1, repeats)):
        if before:
            before()
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """MiB allocated at the peak of one call of ``fn``, above what was live before it."""
    if device.type == "cuda":
        synchronize(device)
        reset_peak_memory(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / MB
    if device.type == "cpu":
        return _cpu_profiler_peak(fn) / MB
    return None


def _cpu_profiler_peak(fn: Callable[[], object]) -> int:
    """Bytes at the peak of the running sum of the profiler's CPU allocation events."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # The raw event stream: FunctionEvent lists attribute allocations to ops and lose order.
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() in (DeviceType.CPU, DeviceType.MKLDNN)]
    events.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return peak


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call of ``fn`` as counted by ``FlopCounterMode``."""
    _register_missing_formulas()
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _register_missing_formulas() -> None:
    """Teach FlopCounterMode the CPU flash kernel that ``sdpa`` dispatches to.

    Without this, ``sdpa`` on CPU counts 0 FLOPs (torch registers formulas for the CUDA
    kernels only), which would make every FLOPs ratio to ``sdpa`` meaningless. The
    count is the one torch uses for its CUDA kernels: two batched matrix products.
    """
    from torch.utils.flop_counter import flop_registry

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_registry:
        return

    @register_flop_formula(op)
    def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        b, h, lq, d = query_shape
        lk, dv = key_shape[-2], value_shape[-1]
        return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv


def run_job(job: Job, emit: Callable[[dict[str, Any]], None]) -> None:
    """Measure ``job``; ``emit`` receives the figures of each phase as soon as it is done.

    The forward phase emits ``fwd_ms``, ``fwd_ms_all``, ``peak_fwd_mb`` and
    ``gflops_fwd``; the backward phase (when ``job.backward``) ``fwdbwd_ms``,
    ``fwdbwd_ms_all`` and ``peak_fwdbwd_mb``. Exceptions propagate to the worker.
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

    times = time_call(forward, device, warmup=job.warmup, repeats=job.repeats)
    emit({"fwd_ms": statistics.median(times) * 1000, "fwd_ms_all": [t * 1000 for t in times]})
    emit({"peak_fwd_mb": peak_memory_mb(forward, device)})
    emit({"gflops_fwd": count_flops(forward) / 1e9})
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

    times = time_call(forward_backward, device, warmup=job.warmup, repeats=job.repeats, before=drop_grads)
    emit({"fwdbwd_ms": statistics.median(times) * 1000, "fwdbwd_ms_all": [t * 1000 for t in times]})
    drop_grads()
    emit({"peak_fwdbwd_mb": peak_memory_mb(forward_backward, device)})
