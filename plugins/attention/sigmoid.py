"""sigmoid: attention whose weights are element-wise sigmoids of the logits, not a softmax.

``out = sigmoid(q kᵀ / √D + b) v`` with a scalar bias ``b``, by default ``b = −log(Lk)``
(Lk the number of keys, padded ones included): the paper shows that without it the weights
start near 1/2 each, the output's norm grows with the length and training is unstable, and
that b = −log(n) makes early training match softmax attention. Each weight depends on its own
logit only, so no row normalisation couples the keys; a masked (query, key) pair gets weight 0
and so contributes nothing. Weights do not sum to 1; ``need_weights`` returns them as they are.

Time and memory O(L²·D): the (Lq, Lk) weights are formed with plain matmuls. There is no
fused SDPA path (SDPA computes a softmax), and FlashSigmoid, the paper's kernel, is GPU-only.
Not an approximation of softmax attention: no tolerance is claimed.

Options: ``bias`` — the scalar b; null (the default) means −log(Lk).

Ramapuram et al., "Theory, Analysis, and Best Practices for Sigmoid Self-Attention",
arXiv:2409.04431, 2024 (ICLR 2025).
"""

from __future__ import annotations

import math

import torch
from torch import nn

import attnbench
from attnbench.nn.masks import dense_mask


class SigmoidAttention(nn.Module):
    """``sigmoid(q kᵀ/√D + b) v``, masked weights set to 0. Options: ``bias`` (None = −log Lk)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        bias = config.option("bias", None)
        if bias is not None and (isinstance(bias, bool) or not isinstance(bias, (int, float))):
            raise ValueError(
                f"sigmoid attention: bias must be a number or null (= -log(Lk)), got {bias!r}; "
                "e.g. --variant-option sigmoid.bias=-4.0"
            )
        self.bias = None if bias is None else float(bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        lq, lk = q.shape[-2], k.shape[-2]
        bias = -math.log(lk) if self.bias is None else self.bias
        weights = torch.sigmoid((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]) + bias)
        mask = dense_mask(attn_mask, is_causal, lq, lk, q.device)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        out = self.dropout(weights) @ v
        return (out, weights) if need_weights else out


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="sigmoid",
        build=SigmoidAttention,
        summary="Sigmoid attention: sigmoid(q kᵀ/√D − log Lk) v, no row normalisation",
        complexity="O(L^2)",
        exact=False,
        causal=True,
        padding_mask=True,
        arbitrary_mask=True,
        cross=True,
        weights=True,
        tolerance=None,  # a different similarity, not an approximation of softmax
        citation="Ramapuram et al. 2024, Theory, Analysis, and Best Practices for Sigmoid Self-Attention "
        "(arXiv:2409.04431)",
        options={"bias": None},
        not_incremental="its default bias −log(Lk) takes Lk from the whole sequence, so every past output "
        "changes as the sequence grows",
    ))
