"""The harness's own cost measurements, taken the same way for every variant and task.

A task marks its training with ``with ctx.meter.train(): ...``, counts the examples it
trains on with ``ctx.meter.count(n)``, and hands over its trained model with one input
batch via ``ctx.meter.model(model, *batch)``. After the task returns, the harness counts
parameters and FLOPs (``torch.utils.flop_counter.FlopCounterMode``, one forward pass),
times inference (warm-up, then the median of repeats) and measures the model's memory:

* ``step_peak_mb`` — peak tensor memory of one training step (forward, then backward of
  the sum of the model's floating outputs) on the handed batch, above what was live
  before it: the allocator's peak on CUDA, ``torch.profiler`` memory events on CPU (see
  :mod:`attnbench.memory`). This is the figure that shows an attention's memory cost.
* ``peak_alloc_mb`` (CUDA) / ``peak_rss_mb`` (CPU) — the whole pairing's peak, kept as a
  secondary column; RSS includes the interpreter and torch (~600 MB).
* ``host_load_1m`` (CPU, where the OS reports it) — the host's one-minute load average when
  the pairing's figures are taken, so a reader can tell cost columns measured on a busy
  machine (load above the torch threads in use) from those of an otherwise idle one.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from attnbench import memory
from attnbench.flops import flop_counter
from attnbench.runner.device import synchronize


class Meter:
    """Collects training time and the trained model; computes the efficiency figures."""

    def __init__(self, device: torch.device, latency_repeats: int = 5) -> None:
        self.device = device
        self.latency_repeats = latency_repeats
        self.train_seconds = 0.0
        self.train_examples = 0
        self._model: nn.Module | None = None
        self._inputs: tuple[Any, ...] = ()
        self.artifacts: dict[str, str] = {}
        self.recorded: dict[str, float] = {}

    @contextmanager
    def train(self) -> Iterator[None]:
        """Time a block of training (may be entered several times; times add up)."""
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.train_seconds += time.perf_counter() - start

    def count(self, examples: int) -> None:
        """Record ``examples`` training examples processed (for throughput)."""
        self.train_examples += int(examples)

    def model(self, model: nn.Module, *inputs: Any) -> None:
        """Hand over the trained model and one input batch (positional forward args)."""
        self._model = model
        self._inputs = inputs

    def record(self, name: str, value: float) -> None:
        """Record a figure the training loop knows and the harness cannot measure afterwards
        (``train_steps`` reached under a time budget, ``late_drop_share``); it joins the row's
        efficiency figures. Several training phases recording one name: the last one wins."""
        self.recorded[str(name)] = float(value)

    def artifact(self, name: str, path: Any) -> None:
        """Record a file the task wrote (e.g. ``"attention_map"`` → a PNG in ``ctx.workdir``)."""
        self.artifacts[str(name)] = str(path)

    def figures(self) -> dict[str, float]:
        """The efficiency figures for the result row."""
        out: dict[str, float] = {"train_s": round(self.train_seconds, 4), **self.recorded}
        if self.train_seconds > 0 and self.train_examples:
            out["train_examples_per_s"] = self.train_examples / self.train_seconds
        if self._model is not None:
            out.update(self._model_figures(self._model, self._inputs))
        out.update(peak_memory(self.device))
        out.update(host_load(self.device))
        return out

    def _model_figures(self, model: nn.Module, inputs: tuple[Any, ...]) -> dict[str, float]:
        figures: dict[str, float] = {"params": float(sum(p.numel() for p in model.parameters()))}
        batch = _batch_size(inputs)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            counter = flop_counter()
            with counter:
                model(*inputs)
            figures["flops_per_example"] = counter.get_total_flops() / batch
            model(*inputs)  # warm-up
            times = []
            for _ in range(self.latency_repeats):
                synchronize(self.device)
                start = time.perf_counter()
                model(*inputs)
                synchronize(self.device)
                times.append(time.perf_counter() - start)
        step_peak = training_step_peak_mb(model, inputs, self.device)
        if step_peak is not None:
            figures["step_peak_mb"] = step_peak
        model.train(was_training)
        figures["infer_ms_per_batch"] = statistics.median(times) * 1000
        figures["infer_batch"] = float(batch)
        return figures


def _floating_sum(output: Any) -> torch.Tensor | None:
    """The sum of every floating tensor in a model's output (tensor, tuple, list or dict)."""
    if isinstance(output, torch.Tensor):
        return output.float().sum() if output.is_floating_point() and output.requires_grad else None
    parts = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    sums = [s for s in map(_floating_sum, parts) if s is not None]
    return torch.stack(sums).sum() if sums else None


def training_step_peak_mb(model: nn.Module, inputs: tuple[Any, ...], device: torch.device) -> float | None:
    """Peak tensor MiB of one forward + backward of ``model(*inputs)`` in training mode, or None
    when the output has no differentiable floating tensor. Gradients are cleared afterwards."""
    model.train()
    differentiable: list[bool] = []

    def step() -> None:
        loss = _floating_sum(model(*inputs))
        differentiable.append(loss is not None)
        if loss is not None:
            loss.backward()

    try:
        peak = memory.peak_tensor_mb(step, device)
    finally:
        model.zero_grad(set_to_none=True)
    return peak if differentiable and differentiable[0] else None


def _batch_size(inputs: tuple[Any, ...]) -> int:
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            return int(x.shape[0])
    return 1


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak memory so far: the CUDA allocator's peak, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return {"peak_alloc_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_mb": rss / (2**20 if sys.platform == "darwin" else 2**10)}


def host_load(device: torch.device) -> dict[str, float]:
    """The host's one-minute load average on CPU (``{}`` on accelerators and where the OS has none)."""
    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return {}
    return {"host_load_1m": round(os.getloadavg()[0], 2)}
