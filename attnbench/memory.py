"""Peak tensor memory of one call, measured the same way for every variant and task.

On CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated`` after a
reset) minus what was allocated before the call. On CPU: the peak of the running sum of
``torch.profiler``'s memory events (``profile_memory=True``), i.e. live tensor memory —
a process's RSS is dominated by the interpreter and torch and hides the attention's share,
and ``tracemalloc`` does not see tensors. Other devices: not measured (None).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from attnbench.runner.device import reset_peak_memory, synchronize

MB = 2**20


def method(device: torch.device) -> str:
    """How peak memory is read on ``device``, in words for reports."""
    if device.type == "cuda":
        return "cuda: torch.cuda.max_memory_allocated after reset, minus memory allocated before the call"
    if device.type == "cpu":
        return ("cpu: torch.profiler memory events (profile_memory=True), peak of the running sum of "
                "tensor allocations during the call")
    return f"{device.type}: not measured (no peak-memory counter for this device)"


def peak_tensor_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """MiB of tensor memory at the peak of one call of ``fn``, above what was live before it."""
    if device.type == "cuda":
        synchronize(device)
        reset_peak_memory(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / MB
    if device.type == "cpu":
        return cpu_profiler_peak(fn) / MB
    fn()
    return None


def cpu_profiler_peak(fn: Callable[[], object]) -> int:
    """Bytes at the peak of the running sum of the profiler's CPU allocation events during ``fn()``."""
    # A CUDA build of torch on a machine without a GPU has kineto print "gpuGetDeviceCount failed"
    # at every profile; only errors above that level are wanted here (a user's own setting wins).
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from torch.autograd import DeviceType
    from torch.autograd.profiler import profile  # torch.profiler.profile wraps it and imports inductor (~1 s)

    with profile(use_cpu=True, profile_memory=True, use_kineto=True) as prof:
        fn()
    # The raw event stream: FunctionEvent lists attribute allocations to ops and lose their order.
    events = [e for e in prof.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() in (DeviceType.CPU, DeviceType.MKLDNN)]
    events.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return peak
