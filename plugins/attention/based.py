"""based: Based — linear attention with a 2nd-order Taylor feature map, plus a small sliding window.

Arora, Eyuboglu, Zhang, Timalsina, Alberti, Zinsley, Zou, Rudra & Ré, "Simple linear attention
language models balance the recall-throughput tradeoff", ICML 2024 (arXiv:2402.18668).

Per head, queries and keys are first projected to a small feature dimension f (the paper's
d' = 16) and mapped by the Taylor expansion of exp to 2nd order::

    q̃ = q W_q,h   k̃ = k W_k,h                    (D → f, learned per head)
    φ(x̃) = [1, x̃ / f^{1/4}, vec(x̃ x̃ᵀ) / (√2 · f^{1/2})]     so  φ(q̃)·φ(k̃) = 1 + s + s²/2,  s = q̃·k̃/√f
    linear_i = Σ_{j≤i} φ(q̃_i)·φ(k̃_j) v_j / Σ_{j≤i} φ(q̃_i)·φ(k̃_j)        (1 + s + s²/2 > 0: a valid normaliser)
    o_i = linear_i + window_i

with window_i exact softmax attention over the ``w`` most recent keys (``local``'s blocked
form). The paper stacks Taylor linear-attention layers and sliding-window layers (w = 64 … 128)
as separate layers of one model; here each variant instance holds both mixers on the same
q, k, v and sums them (a hybrid head) — the departure that lets one variant carry both.
Its short convolutions belong to the model. ``window=0`` keeps only the Taylor linear attention
(flash-linear-attention's ``based`` op).

Complexity: the Taylor part is ``linear``'s chunked causal form over 1 + f + f² features
(273 at f = 16): time and memory O(L·f²·D); the window O(L·w) — linear in L. Sequences shorter
than 1 + f + f² take the quadratic form of the same sums (the (L, L) weights 1 + s + s²/2, as
flash-linear-attention's ``parallel_based``), which is cheaper there. ``is_causal=False``
uses the full sums and a ±w/2 window. Self-attention only (the window needs one axis), padding
honoured, no weights. Incremental decoding: the (1 + f + f², D) sums plus a ring buffer of the
window — bounded. Options: ``feature_dim`` (16), ``window`` (64), ``chunk`` (64).
"""

from __future__ import annotations

import dataclasses

import torch
from attnbench_plugins.attention.linear import EPS, align_for_causal, causal_linear
from attnbench_plugins.attention.local import LocalAttention
from torch import nn

import attnbench
from attnbench.nn.gate_projection import HeadwiseProjection
from attnbench.nn.masks import key_padding


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """``[1, x/f^{1/4}, vec(x xᵀ)/(√2 f^{1/2})]`` of ``x`` (…, f): features whose dot product is 1 + s + s²/2."""
    f = x.shape[-1]
    x = x * f ** -0.25
    second = (x[..., :, None] * x[..., None, :]).flatten(-2) * 2 ** -0.5
    return torch.cat([torch.ones_like(x[..., :1]), x, second], dim=-1)


