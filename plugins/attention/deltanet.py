"""deltanet: linear attention whose state is written by the delta rule, chunkwise in O(L).

Schlag, Irie & Schmidhuber, "Linear Transformers Are Secretly Fast Weight Programmers",
ICML 2021 (the delta rule); Yang, Wang, Zhang, Shen & Kim, "Parallelizing Linear
Transformers with the Delta Rule over Sequence Length", NeurIPS 2024 (the chunkwise form).

Per head, a (D, D) fast-weight state replaces the value it holds for key k_t instead of
adding to it::

    k̂_t = k_t / ‖k_t‖,  q̂_t = q_t / ‖q_t‖,  β_t = σ(w_h·k_t + b_h)
    S_t = S_{t−1} (I − β_t k̂_t k̂_tᵀ) + β_t k̂_t v_tᵀ          (write β_t (v_t − S_{t−1}ᵀ k̂_t) along k̂_t)
    o_t = RMSNorm_h(S_tᵀ q̂_t / √D)

What is computed from what: the write strength β_t from the head's own **keys** (before
normalisation) by a per-head linear map (``HeadwiseProjection``, D → 1, bias 0 so β starts near
½); the paper (and flash-linear-attention) computes β from the layer input x_t by a linear map —
k_t is a linear function of x_t. q and k are L2-normalised (Yang et al. 2024, §3.3: needed for
the state update to be a contraction); the SiLU before the norm and the short convolutions of
their DeltaNet layer belong to the model and are left out. The per-head RMSNorm is kept.

Chunkwise form (``attnbench.nn.chunked_scan.chunked_delta_rule``): inside a chunk of C
positions (default 32) the writes solve a unit lower-triangular (C, C) system (the paper's UT
transform), across chunks one (D, D) state is carried: time O(L·C·D + L·C² + L·D²), memory
O(L·(C + D)) — linear in L. Causal is the paper's form; ``is_causal=False`` sums a left-to-right
and a right-to-left scan (an extension for encoder tasks). Self-attention only, padding honoured
(a padded position writes nothing), no weights. Incremental decoding: one (D, D) state per head.
Options: ``chunk`` (32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import attnbench
from attnbench.nn.chunked_scan import chunked_delta_rule, recurrent_delta_rule
from attnbench.nn.gate_projection import HeadwiseProjection
from attnbench.nn.recurrent_attention import RECURRENT_SPEC, RecurrentAttention


class DeltaNet(RecurrentAttention):
    """The delta rule with β from the keys; see the module docstring."""

    variant = "deltanet"

    def __init__(self, config: attnbench.AttentionConfig, *, default_chunk: int = 32) -> None:
        super().__init__(config, default_chunk=default_chunk)
        self.beta_proj = HeadwiseProjection(self.heads, self.head_dim, 1)

    def write_strength(self, k: torch.Tensor) -> torch.Tensor:
        """``β_t = σ(w_h·k_t + b_h)``, (B, H, L)."""
        return torch.sigmoid(self.beta_proj(k))[..., 0]

    def log_decay(self, k: torch.Tensor) -> torch.Tensor | None:
        """No decay: the plain delta rule (Gated DeltaNet overrides this)."""
        return None

    def prepare(self, q, k, v, keep):
        beta, g = self.write_strength(k), self.log_decay(k)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if keep is not None:
            drop = ~keep[:, None, :]
            beta = beta.masked_fill(drop, 0)
            k, v = k.masked_fill(drop[..., None], 0), v.masked_fill(drop[..., None], 0)
            g = None if g is None else g.masked_fill(drop, 0)
        return q * self.head_dim ** -0.5, k, v, beta, g

    def scan(self, q, k, v, beta, g, initial_state=None, recurrent=False):
        if recurrent:
            return recurrent_delta_rule(q, k, v, beta, g, initial_state=initial_state)
        return chunked_delta_rule(q, k, v, beta, g, chunk=self.chunk, initial_state=initial_state)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="deltanet",
        build=DeltaNet,
        summary="DeltaNet: a (D, D) state written by the delta rule (β from the keys), chunkwise",
        citation="Schlag et al. 2021 (ICML); Yang et al. 2024, Parallelizing Linear Transformers with the Delta Rule (NeurIPS)",
        options={"chunk": 32},
        **RECURRENT_SPEC,  # the delta-rule recurrence: O(L), self-attention, no weights, incremental
    ))
