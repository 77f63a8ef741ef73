"""Per-head output normalisation for variants whose outputs carry no softmax denominator."""

from __future__ import annotations

import torch
from torch import nn


class HeadwiseRMSNorm(nn.Module):
    """RMS normalisation of each head's output over its D channels, with a learned per-head scale.

    The gated linear-recurrence layers (GLA, DeltaNet, Gated DeltaNet, Mamba-2) all normalise
    each head's output this way before the output projection: their state sums are not
    normalised by a softmax denominator, so their scale drifts with the gates.
    """

    def __init__(self, heads: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps)
        return x * self.weight.to(x.dtype)[:, None, :]