class Based(nn.Module):
    """Taylor linear attention + sliding window; see the module docstring."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = config.num_heads, config.head_dim
        self.feature_dim = int(config.option("feature_dim", 16))
        self.window = int(config.option("window", 64))
        self.chunk = int(config.option("chunk", 64))
        if self.feature_dim < 1 or self.window < 0 or self.chunk < 1:
            raise ValueError(
                f"based: feature_dim >= 1, window >= 0, chunk >= 1 expected, got {self.feature_dim}, "
                f"{self.window}, {self.chunk}; pass e.g. options={{'feature_dim': 16, 'window': 64}}"
            )
        self.q_features = HeadwiseProjection(self.heads, self.head_dim, self.feature_dim)
        self.k_features = HeadwiseProjection(self.heads, self.head_dim, self.feature_dim)
        self.local = LocalAttention(dataclasses.replace(config, options={"window": self.window})) if self.window else None

    @property
    def feature_count(self) -> int:
        """1 + f + f²: the Taylor features per query and key, the rows of the linear form's sums."""
        return 1 + self.feature_dim + self.feature_dim ** 2

    def features(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """φ(q W_q) and φ(k W_k), each (B, H, L, 1 + f + f²)."""
        return taylor_features(self.q_features(q)), taylor_features(self.k_features(k))

    def taylor(self, q, k, v, keep=None, is_causal=True):
        """The Taylor linear-attention part alone (``window=0``'s whole output), in the cheaper form.

        Below ``1 + f + f²`` positions the (L, L) weights ``1 + s + s²/2`` are smaller than the
        (L, 1 + f + f²) features and cost L²·(f + D) instead of L·(1 + f + f²)·(D + chunk): the
        quadratic form (:meth:`taylor_parallel`); from there on the linear form
        (:meth:`taylor_linear`), whose memory grows as L. The same sums, in another order.
        """
        if max(q.shape[-2], k.shape[-2]) < self.feature_count:
            return self.taylor_parallel(q, k, v, keep, is_causal)
        return self.taylor_linear(q, k, v, keep, is_causal)

    def taylor_parallel(self, q, k, v, keep=None, is_causal=True):
        """``Σ_j a_ij v_j / Σ_j a_ij`` with ``a_ij = 1 + s_ij + s_ij²/2`` over visible keys: O(L²·(f + D))."""
        s = self.q_features(q) @ self.k_features(k).transpose(-2, -1) * self.feature_dim ** -0.5
        a = 1 + s + s * s / 2
        if is_causal:
            a = a.tril()  # top-left aligned, as SDPA's is_causal
        if keep is not None:
            a = a * keep[:, None, None, :].to(a.dtype)
        return (a @ v) / (a.sum(-1, keepdim=True) + EPS)

    def taylor_linear(self, q, k, v, keep=None, is_causal=True):
        """The Taylor part through the 1 + f + f² features: ``linear``'s chunked causal form, O(L·f²·D)."""
        lq = q.shape[-2]
        if is_causal:
            q, k, v, keep = align_for_causal(q, k, v, keep)
        fq, fk = self.features(q, k)
        if keep is not None:
            fk = fk * keep[:, None, :, None].to(fk.dtype)
        if is_causal:
            return causal_linear(fq, fk, v, self.chunk)[..., :lq, :]
        return (fq @ (fk.transpose(-2, -1) @ v)) / (fq @ fk.sum(-2)[..., None] + EPS)

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        if need_weights:
            raise NotImplementedError("based does not return weights (its spec says weights=False)")
        if q.shape[-2] != k.shape[-2]:
            raise ValueError(
                f"based is self-attention only (cross=False): query length {q.shape[-2]} != key length {k.shape[-2]}"
            )
        out = self.taylor(q, k, v, key_padding(attn_mask), is_causal)
        if self.local is not None:
            out = out + self.local(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return out

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """The Taylor sums Σφ(k)vᵀ (B, H, F, D) and Σφ(k) (B, H, F, 1), and the window's ring buffer."""
        n = self.feature_count
        state = {"kv": torch.zeros(batch_size, self.heads, n, self.head_dim, device=device, dtype=dtype),
                 "z": torch.zeros(batch_size, self.heads, n, 1, device=device, dtype=dtype)}
        if self.local is not None:
            state["window"] = self.local.init_state(batch_size, device=device, dtype=dtype)
        return state

    def state_nbytes(self, state):
        """Bytes of the two sums (constant) and the window (bounded)."""
        sums = sum(state[n].numel() * state[n].element_size() for n in ("kv", "z"))
        return sums + (self.local.state_nbytes(state["window"]) if self.local is not None else 0)

    def step(self, q, k, v, state):
        """The chunked causal form with the sums carried in, plus the window's step."""
        fq, fk = self.features(q, k)
        kv, z = state["kv"], state["z"]
        outs = []
        for start in range(0, q.shape[-2], self.chunk):
            part = slice(start, start + self.chunk)
            fq_c, fk_c, v_c = fq[..., part, :], fk[..., part, :], v[..., part, :]
            intra = (fq_c @ fk_c.transpose(-2, -1)).tril()
            outs.append((fq_c @ kv + intra @ v_c) / (fq_c @ z + intra.sum(-1, keepdim=True) + EPS))
            kv = kv + fk_c.transpose(-2, -1) @ v_c
            z = z + fk_c.sum(-2)[..., None]
        out, new = torch.cat(outs, dim=-2), {"kv": kv, "z": z}
        if self.local is not None:
            window_out, new["window"] = self.local.step(q, k, v, state["window"])
            out = out + window_out
        return out, new


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="based",
        build=Based,
        summary="Based: Taylor-2 linear attention on learned f-dim features + a small sliding softmax window",
        complexity="O(L·(f²·D + w))",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        tolerance=None,  # exp's Taylor series on learned features, not an approximation of softmax on q, k
        citation="Arora et al. 2024, Simple linear attention language models balance the recall-throughput tradeoff (ICML)",
        options={"feature_dim": 16, "window": 64, "chunk": 64},
        incremental=True,
    ))
