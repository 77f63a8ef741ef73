"""retention: RetNet's multi-scale retention, no softmax, chunkwise in O(L).

Sun et al., "Retentive Network: A Successor to Transformer for Large Language Models",
arXiv:2307.08621, 2023. Bidirectional form: Fan et al., "RMT: Retentive Networks Meet Vision
Transformers", CVPR 2024 (arXiv:2309.11523).

Per head h with a fixed decay ``γ_h = 1 − 2^(−5−h)`` (h = 0 … H−1, the paper's
``1 − 2^(−5−arange(0, H))``), queries and keys rotated by position as RetNet's ``Θ`` (xPos-style
rotation, angles ``n·10000^(−linspace(0, 1, D/2))`` as in torchscale; option ``rotary``):

    causal:         o_n = Σ_{m≤n} γ^(n−m) (q_n · k_m / √D) v_m
    not causal:     o_n = Σ_m     γ^|n−m| (q_n · k_m / √D) v_m        (RMT's bidirectional decay)

then GroupNorm over each head's D channels (with a learned per-channel affine), as RetNet
normalises each head's retention output. The swish gate and output projection of the paper's
MSR block belong to the model (``attnbench.nn``'s projections), not to the variant. The paper's
score normalisations (dividing rows by √ΣD and by max(|ΣR|, 1)) rescale each query's row by a
positive factor that GroupNorm removes, so they are left out.

RetNet is a decoder: its own form is causal. ``is_causal=False`` is served by RMT's
bidirectional decay γ^|n−m| (forward pass + backward pass − the diagonal counted twice), so
the variant plugs into encoder tasks without a spec flag for "causal only"; that form is an
extension, not the paper's language model.

Chunkwise form (the paper's eq. 7): inside a chunk of C positions the parallel form
``(Q Kᵀ ⊙ D) V``; across chunks a (D, D) state per head, ``S_c = γ^C S_{c−1} + Kᵀ_c (V_c ⊙ ζ)``,
read by ``(Q_c ⊙ ξ) S_{c−1}``. Time O(L·C·D + L·D²), memory O(L·C + L·D²/C): linear in L.
Padding: masked keys (and their values) are zeroed, so they add nothing to any state.
Options: ``chunk`` (64), ``rotary`` (True).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attnbench_plugins.attention.rope import rotate_pairs
from torch import nn

import attnbench
from attnbench.nn.kv_cache import RecurrentState
from attnbench.nn.masks import key_padding


def retention_decays(num_heads: int) -> torch.Tensor:
    """RetNet's per-head decays ``γ_h = 1 − 2^(−5−h)``, h = 0 … num_heads − 1 (float64)."""
    return 1 - 2.0 ** (-5 - torch.arange(num_heads, dtype=torch.float64))


def causal_retention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gamma: torch.Tensor,
                     chunk: int) -> torch.Tensor:
    """``o_n = Σ_{m≤n} γ_h^(n−m) (q_n·k_m) v_m`` chunk by chunk; ``log_gamma`` is (H,), q/k/v (B, H, L, D).

    Parallel inside each chunk, one (D, D) state per head carried from chunk to chunk.
    """
    length = q.shape[-2]
    n = math.ceil(length / chunk)
    pad = (0, 0, 0, n * chunk - length)  # zero keys and values: padding adds nothing
    qc, kc, vc = (F.pad(t, pad).unflatten(-2, (n, chunk)) for t in (q, k, v))  # (B, H, n, C, D)
    lg = log_gamma.to(q.dtype)[:, None]  # (H, 1)
    pos = torch.arange(chunk, device=q.device, dtype=q.dtype)
    rel = pos[:, None] - pos[None, :]  # i − j
    inner_decay = torch.exp((rel * lg[..., None]).clamp(max=0)) * (rel >= 0)  # (H, C, C)
    inner = ((qc @ kc.transpose(-2, -1)) * inner_decay[:, None]) @ vc
    q_decay = torch.exp((pos + 1) * lg)[:, None, :, None]  # γ^(i+1): how far back the state is
    k_decay = torch.exp((chunk - 1 - pos) * lg)[:, None, :, None]  # γ^(C−1−j): age at chunk end
    chunk_decay = torch.exp(chunk * lg)[..., None]  # (H, 1, 1)
    kv = (kc * k_decay).transpose(-2, -1) @ vc  # (B, H, n, D, D): each chunk's contribution
    state = torch.zeros_like(kv[:, :, 0])
    cross = []
    for c in range(n):
        cross.append((qc[:, :, c] * q_decay[:, 0]) @ state)
        state = state * chunk_decay + kv[:, :, c]
    out = inner + torch.stack(cross, dim=2)
    return out.flatten(-3, -2)[..., :length, :]


