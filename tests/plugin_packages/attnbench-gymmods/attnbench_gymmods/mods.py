"""score_mod factories in attention-gym's style (meta-pytorch/attention-gym, ``attn_gym/mods/``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import _score_mod_signature


def generate_alibi_bias(H: int) -> _score_mod_signature:  # noqa: N803 - attention-gym's parameter name
    """ALiBi's per-head linear distance bias for ``H`` heads (imitates ``attn_gym/mods/alibi.py``)."""

    def alibi_mod(score, b, h, q_idx, kv_idx):
        scale = torch.exp2(-((h + 1) * 8.0 / H))
        bias = (kv_idx - q_idx) * scale
        return score + bias

    return alibi_mod


def generate_mla_rope_score_mod(query_rope: Tensor, key_rope: Tensor, num_heads: int,
                                scale: float = 1.0) -> _score_mod_signature:
    """DeepSeek-V2's decoupled RoPE term, ``score + scale·⟨q_rope, k_rope⟩`` with ``torch.dot``
    of two gathered rows (imitates ``attn_gym/mods/latent_attention.py``; here the rope rows are
    per position, (H, L, d) and (1, L, d), rather than per batch)."""

    def mla_rope_score_mod(score, b, h, q_idx, kv_idx):
        return score + scale * torch.dot(query_rope[h, q_idx], key_rope[h // num_heads, kv_idx])

    return mla_rope_score_mod


def generate_latent_rope(num_heads: int, max_len: int, rope_dim: int = 8, scale: float = 0.5) -> _score_mod_signature:
    """Rotary features for every position up to ``max_len``: query rows per head, one shared key
    row per position (MLA's single rope key head); their dot product depends on q_idx - kv_idx."""
    freqs = 1.0 / 10000 ** (torch.arange(rope_dim // 2) * 2.0 / rope_dim)
    angles = torch.arange(max_len)[:, None] * freqs[None, :]
    features = torch.cat([angles.cos(), angles.sin()], dim=-1) / math.sqrt(rope_dim // 2)
    head_gain = torch.linspace(1.0, 2.0, num_heads)[:, None, None]
    query_rope = head_gain * features[None]
    key_rope = features[None]
    return generate_mla_rope_score_mod(query_rope, key_rope, num_heads, scale)


def generate_graphormer_spatial_bias(spatial_bias: Tensor, distances: Tensor) -> _score_mod_signature:
    """Graphormer's spatial encoding: a learnable scalar per head and shortest-path distance
    (imitates ``attn_gym/mods/graphormer.py``); ``spatial_bias`` (H, buckets) is trained."""

    def graphormer_spatial_bias(score, b, h, q_idx, kv_idx):
        return score + spatial_bias[h, distances[b, q_idx, kv_idx]]

    return graphormer_spatial_bias


#: Distances up to this many hops get their own bucket; farther pairs share the last one.
MAX_DISTANCE = 8


def chain_distances(*, batch_size: int, q_len: int, kv_len: int, device: torch.device) -> Tensor:
    """Shortest-path distances when each sequence is read as a chain graph (token i linked to
    i + 1): |i - j|, bucketed at ``MAX_DISTANCE + 1`` as attention-gym's
    ``shortest_path_distances`` buckets far pairs. A task with real graphs passes its own."""
    i = torch.arange(q_len, device=device)[:, None]
    j = torch.arange(kv_len, device=device)[None, :]
    return (i - j).abs().clamp_max(MAX_DISTANCE + 1).expand(batch_size, q_len, kv_len)


def generate_activation_score_mod(activation: Callable[[Tensor], Tensor] = F.gelu,
                                  offset: float = 1.0) -> _score_mod_signature:
    """Softmax replaced by an activation through the log-space trick (imitates
    ``attn_gym/mods/activation.py``): score -> log(activation(score) + offset); the output needs
    :func:`undo_softmax` with the log-sum-exp."""

    def activation_score_mod(score, b, h, q_idx, kv_idx):
        return torch.log(activation(score) + offset)

    return activation_score_mod


def undo_softmax(out: Tensor, lse: Tensor, v_sum: Tensor, offset: float = 1.0) -> Tensor:
    """activation(S) @ V from the softmax-normalised output (attention-gym's ``undo_softmax``)."""
    ell = lse.exp().unsqueeze(-1)
    return out * ell - offset * v_sum
