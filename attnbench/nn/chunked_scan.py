"""Linear recurrences with decay, chunk by chunk in O(L), each beside its plain recurrent form.

Two recurrences over a (K, V) state per batch and head, read by the queries:

* **gated linear attention** (GLA, Mamba-2's SSD, RetNet as a special case)::

      S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ          o_t = S_tᵀ q_t

  with ``g_t ≤ 0`` either one log-decay per key channel (B, H, L, K) or one per position
  (B, H, L, 1), broadcast over the channels.

* **the (gated) delta rule** (DeltaNet, Gated DeltaNet)::

      S_t = exp(g_t) S_{t−1} (I − β_t k_t k_tᵀ) + β_t k_t v_tᵀ          o_t = S_tᵀ q_t

  i.e. decay, then write ``u_t = β_t (v_t − exp(g_t) S_{t−1}ᵀ k_t)`` along ``k_t``.

The ``recurrent_*`` functions step one position at a time: the definition, kept as the
reference that the ``chunked_*`` forms are tested against (as flash-linear-attention keeps a
``naive.py`` beside each kernel). The chunked forms are parallel inside a chunk of C positions
and carry the state from chunk to chunk: time O(L·C·K + L·K·V), memory O(L·C·K + L·K·V/C).
Every function takes an ``initial_state`` and returns the final one, so a prefill chunk and a
decoding step are the same call. The caller scales q (1/√K) beforehand.

References: Yang et al., "Gated Linear Attention Transformers with Hardware-Efficient
Training", ICML 2024 (the chunkwise form); Yang et al., "Parallelizing Linear Transformers
with the Delta Rule over Sequence Length", NeurIPS 2024 (the WY/UT form of the delta rule);
Yang, Kautz & Hatamizadeh, "Gated Delta Networks", ICLR 2025.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: The largest |Σ g| over a chunk for which the per-channel decays are factorised (see
#: :func:`chunked_gated_linear`): factors up to e^{SPAN/2}, products of masked entries up to e^{SPAN}.
FACTORISED_SPAN = 60.0


def _state(q: torch.Tensor, v: torch.Tensor, initial_state: torch.Tensor | None) -> torch.Tensor:
    b, h, _, k = q.shape
    if initial_state is None:
        return q.new_zeros(b, h, k, v.shape[-1])
    return initial_state.to(q.dtype)


def _chunks(x: torch.Tensor, chunk: int, n: int) -> torch.Tensor:
    """(B, H, L, X) zero-padded to n·C positions, as (B, H, n, C, X)."""
    return F.pad(x, (0, 0, 0, n * chunk - x.shape[2])).unflatten(2, (n, chunk))


def recurrent_gated_linear(q, k, v, g, initial_state=None):
    """``S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ``, ``o_t = S_tᵀ q_t``, one position at a time.

    q, k (B, H, L, K); v (B, H, L, V); g (B, H, L, K) or (B, H, L, 1). Returns (o, S_L).
    """
    state = _state(q, v, initial_state)
    outs = []
    for t in range(q.shape[2]):
        state = state * g[:, :, t, :, None].exp() + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append((q[:, :, t, :, None] * state).sum(-2))
    return torch.stack(outs, dim=2), state


def chunked_gated_linear(q, k, v, g, *, chunk: int = 16, initial_state=None):
    """The same recurrence as :func:`recurrent_gated_linear`, parallel inside chunks of ``chunk``.

    Inside a chunk with cumulative log-decays ``b_i = Σ_{s≤i} g_s`` (from the chunk's start):
    ``o_i = (q_i ⊙ e^{b_i}) S_0 + Σ_{j≤i} Σ_d q_id k_jd e^{b_id − b_jd} v_j``; the decay
    factors are formed as differences ``b_i − b_j ≤ 0`` (masked above the diagonal before the
    exponential), so nothing overflows however strong the decay. When the decays are moderate
    (``C·max|g| ≤ FACTORISED_SPAN``, always the case for GLA's ``logsigmoid/16`` gates with
    logits above −60) the factor is split at the chunk's middle into a query side and a key side
    and the intra-chunk scores are one matmul; otherwise the exact (C, C, K) product is formed.
    A per-position decay (K = 1) needs only the (C, C) factor.
    """
    length = q.shape[2]
    n = max(1, math.ceil(length / chunk))
    qc, kc, vc, gc = (_chunks(t, chunk, n) for t in (q, k, v, g))  # padding: g = 0, k = v = 0
    b = gc.cumsum(3)  # (B, H, n, C, K|1)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()

    def decay() -> torch.Tensor:  # e^{b_i − b_j} for j ≤ i, 0 above the diagonal: (…, C, C, K|1)
        diff = b[..., :, None, :] - b[..., None, :, :]
        return diff.masked_fill(~causal[:, :, None], float("-inf")).exp()

    if g.shape[-1] == 1:
        scores = (qc @ kc.transpose(-2, -1)) * decay()[..., 0]
    elif -gc.amin().item() * chunk <= FACTORISED_SPAN:
        # e^{b_i − b_j} = e^{b_i − b_m} · e^{b_m − b_j} (m the chunk's middle): one matmul instead of a
        # (C, C, K) product, ~20× faster; each factor stays below e^{SPAN/2}, so nothing overflows.
        mid = b[..., chunk // 2 : chunk // 2 + 1, :]
        scores = ((qc * (b - mid).exp()) @ (kc * (mid - b).exp()).transpose(-2, -1)).masked_fill(~causal, 0)
    else:  # decays too strong to factorise in floating point: the exact (C, C, K) form
        scores = torch.einsum("...id,...jd,...ijd->...ij", qc, kc, decay())
    intra = scores @ vc
    q_read = qc * b.exp()  # reads the state left by the previous chunks
    last = b[..., -1:, :]  # (B, H, n, 1, K|1): the whole chunk's log-decay
    writes = (kc * (last - b).exp()).transpose(-2, -1) @ vc  # (B, H, n, K, V)
    chunk_decay = last.transpose(-2, -1).exp()  # (B, H, n, K|1, 1)
    state = _state(q, v, initial_state)
    inter = []
    for c in range(n):
        inter.append(q_read[:, :, c] @ state)
        state = state * chunk_decay[:, :, c] + writes[:, :, c]
    out = intra + torch.stack(inter, dim=2)
    return out.flatten(2, 3)[:, :, :length], state


def recurrent_delta_rule(q, k, v, beta, g=None, initial_state=None):
    """``S_t = e^{g_t} S_{t−1} + β_t k_t (v_t − e^{g_t} S_{t−1}ᵀ k_t)ᵀ``, ``o_t = S_tᵀ q_t``, stepwise.

    q, k (B, H, L, K); v (B, H, L, V); beta (B, H, L); g (B, H, L) log-decays, or None for
    the ungated delta rule. Returns (o, S_L).
    """
    state = _state(q, v, initial_state)
    outs = []
    for t in range(q.shape[2]):
        if g is not None:
            state = state * g[:, :, t, None, None].exp()
        kt = k[:, :, t]
        u = beta[:, :, t, None] * (v[:, :, t] - (kt[..., None] * state).sum(-2))
        state = state + kt[..., None] * u[..., None, :]
        outs.append((q[:, :, t, :, None] * state).sum(-2))
    return torch.stack(outs, dim=2), state


def chunked_delta_rule(q, k, v, beta, g=None, *, chunk: int = 32, initial_state=None):
    """The same recurrence as :func:`recurrent_delta_rule`, parallel inside chunks.

    Inside a chunk, with ``Γ_ij = e^{b_i − b_j}`` (b the cumulative log-decay), the writes
    ``U`` solve the unit lower-triangular system ``(I + A) U = β V − diag(β e^{b}) K S_0``,
    ``A_ij = β_i Γ_ij k_i·k_j`` for j < i (the UT transform of Yang et al. 2024, by a
    triangular solve instead of a loop); then ``O = diag(e^{b}) Q S_0 + (Q Kᵀ ⊙ Γ)_{j≤i} U`` and
    ``S = e^{b_C} S_0 + (K ⊙ e^{b_C − b})ᵀ U``.
    """
    length = q.shape[2]
    n = max(1, math.ceil(length / chunk))
    qc, kc, vc = (_chunks(t, chunk, n) for t in (q, k, v))
    betac = _chunks(beta[..., None], chunk, n)  # padding: β = 0 writes nothing
    gate = torch.zeros_like(beta) if g is None else g
    b = _chunks(gate[..., None], chunk, n).cumsum(3)  # (B, H, n, C, 1)
    tri = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    decay = (b - b.transpose(-2, -1)).masked_fill(~tri, float("-inf")).exp()  # Γ, (B, H, n, C, C)
    kk = (kc @ kc.transpose(-2, -1)) * decay
    eye = torch.eye(chunk, dtype=q.dtype, device=q.device)
    system = eye + (betac * kk).tril(-1)
    rhs = torch.cat([betac * vc, betac * b.exp() * kc], dim=-1)
    solved = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    u, w = solved[..., : v.shape[-1]], solved[..., v.shape[-1]:]
    qk = ((qc @ kc.transpose(-2, -1)) * decay)  # Γ is already zero above the diagonal
    q_read = qc * b.exp()
    last = b[..., -1:, :]
    k_write = kc * (last - b).exp()
    chunk_decay = last.exp()  # (B, H, n, 1, 1)
    state = _state(q, v, initial_state)
    outs = []
    for c in range(n):
        writes = u[:, :, c] - w[:, :, c] @ state
        outs.append(q_read[:, :, c] @ state + qk[:, :, c] @ writes)
        state = state * chunk_decay[:, :, c] + k_write[:, :, c].transpose(-2, -1) @ writes
    return torch.stack(outs, dim=2).flatten(2, 3)[:, :, :length], state


def bidirectional(scan: Callable[..., tuple[torch.Tensor, torch.Tensor]], *seqs: torch.Tensor | None,
                  **kwargs) -> torch.Tensor:
    """A causal scan run left to right plus the same scan run right to left, summed.

    The non-causal form of the recurrent variants (as in bidirectional Mamba, Zhu et al. 2024,
    "Vision Mamba"): position t reads the state of everything up to t and, separately, of
    everything from t on, with each position's own gates in both directions. ``seqs`` are
    tensors with the sequence on dim 2 (or None); ``kwargs`` go to ``scan`` unchanged.
    """
    forward, _ = scan(*seqs, **kwargs)
    flipped = [None if s is None else s.flip(2) for s in seqs]
    backward, _ = scan(*flipped, **kwargs)
    return forward + backward.flip(2)
