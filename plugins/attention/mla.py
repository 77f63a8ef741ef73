"""mla: Multi-head Latent Attention — keys and values through one low-rank latent, a decoupled RoPE key.

DeepSeek-AI, "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language
Model", arXiv:2405.04434, 2024 (§2.1); the same layer in DeepSeek-V3 (arXiv:2412.19437).

Per position t, from the model's keys and values of all H heads (flattened, ``[k_t; v_t]``)::

    c_t      = RMSNorm(W_DKV [k_t; v_t])                        (latent, r channels, shared by all heads)
    k^R_t    = RoPE(W_KR k_t)                                   (decoupled rotary key, d_R channels, shared)
    k_{t,h}  = [W_UK,h c_t ; k^R_t],   v_{t,h} = W_UV,h c_t     (per head: D − d_R and D channels)
    q_{t,h}  = [q_{t,h}[:D−d_R] ; RoPE(q_{t,h}[D−d_R:])]
    o_{t,h}  = softmax_j(q_{t,h}·k_{j,h} / √D) v_{j,h}

The "naive" form (forward) materialises k and v per head and calls fused SDPA. The "absorb"
form (decoding, and :meth:`MultiheadLatentAttention.absorbed`) folds W_UK,h into the query and
W_UV,h into the output, ``q·k = (W_UK,hᵀ q^C)·c_j + q^R·k^R_j`` and
``o = W_UV,h Σ_j p_j c_j``, so the cache holds only c_j and k^R_j: (r + d_R) numbers per
position instead of 2·H·D (DeepSeek-V3's ``inference/model.py``, ``attn_impl="absorb"``).

What is computed from what: the paper compresses the layer input h_t (``c_t = W_DKV h_t``) and
draws k^R from h_t; the forward contract hands a variant k and v (each a linear map of h_t), so
the latent compresses ``[k_t; v_t]`` and the rotary key is a map of k_t — the same family of
low-rank maps of the input, with the latent's RMSNorm kept. The query path's own low-rank
compression (W_DQ, W_UQ) belongs to the model: q arrives per head and its last d_R channels are
rotated. Parameters added: 2HD·r + HD·d_R + H·r·(2D − d_R) + r.

Complexity: O(L²) time (softmax attention), O(L·H·D) memory besides SDPA's; the decode cache
is (r + d_R)·L per sequence. Honours causality, padding and arbitrary masks, cross-attention
(queries rotated at 0…Lq−1, keys at 0…Lk−1, as ``rope``); no weights (its maps weigh the
latent's values, not the v it is given). Options: ``latent``
(r, 64), ``rope_dim`` (d_R, 16, at most D/2, rounded down to even), ``rope_base`` (10000).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attnbench_plugins.attention.rope import rotate_pairs
from torch import nn

import attnbench
from attnbench.nn.biased_attention import biased_attention
from attnbench.nn.kv_cache import KVCacheDecoding, chunk_causal_mask


class MultiheadLatentAttention(KVCacheDecoding, nn.Module):
    """MLA over the model's per-head q, k, v; see the module docstring.

    Its decoding state is a latent cache (:class:`KVCacheDecoding`'s ``init_state``): c_j as its
    keys (B, 1, T, r), k^R_j as its values (B, 1, T, d_R).
    """

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        h, d = config.num_heads, config.head_dim
        self.heads, self.head_dim, self.dropout = h, d, config.dropout
        self.latent = int(config.option("latent", 64))
        rope_dim = min(int(config.option("rope_dim", 16)), d // 2)
        self.rope_dim = rope_dim - rope_dim % 2
        if self.latent < 1:
            raise ValueError(f"mla: latent must be >= 1, got {self.latent}; pass options={{'latent': 64}}")
        self.nope = d - self.rope_dim
        self.down = nn.Linear(2 * h * d, self.latent, bias=False)
        self.latent_norm = nn.RMSNorm(self.latent, eps=1e-6)
        self.rope_key = nn.Linear(h * d, self.rope_dim, bias=False) if self.rope_dim else None
        self.up_k = nn.Parameter(torch.randn(h, self.latent, self.nope) / math.sqrt(self.latent))
        self.up_v = nn.Parameter(torch.randn(h, self.latent, d) / math.sqrt(self.latent))
        half = self.rope_dim // 2
        base = float(config.option("rope_base", 10000.0))
        inv_freq = base ** (-torch.arange(half, dtype=torch.float32) / max(half, 1))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _rotate(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """RoPE on ``x`` (…, T, d_R) at positions start … start+T−1 (half-split pairs, as ``rope``)."""
        if self.rope_dim == 0:
            return x
        pos = torch.arange(start, start + x.shape[-2], device=x.device, dtype=torch.float32)
        angles = pos[:, None] * self.inv_freq.to(x.device)
        return rotate_pairs(x, angles.cos().to(x.dtype), angles.sin().to(x.dtype))

    def compress(self, k: torch.Tensor, v: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent ``c`` (B, T, r) and the shared rotary key ``k^R`` (B, T, d_R) of positions start…"""
        kf, vf = k.transpose(1, 2).flatten(2), v.transpose(1, 2).flatten(2)  # (B, T, H·D)
        c = self.latent_norm(self.down(torch.cat([kf, vf], dim=-1)))
        k_rope = self._rotate(self.rope_key(kf), start) if self.rope_key is not None else kf[..., :0]
        return c, k_rope

    def _split_query(self, q: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return q[..., : self.nope], self._rotate(q[..., self.nope:], start)

    def _check(self, q, k):
        if q.shape[1] != self.heads or q.shape[-1] != self.head_dim or k.shape[1] != self.heads:
            raise ValueError(
                f"mla was built for {self.heads} heads of {self.head_dim} channels, got q {tuple(q.shape)}, "
                f"k {tuple(k.shape)}; build it with AttentionConfig(num_heads={q.shape[1]}, head_dim={q.shape[-1]})"
            )

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        """The naive form: per-head keys and values expanded from the latent, then fused SDPA."""
        if need_weights:
            raise NotImplementedError("mla does not return weights: they weigh its own latent values, not v")
        self._check(q, k)
        c, k_rope = self.compress(k, v)
        keys = torch.cat([torch.einsum("btr,hrn->bhtn", c, self.up_k),
                          k_rope[:, None].expand(-1, self.heads, -1, -1)], dim=-1)
        values = torch.einsum("btr,hrd->bhtd", c, self.up_v)
        q_nope, q_rope = self._split_query(q)
        dropout = self.dropout if self.training else 0.0
        return biased_attention(torch.cat([q_nope, q_rope], dim=-1), keys, values, None, attn_mask, is_causal,
                                dropout, False)

    def _absorbed_attend(self, q, c, k_rope, start, allowed):
        """Scores and output through the latent (W_UK into the query, W_UV after the sum)."""
        q_nope, q_rope = self._split_query(q, start)
        q_latent = torch.einsum("bhtn,hrn->bhtr", q_nope, self.up_k)
        scores = (q_latent @ c[:, None].transpose(-2, -1) + q_rope @ k_rope[:, None].transpose(-2, -1))
        scores = scores * self.head_dim ** -0.5
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        weights = F.dropout(torch.softmax(scores, dim=-1), self.dropout, training=self.training and self.dropout > 0)
        return torch.einsum("bhtr,hrd->bhtd", weights @ c[:, None], self.up_v)

    def absorbed(self, q, k, v, is_causal=False):
        """The absorb form over a whole sequence: equals :meth:`forward` (DeepSeek-V3's two ``attn_impl``)."""
        self._check(q, k)
        c, k_rope = self.compress(k, v)
        allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril() if is_causal else None
        return self._absorbed_attend(q, c, k_rope, 0, allowed)

    def state_nbytes(self, state):
        """Bytes of the cached latents and rotary keys: (r + d_R) per position, linear in the context."""
        b = state.keys.shape[0]
        return b * state.length * (self.latent + self.rope_dim) * state.keys.element_size()

    def step(self, q, k, v, state):
        """Compress the newest chunk into the cache, then attend through the latent (absorb form)."""
        self._check(q, k)
        start = state.length
        c_new, rope_new = self.compress(k, v, start)
        c, k_rope = state.append(c_new[:, None], rope_new[:, None])
        out = self._absorbed_attend(q, c[:, 0], k_rope[:, 0], start, chunk_causal_mask(q.shape[-2], c.shape[-2], q.device))
        return out, state


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="mla",
        build=MultiheadLatentAttention,
        summary="Multi-head latent attention: k, v from one low-rank latent + a shared RoPE key; latent-only decode cache",
        complexity="O(L^2)",
        exact=False,
        causal=True,
        padding_mask=True,
        arbitrary_mask=True,
        cross=True,
        weights=False,  # its maps weigh the latent's values, not the v it was given
        tolerance=None,  # keys and values are re-derived through the latent: not softmax over the given k, v
        citation="DeepSeek-AI 2024, DeepSeek-V2 (arXiv:2405.04434), §2.1 Multi-head Latent Attention",
        options={"latent": 64, "rope_dim": 16, "rope_base": 10000.0},
        incremental=True,
    ))
