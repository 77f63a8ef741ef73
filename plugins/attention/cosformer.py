"""cosformer: linear attention with ReLU features and a cos re-weighting that favours nearby tokens.

Qin et al., "cosFormer: Rethinking Softmax in Attention", ICLR 2022.

Scores are ``ReLU(q_i)·ReLU(k_j) · cos(π/2 · (i - j)/M)``, normalised over keys. Since
cos(a - b) = cos a cos b + sin a sin b, each score is a dot product of the 2D-dim features
[ReLU(x) cos(π i/2M), ReLU(x) sin(π i/2M)], so attention is linear in length and never builds
the Lq×Lk matrix. Positions run 1..Lq for queries and 1..Lk for keys with M = max(Lq, Lk), as in
the authors' code, so |i - j|/M < 1 and every re-weight is positive. Causal attention (top-left
aligned, like ``is_causal``) runs chunk by chunk: a C×C masked block inside each chunk plus a
prefix sum of the earlier chunks' key-value states, O(L·C + L·D²/C) memory (option ``chunk_size``,
default 64). Padded keys get zero features, so they add nothing to any sum. There are no attention
weights, so ``dropout`` has nothing to act on and is ignored; this is not a softmax approximation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.masks import key_padding

EPS = 1e-6  # floor on the normaliser, as in the authors' code


def cos_features(x: torch.Tensor, length: int) -> torch.Tensor:
    """[ReLU(x) cos(π i/2M), ReLU(x) sin(π i/2M)] for x (…, L, D) at positions i = 1..L, M = ``length``."""
    positions = torch.arange(1, x.shape[-2] + 1, device=x.device, dtype=torch.float32)
    angle = (math.pi / 2 * positions / length)[:, None]
    relu = F.relu(x)
    return torch.cat((relu * angle.cos().to(x.dtype), relu * angle.sin().to(x.dtype)), dim=-1)


def linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Σ_j (φq_i·φk_j) v_j / Σ_j φq_i·φk_j over all keys, via (φKᵀV) and Σφk: O(L·F·D)."""
    kv = phi_k.transpose(-2, -1) @ v  # (B, H, F, D)
    normaliser = phi_q @ phi_k.sum(-2).unsqueeze(-1)  # (B, H, Lq, 1)
    return (phi_q @ kv) / normaliser.clamp_min(EPS)


def causal_linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """Σ_{j<=i} (φq_i·φk_j) v_j / Σ_{j<=i} φq_i·φk_j, chunk by chunk (query i attends keys 0..i).

    Lq and Lk may differ: both are zero-padded to a common multiple of ``chunk``; zero key
    features add nothing and padded queries are dropped.
    """
    lq = phi_q.shape[-2]
    length = max(lq, phi_k.shape[-2])
    padded = -(-length // chunk) * chunk
    phi_q, phi_k, v = (F.pad(t, (0, 0, 0, padded - t.shape[-2])) for t in (phi_q, phi_k, v))
    *batch, _, features = phi_q.shape
    n = padded // chunk
    q = phi_q.reshape(*batch, n, chunk, features)
    k = phi_k.reshape(*batch, n, chunk, features)
    v = v.reshape(*batch, n, chunk, v.shape[-1])
    # State from the chunks strictly before each chunk: an exclusive prefix sum over chunks.
    kv = k.transpose(-2, -1) @ v  # (B, H, n, F, D)
    kv_before = torch.cat((torch.zeros_like(kv[..., :1, :, :]), kv[..., :-1, :, :].cumsum(-3)), dim=-3)
    z = k.sum(-2)  # (B, H, n, F)
    z_before = torch.cat((torch.zeros_like(z[..., :1, :]), z[..., :-1, :].cumsum(-2)), dim=-2)
    # Inside a chunk: the causal C×C block, written out.
    tri = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    scores = (q @ k.transpose(-2, -1)).masked_fill(~tri, 0.0)  # (B, H, n, C, C)
    numerator = q @ kv_before + scores @ v
    normaliser = (q @ z_before.unsqueeze(-1)).squeeze(-1) + scores.sum(-1)
    out = numerator / normaliser.clamp_min(EPS).unsqueeze(-1)
    return out.reshape(*batch, padded, -1)[..., :lq, :]


class CosFormerAttention(nn.Module):
    """cosFormer attention: ReLU features with cos re-weighting, linear in sequence length."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.chunk = int(config.option("chunk_size", 64))
        if self.chunk < 1:
            raise ValueError(f"cosformer: chunk_size must be positive, got {self.chunk}")

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
            raise NotImplementedError("cosformer never forms attention weights (its spec says weights=False)")
        length = max(q.shape[-2], k.shape[-2])
        phi_q, phi_k = cos_features(q, length), cos_features(k, length)
        padding = key_padding(attn_mask)
        if padding is not None:
            phi_k = phi_k * padding[:, None, :, None].to(phi_k.dtype)
        if is_causal:
            return causal_linear_attention(phi_q, phi_k, v, self.chunk)
        return linear_attention(phi_q, phi_k, v)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="cosformer",
        build=CosFormerAttention,
        summary="cosFormer: ReLU linear attention with cos(π/2·(i-j)/M) re-weighting, never builds L×L",
        complexity="O(L)",
        exact=False,
        causal=True,
        padding_mask=True,
        arbitrary_mask=False,
        cross=True,
        weights=False,
        not_incremental="the re-weighting cos(π/2·(i−j)/M) divides by M, the whole sequence's length, which a "
        "decoder does not know while it decodes",
        citation="Qin et al. 2022, cosFormer: Rethinking Softmax in Attention (ICLR)",
        options={"chunk_size": 64},
    ))
