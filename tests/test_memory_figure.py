"""The meter's memory figure measures the model, not the process: it grows with L² for softmax only."""

from __future__ import annotations

import torch
from torch import nn

from attnbench import plugins
from attnbench.nn import Encoder
from attnbench.runner.meter import Meter, training_step_peak_mb

CPU = torch.device("cpu")


class Tiny(nn.Module):
    """A small encoder where the attention dominates memory at long L."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.encoder = Encoder(1, 32, 4, plugins.get_attention(variant), ff_dim=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def _peak(variant: str, length: int) -> float:
    torch.manual_seed(0)
    model = Tiny(variant)
    peak = training_step_peak_mb(model, (torch.randn(1, length, 32),), CPU)
    assert peak is not None and peak > 0
    return peak


def test_softmax_memory_grows_fourfold_with_twice_the_length_and_sdpa_does_not():
    softmax = _peak("softmax", 1024), _peak("softmax", 2048)
    sdpa = _peak("sdpa", 1024), _peak("sdpa", 2048)
    # softmax keeps (B, H, L, L) scores and probabilities for backward: ×4 when L doubles.
    assert 3.3 < softmax[1] / softmax[0] < 4.5, softmax
    # sdpa's fused kernel keeps O(L) activations: about ×2.
    assert sdpa[1] / sdpa[0] < 2.6, sdpa
    assert softmax[1] > 5 * sdpa[1]


def test_the_meter_reports_the_step_figure_beside_the_process_figure():
    meter = Meter(CPU, latency_repeats=1)
    meter.model(Tiny("sdpa"), torch.randn(2, 64, 32))
    figures = meter.figures()
    assert figures["step_peak_mb"] > 0 and "peak_rss_mb" in figures
    assert figures["step_peak_mb"] < figures["peak_rss_mb"]
    assert all(p.grad is None for p in meter._model.parameters())  # the measured step leaves no gradients
