"""mamba2: Mamba-2's state-space duality (SSD) layer core — a scalar-decay recurrence, chunked.

Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through
Structured State Space Duality", ICML 2024 (arXiv:2405.21060).

Per head, with C_t = q_t, B_t = k_t and x_t = v_t (the SSD ↔ attention dictionary of §5)::

    Δ_t = softplus(a_h·k_t + δ_h),   A_h = −exp(A_log_h)               (one scalar per head)
    h_t = exp(Δ_t A_h) h_{t−1} + Δ_t B_t x_tᵀ                          ((D, D) state)
    y_t = RMSNorm_h(h_tᵀ C_t + D_h x_t)

i.e. gated linear attention with one decay per position (``exp(Δ_t A_h)``) and keys scaled by
Δ_t. No 1/√D scale (the paper has none); the learned skip D_h is part of the SSD layer.

What is computed from what: the step size Δ_t from the head's own **keys** by a per-head linear
map (``HeadwiseProjection``, D → 1) plus Mamba-2's dt bias; A_log and dt bias are initialised as
``mamba_ssm`` does (A in [1, 16), softplus(δ) in [0.001, 0.1]). Departures: the paper computes
Δ from the layer input x_t (k_t is a linear function of it); its B and C have their own state size
N and are shared across heads (multi-value heads), here each head has its own B = k_h, C = q_h of
size D (the multi-head pattern of §7.2); the short convolution, the SiLU gate z and the output
projection belong to the model; the gated RMSNorm is a plain per-head RMSNorm.

Chunked form (the SSD algorithm of §6; ``attnbench.nn.chunked_scan.chunked_gated_linear`` with a
per-position decay): inside a chunk of C positions (default 64) the masked "attention" with
decays ``exp(Σ Δ A)`` (a (C, C) matrix), between chunks one (D, D) state: time
O(L·C·D + L·D²), memory O(L·C + L·D²/C). Causal is the paper's form; ``is_causal=False`` sums a
left-to-right and a right-to-left scan (bidirectional Mamba, Zhu et al. 2024 — an extension).
Self-attention only, padding honoured, no weights. Incremental decoding: the SSM state, one
(D, D) matrix per head. Options: ``chunk`` (64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.chunked_scan import chunked_gated_linear, recurrent_gated_linear
from attnbench.nn.gate_projection import HeadwiseProjection, mamba_decay_parameters
from attnbench.nn.recurrent_attention import RECURRENT_SPEC, RecurrentAttention


class Mamba2(RecurrentAttention):
    """SSD with Δ from the keys; see the module docstring."""

    variant = "mamba2"

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config, default_chunk=64)
        a_log, dt_bias = mamba_decay_parameters(self.heads)
        self.A_log = nn.Parameter(a_log)
        self.dt_proj = HeadwiseProjection(self.heads, self.head_dim, 1, bias=dt_bias[:, None])
        self.D = nn.Parameter(torch.ones(self.heads))

    def step_size(self, k: torch.Tensor) -> torch.Tensor:
        """``Δ_t = softplus(a_h·k_t + δ_h)``, (B, H, L)."""
        return F.softplus(self.dt_proj(k)[..., 0])

    def prepare(self, q, k, v, keep):
        dt = self.step_size(k)
        if keep is not None:
            dt = dt.masked_fill(~keep[:, None, :], 0)  # Δ = 0: no decay, no write
            v = v.masked_fill(~keep[:, None, :, None], 0)
        g = -self.A_log.exp().to(q.dtype)[:, None] * dt
        return q, k * dt[..., None], v, g[..., None]

    def scan(self, q, k, v, g, initial_state=None, recurrent=False):
        if recurrent:
            return recurrent_gated_linear(q, k, v, g, initial_state=initial_state)
        return chunked_gated_linear(q, k, v, g, chunk=self.chunk, initial_state=initial_state)

    def finish(self, out: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.norm(out + self.D.to(v.dtype)[:, None, None] * v)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="mamba2",
        build=Mamba2,
        summary="Mamba-2 SSD: scalar decay exp(ΔA) per position, Δ from the keys, chunked",
        citation="Dao & Gu 2024, Transformers are SSMs: Structured State Space Duality (ICML, arXiv:2405.21060)",
        options={"chunk": 64},
        **RECURRENT_SPEC,  # a state-space recurrence: O(L), self-attention, no weights, incremental
    ))
