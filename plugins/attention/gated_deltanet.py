"""gated-deltanet: the delta rule with a data-dependent decay gate (Gated DeltaNet), in O(L).

Yang, Kautz & Hatamizadeh, "Gated Delta Networks: Improving Mamba2 with Delta Rule",
ICLR 2025 (arXiv:2412.06464); the linear-attention layer of Qwen3-Next.

Per head, the DeltaNet state (``deltanet``) first decays by a scalar gate α_t, then is written
by the delta rule::

    k̂_t = k_t / ‖k_t‖,  q̂_t = q_t / ‖q_t‖,  β_t = σ(w_h·k_t + b_h)
    α_t = exp(g_t),  g_t = −exp(A_h) · softplus(a_h·k_t + δ_h)         (Mamba-2's decay)
    S_t = α_t S_{t−1} (I − β_t k̂_t k̂_tᵀ) + β_t k̂_t v_tᵀ
    o_t = RMSNorm_h(S_tᵀ q̂_t / √D)

What is computed from what: β_t and the decay's step size from the head's own **keys** by
per-head linear maps (``HeadwiseProjection``, D → 1 each); A_h (A = exp(A_h) drawn from
[1, 16) as Mamba-2 does) and δ_h (so that softplus(δ_h) starts in [0.001, 0.1]) are learned per
head. The paper computes both from the layer input x_t; k_t is a linear function of x_t.
Its SiLU before the q/k normalisation, short convolutions and output gate belong to the model.

Chunkwise form (``attnbench.nn.chunked_scan.chunked_delta_rule`` with gates): the delta rule's
UT transform inside chunks of C positions (default 32), decays as differences of cumulative
log-gates so nothing overflows, one (D, D) state between chunks: time O(L·C·D + L·D²),
memory O(L·(C + D)). Causal is the paper's form; ``is_causal=False`` sums a left-to-right and a
right-to-left scan (an extension). Self-attention only, padding honoured, no weights.
Incremental decoding: one (D, D) state per head. Options: ``chunk`` (32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attnbench_plugins.attention.deltanet import DeltaNet
from torch import nn

import attnbench
from attnbench.nn.gate_projection import HeadwiseProjection, mamba_decay_parameters
from attnbench.nn.recurrent_attention import RECURRENT_SPEC


class GatedDeltaNet(DeltaNet):
    """The gated delta rule with β and the decay from the keys; see the module docstring."""

    variant = "gated-deltanet"

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config)
        a_log, dt_bias = mamba_decay_parameters(self.heads)
        self.A_log = nn.Parameter(a_log)
        self.dt_proj = HeadwiseProjection(self.heads, self.head_dim, 1, bias=dt_bias[:, None])

    def log_decay(self, k: torch.Tensor) -> torch.Tensor:
        """``g_t = −exp(A_h) · softplus(a_h·k_t + δ_h)``, (B, H, L), every entry ≤ 0."""
        dt = F.softplus(self.dt_proj(k)[..., 0])
        return -self.A_log.exp().to(k.dtype)[:, None] * dt


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="gated-deltanet",
        build=GatedDeltaNet,
        summary="Gated DeltaNet: the delta rule with a Mamba-2 decay gate, both from the keys, chunkwise",
        citation="Yang, Kautz & Hatamizadeh 2025, Gated Delta Networks (ICLR, arXiv:2412.06464)",
        options={"chunk": 32},
        **RECURRENT_SPEC,  # the gated delta-rule recurrence: O(L), self-attention, no weights, incremental
    ))
