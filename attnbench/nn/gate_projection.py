"""Per-head gate projections: the small learned maps that turn a head's keys (or queries)
into input-dependent gates, decays and write strengths.

Variants such as GLA, DeltaNet, Mamba-2 and the Forgetting Transformer need, per position, a
gate computed from the layer input. The forward contract hands a variant only q, k, v, so
these variants compute their gates from ``k`` (each head from its own keys) with a
:class:`HeadwiseProjection`: a low-rank ``x W1_h W2_h + b_h`` per head, as
flash-linear-attention parameterises its gates (a rank-16 bottleneck from the hidden state).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class HeadwiseProjection(nn.Module):
    """``x (B, H, L, D) -> (B, H, L, out)``: head h maps its own D channels by its own weights.

    With ``rank`` smaller than ``min(D, out)`` the map is low-rank, ``x W1_h W2_h + b_h`` with
    W1_h (D, rank) and W2_h (rank, out); otherwise one full (D, out) matrix per head. ``bias``
    is the initial value of every entry of ``b_h`` (a float), so a gate starts near a chosen
    operating point (e.g. a decay close to 1); ``bias`` may also be an (H, out) tensor.
    """

    def __init__(self, heads: int, dim: int, out: int, *, rank: int | None = None,
                 bias: float | torch.Tensor = 0.0) -> None:
        super().__init__()
        if heads < 1 or dim < 1 or out < 1:
            raise ValueError(f"HeadwiseProjection: heads, dim, out must be >= 1, got {heads}, {dim}, {out}")
        self.heads, self.dim, self.out = heads, dim, out
        low_rank = rank is not None and 0 < rank < min(dim, out)
        if rank is not None and rank < 1:
            raise ValueError(f"HeadwiseProjection: rank must be >= 1 (or None for full rank), got {rank}")
        if low_rank:
            self.down = nn.Parameter(torch.randn(heads, dim, rank) / math.sqrt(dim))
            self.up = nn.Parameter(torch.randn(heads, rank, out) / math.sqrt(rank))
        else:
            self.down = nn.Parameter(torch.randn(heads, dim, out) / math.sqrt(dim))
            self.register_parameter("up", None)
        init = bias if isinstance(bias, torch.Tensor) else torch.full((heads, out), float(bias))
        self.bias = nn.Parameter(init.detach().clone().float().expand(heads, out).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.heads or x.shape[-1] != self.dim:
            raise ValueError(
                f"HeadwiseProjection expects (B, {self.heads}, L, {self.dim}), got {tuple(x.shape)}; "
                f"build the variant with num_heads={x.shape[1] if x.dim() == 4 else '?'} and head_dim={x.shape[-1]}"
            )
        w = self.down.to(x.dtype)
        y = torch.einsum("bhld,hdr->bhlr", x, w)
        if self.up is not None:
            y = torch.einsum("bhlr,hro->bhlo", y, self.up.to(x.dtype))
        return y + self.bias.to(x.dtype)[None, :, None, :]


def mamba_decay_parameters(heads: int, *, dt_min: float = 1e-3, dt_max: float = 0.1,
                           a_min: float = 1.0, a_max: float = 16.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2's initial ``(A_log, dt_bias)`` per head: A = exp(A_log) uniform in [a_min, a_max),
    softplus(dt_bias) log-uniform in [dt_min, dt_max) (Dao & Gu 2024, ``mamba_ssm`` Mamba2)."""
    g = torch.Generator().manual_seed(heads)
    a = torch.empty(heads).uniform_(a_min, a_max, generator=g)
    dt = torch.exp(torch.rand(heads, generator=g) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt_bias = dt + torch.log(-torch.expm1(-dt))  # the inverse of softplus
    return a.log(), dt_bias
