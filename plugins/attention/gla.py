"""gla: Gated Linear Attention — linear attention with a data-dependent, per-channel decay.

Yang, Wang, Shen, Panda & Kim, "Gated Linear Attention Transformers with Hardware-Efficient
Training", ICML 2024 (arXiv:2312.06635).

Per head, a (D, D) state decays channel by channel and takes one outer product per position::

    α_t = exp(g_t),   g_t = logsigmoid(k_t W1 W2 + b) / τ        (D gates in (0, 1), τ = 16)
    S_t = diag(α_t) S_{t−1} + k_t v_tᵀ
    o_t = RMSNorm_h(S_tᵀ q_t / √D)

What is computed from what: the gate logits come from the head's own **keys** by a rank-16
per-head projection (``attnbench.nn.gate_projection.HeadwiseProjection``: W1 (D, 16), W2 (16, D),
bias b initialised so α starts near 0.99^(1/τ)). The paper computes them from the layer input
x_t (``α_t = σ(x_t W_α1 W_α2 + b)^(1/τ)``); the forward contract hands a variant only q, k, v,
and k_t is a linear function of x_t, so the gate is the same family of low-rank maps of the
input. The paper's output gate (``SiLU(x W_r)``) and output projection belong to the model;
its per-head output normalisation (LayerNorm; RMSNorm in flash-linear-attention) is kept.

Complexity: the chunkwise form (paper §4; ``attnbench.nn.chunked_scan.chunked_gated_linear``)
is parallel inside chunks of C positions (default 16) with a (C, C, D) decay factor, and
carries the state between chunks: time O(L·C·D + L·D²), memory O(L·C·D + L·D²/C) — linear in L.
Causal is the paper's form; ``is_causal=False`` sums a left-to-right and a right-to-left scan
(an extension for encoder tasks, as bidirectional Mamba). Self-attention only (cross=False),
padding honoured (a padded position is a no-op), no weights. Incremental decoding: the state is
one (D, D) matrix per head (constant in the context). Options: ``chunk`` (16), ``gate_rank``
(16), ``gate_temperature`` (16.0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import attnbench
from attnbench.nn.chunked_scan import chunked_gated_linear, recurrent_gated_linear
from attnbench.nn.gate_projection import HeadwiseProjection
from attnbench.nn.recurrent_attention import RECURRENT_SPEC, RecurrentAttention


class GatedLinearAttention(RecurrentAttention):
    """GLA with per-channel gates from the keys; see the module docstring."""

    variant = "gla"

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__(config, default_chunk=16)
        self.temperature = float(config.option("gate_temperature", 16.0))
        if self.temperature <= 0:
            raise ValueError(f"gla: gate_temperature must be > 0, got {self.temperature}")
        rank = int(config.option("gate_rank", 16))
        # σ(b) = 0.99^(1/…) ≈ a slow decay at start: logit of 0.99 ≈ 4.6.
        self.gate = HeadwiseProjection(self.heads, self.head_dim, self.head_dim, rank=rank, bias=math.log(99.0))

    def log_decay(self, k: torch.Tensor) -> torch.Tensor:
        """``g_t = logsigmoid(k_t W1 W2 + b) / τ``, (B, H, L, D), every entry ≤ 0."""
        return F.logsigmoid(self.gate(k)) / self.temperature

    def prepare(self, q, k, v, keep):
        g = self.log_decay(k)
        if keep is not None:
            drop = ~keep[:, None, :, None]
            k, v, g = k.masked_fill(drop, 0), v.masked_fill(drop, 0), g.masked_fill(drop, 0)
        return q * self.head_dim ** -0.5, k, v, g

    def scan(self, q, k, v, g, initial_state=None, recurrent=False):
        if recurrent:
            return recurrent_gated_linear(q, k, v, g, initial_state=initial_state)
        return chunked_gated_linear(q, k, v, g, chunk=self.chunk, initial_state=initial_state)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="gla",
        build=GatedLinearAttention,
        summary="Gated linear attention: (D, D) state with per-channel decays from the keys, chunkwise",
        citation="Yang et al. 2024, Gated Linear Attention Transformers with Hardware-Efficient Training (ICML)",
        options={"chunk": 16, "gate_rank": 16, "gate_temperature": 16.0},
        **RECURRENT_SPEC,  # a decayed, unnormalised recurrence: O(L), self-attention, no weights, incremental
    ))