class Retention(nn.Module):
    """Multi-scale retention with per-head GroupNorm. Options: ``chunk`` (64), ``rotary`` (True)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.chunk = int(config.option("chunk", 64))
        if self.chunk < 1:
            raise ValueError(f"retention: chunk must be >= 1, got {self.chunk}; pass options={{'chunk': 64}}")
        self.rotary = bool(config.option("rotary", True))
        heads, dim = config.num_heads, config.head_dim
        self.register_buffer("log_gamma", retention_decays(heads).log().float(), persistent=False)
        half = dim // 2
        angle = 1.0 / 10000 ** torch.linspace(0, 1, half) if half else torch.zeros(0)
        self.register_buffer("angle", angle, persistent=False)
        self.norm_weight = nn.Parameter(torch.ones(heads, dim))
        self.norm_bias = nn.Parameter(torch.zeros(heads, dim))
        self.eps = 1e-5

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate pairs (x[d], x[d + D/2]) by ``position · angle[d]``: RetNet's Θ, e^(inθ)."""
        half = self.angle.shape[0]
        if not self.rotary or half == 0:
            return x
        theta = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)[:, None] * self.angle
        return rotate_pairs(x, theta.cos().to(x.dtype), theta.sin().to(x.dtype))

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor:
        if need_weights:
            raise NotImplementedError("retention has no attention weights (its spec says weights=False)")
        if q.shape[-2] != k.shape[-2]:
            raise ValueError(
                f"retention is self-attention only (cross=False): query length {q.shape[-2]} "
                f"!= key length {k.shape[-2]}; its decay γ^(n−m) needs one position axis"
            )
        if q.shape[1] != self.log_gamma.shape[0]:
            raise ValueError(
                f"retention was built for {self.log_gamma.shape[0]} heads (one decay each), got "
                f"{q.shape[1]} heads; build it with AttentionConfig(num_heads={q.shape[1]})"
            )
        q = self.rotate(q) * q.shape[-1] ** -0.5
        k = self.rotate(k)
        keep = key_padding(attn_mask)
        if keep is not None:
            drop = ~keep[:, None, :, None]
            k, v = k.masked_fill(drop, 0), v.masked_fill(drop, 0)
        out = causal_retention(q, k, v, self.log_gamma, self.chunk)
        if not is_causal:
            # γ^|n−m| = the causal sum + the same sum run backwards − the m = n term counted twice.
            back = causal_retention(q.flip(-2), k.flip(-2), v.flip(-2), self.log_gamma, self.chunk).flip(-2)
            out = out + back - (q * k).sum(-1, keepdim=True) * v
        return self._group_norm(out)

    def _group_norm(self, out: torch.Tensor) -> torch.Tensor:
        """GroupNorm over each head's D channels, position by position, with the learned affine."""
        mean = out.mean(-1, keepdim=True)
        var = out.var(-1, unbiased=False, keepdim=True)
        out = (out - mean) * torch.rsqrt(var + self.eps)
        return out * self.norm_weight[:, None, :] + self.norm_bias[:, None, :]

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """The recurrent state S = Σ_m γ^(n−m) k_mᵀ v_m, (B, H, D, D), zero; positions for Θ come with it."""
        h, d = self.norm_weight.shape
        return RecurrentState(tensors={"s": torch.zeros(batch_size, h, d, d, device=device, dtype=dtype)})

    def state_nbytes(self, state):
        """Bytes of S: constant in the context."""
        return state["s"].numel() * state["s"].element_size()

    def step(self, q, k, v, state):
        """The chunkwise form with S carried in: ``o_n = (q_n ⊙ γ^(i+1)) S + Σ_{m≤n in the piece} γ^(n−m)
        (q_n·k_m) v_m`` per piece of ``chunk`` positions, then ``S ← γ^C S + Σ γ^(C−1−j) k_jᵀ v_j``."""
        start_pos, t = state.position, q.shape[-2]
        if self.rotary and self.angle.shape[0]:
            positions = torch.arange(start_pos, start_pos + t, device=q.device, dtype=torch.float32)
            theta = positions[:, None] * self.angle
            cos, sin = theta.cos().to(q.dtype), theta.sin().to(q.dtype)
            q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
        q = q * q.shape[-1] ** -0.5
        lg = self.log_gamma.to(q.dtype)[:, None]  # (H, 1)
        s = state["s"]
        outs = []
        for start in range(0, t, self.chunk):
            part = slice(start, start + self.chunk)
            qc, kc, vc = q[..., part, :], k[..., part, :], v[..., part, :]
            c = qc.shape[-2]
            pos = torch.arange(c, device=q.device, dtype=q.dtype)
            rel = pos[:, None] - pos[None, :]
            inner_decay = torch.exp((rel * lg[..., None]).clamp(max=0)) * (rel >= 0)  # (H, C, C)
            inner = ((qc @ kc.transpose(-2, -1)) * inner_decay) @ vc
            cross = (qc * torch.exp((pos + 1) * lg)[:, :, None]) @ s
            outs.append(inner + cross)
            k_decay = torch.exp((c - 1 - pos) * lg)[:, :, None]
            s = s * torch.exp(c * lg)[..., None] + (kc * k_decay).transpose(-2, -1) @ vc
        out = self._group_norm(torch.cat(outs, dim=-2))
        return out, RecurrentState(tensors={"s": s}, position=start_pos + t)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="retention",
        build=Retention,
        summary="RetNet multi-scale retention: per-head decay γ^(n−m), no softmax, chunkwise recurrent",
        complexity="O(L)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        tolerance=None,  # a different operator (decayed, unnormalised), not an approximation of softmax
        citation="Sun et al. 2023, Retentive Network (arXiv:2307.08621); bidirectional: Fan et al. 2024, RMT",
        options={"chunk": 64, "rotary": True},
        incremental=True,
    ))
