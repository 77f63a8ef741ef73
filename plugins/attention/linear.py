"""linear: kernelised linear attention with the feature map φ(x) = elu(x) + 1.

``out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / φ(q_i)ᵀ Σ_j φ(k_j)``. Non-causal: the sums are one
(D, D) matrix and one D-vector, O(L·D²). Causal: the sums become prefix sums, taken per
chunk of C positions — one (D, D) state per chunk, plus a masked (C, C) product inside each
chunk — so memory is O(L·D²/C + L·C), never (L, L) nor (L, D, D). Not an approximation of
softmax: a different similarity, so no tolerance is claimed.

Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with Linear
Attention", ICML 2020.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.kv_cache import RecurrentState
from attnbench.nn.masks import key_padding

#: The paper's guard against an all-zero normaliser (every key masked).
EPS = 1e-6


def align_for_causal(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Pad queries or keys to one length so query i and key i share a position.

    The causal mask is top-left aligned (key j visible to query i iff j ≤ i, as SDPA), so
    padding the shorter side at the end changes nothing: padded keys are masked out by the
    returned ``keep``, padded queries are cut off by the caller.
    """
    lq, lk = q.shape[-2], k.shape[-2]
    length = max(lq, lk)
    if lk < length:
        k, v = F.pad(k, (0, 0, 0, length - lk)), F.pad(v, (0, 0, 0, length - lk))
        if keep is None:
            keep = torch.ones(k.shape[0], lk, dtype=torch.bool, device=k.device)
        keep = F.pad(keep, (0, length - lk))
    if lq < length:
        q = F.pad(q, (0, 0, 0, length - lq))
    return q, k, v, keep


def causal_linear(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """Causal ``Σ_{j≤i} (fq_i·fk_j) v_j / Σ_{j≤i} fq_i·fk_j`` for non-negative features, by chunks.

    ``fq``, ``fk`` (B, H, L, F); ``v`` (B, H, L, D). Each chunk sees the exclusive prefix sum
    of the earlier chunks' (F, D) states plus its own lower-triangular (C, C) block.
    """
    length = fq.shape[-2]
    nchunks = math.ceil(length / chunk)
    pad = (0, 0, 0, nchunks * chunk - length)  # zero features: padded keys add nothing
    if pad[-1]:  # F.pad copies even when it adds nothing: three L-sized copies at a whole number of chunks
        fq, fk, v = (F.pad(t, pad) for t in (fq, fk, v))
    fq, fk, v = (t.unflatten(-2, (nchunks, chunk)) for t in (fq, fk, v))
    chunk_kv = fk.transpose(-2, -1) @ v  # (B, H, n, F, D)
    chunk_z = fk.sum(dim=-2)  # (B, H, n, F)
    # Exclusive prefix over chunks: shift the inclusive cumsum by one chunk.
    prefix_kv = F.pad(chunk_kv.cumsum(dim=-3), (0, 0, 0, 0, 1, 0))[..., :-1, :, :]
    prefix_z = F.pad(chunk_z.cumsum(dim=-2), (0, 0, 1, 0))[..., :-1, :]
    intra = (fq @ fk.transpose(-2, -1)).tril()  # (B, H, n, C, C)
    num = fq @ prefix_kv + intra @ v
    den = fq @ prefix_z[..., None] + intra.sum(dim=-1, keepdim=True)
    return (num / (den + EPS)).flatten(-3, -2)[..., :length, :]


class LinearAttention(nn.Module):
    """elu+1 linear attention. Options: ``chunk`` (causal chunk length, default 64)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.chunk = int(config.option("chunk", 64))
        if self.chunk < 1:
            raise ValueError(f"linear attention: chunk must be >= 1, got {self.chunk}")
        self.num_heads, self.head_dim = config.num_heads, config.head_dim

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
            raise NotImplementedError("linear attention has no weights to return (its spec says weights=False)")
        lq = q.shape[-2]
        keep = key_padding(attn_mask)
        if is_causal:
            q, k, v, keep = align_for_causal(q, k, v, keep)
        fq, fk = F.elu(q) + 1, F.elu(k) + 1
        if keep is not None:  # a masked key contributes to neither sum
            fk = fk * keep[:, None, :, None].to(fk.dtype)
        if is_causal:
            return causal_linear(fq, fk, v, self.chunk)[..., :lq, :]
        kv = fk.transpose(-2, -1) @ v  # (B, H, D, D)
        z = fk.sum(dim=-2)[..., None]  # (B, H, D, 1)
        return (fq @ kv) / (fq @ z + EPS)

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """The recurrent state: Σ φ(k_j) v_jᵀ (B, H, D, D) and Σ φ(k_j) (B, H, D, 1), both zero."""
        h, d = self.num_heads, self.head_dim
        return RecurrentState(tensors={
            "kv": torch.zeros(batch_size, h, d, d, device=device, dtype=dtype),
            "z": torch.zeros(batch_size, h, d, 1, device=device, dtype=dtype),
        })

    def state_nbytes(self, state):
        """Bytes of the two sums: constant in the context."""
        return state["kv"].numel() * state["kv"].element_size() + state["z"].numel() * state["z"].element_size()

    def step(self, q, k, v, state):
        """The chunked causal form with the sums carried in: per piece of ``chunk`` positions, the
        earlier sums plus the piece's own lower-triangular block, as :func:`causal_linear`."""
        fq, fk = F.elu(q) + 1, F.elu(k) + 1
        kv, z = state["kv"], state["z"]
        outs = []
        for start in range(0, q.shape[-2], self.chunk):
            part = slice(start, start + self.chunk)
            fq_c, fk_c, v_c = fq[..., part, :], fk[..., part, :], v[..., part, :]
            intra = (fq_c @ fk_c.transpose(-2, -1)).tril()
            num = fq_c @ kv + intra @ v_c
            den = fq_c @ z + intra.sum(dim=-1, keepdim=True)
            outs.append(num / (den + EPS))
            kv = kv + fk_c.transpose(-2, -1) @ v_c
            z = z + fk_c.sum(dim=-2)[..., None]
        return torch.cat(outs, dim=-2), RecurrentState(tensors={"kv": kv, "z": z}, position=state.position + q.shape[-2])


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="linear",
        build=LinearAttention,
        summary="Linear attention with φ = elu+1: φ(K)ᵀV once, or chunked prefix sums when causal",
        complexity="O(L)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=True,
        weights=False,
        tolerance=None,  # a different similarity, not an approximation of softmax
        citation="Katharopoulos et al. 2020, Transformers are RNNs (ICML)",
        options={"chunk": 64},
        incremental=True,
    ))
