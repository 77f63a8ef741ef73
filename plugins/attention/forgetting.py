"""forgetting: the Forgetting Transformer's attention (FoX) — softmax with a data-dependent forget-gate bias.

Lin, Nikishin, He & Courville, "Forgetting Transformer: Softmax Attention with a Forget Gate",
ICLR 2025 (arXiv:2503.02130).

Per head h, a scalar forget gate per position, and its cumulative log ``c_t = Σ_{s≤t} log f_s``::

    f_t = σ(w_h·k_t + b_h)
    o_i = Σ_{j≤i} softmax_j(q_i·k_j/√D + c_i − c_j) v_j          (c_i − c_j = Σ_{j<s≤i} log f_s ≤ 0)

so a key is down-weighted by the product of the forget gates between it and the query
(softmax attention's analogue of a decay; with f ≡ 1 it is plain causal softmax attention).

What is computed from what: the forget-gate logit from the head's own **keys** by a per-head
linear map (``HeadwiseProjection``, D → 1, bias 0); the paper computes it from the layer input
x_t (``f_t = σ(w_fᵀ x_t + b_f)``), of which k_t is a linear function. The paper's "Pro" block
(output gate, QK-norm, key shift) belongs to the model and is left out. The paper's model is a
decoder; ``is_causal=False`` uses the symmetric bias ``−|c_i − c_j|`` (the product of the gates
between the two positions, whichever comes first) — an extension for encoder tasks.

Complexity: O(L²) time; the (L, L) bias goes to fused SDPA as a float mask, so memory is the
(B, H, L, L) bias (O(L²), as flash-linear-attention's naive form; its Triton kernel avoids it).
Self-attention only (the bias needs one position axis), padding honoured (a padded key is
masked out and its gate is 1, so it changes no other bias), no weights. Incremental decoding:
a KV cache plus each cached key's c_j — linear in the context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.gate_projection import HeadwiseProjection
from attnbench.nn.kv_cache import KVCache, softmax_over_cache
from attnbench.nn.masks import key_padding


class ForgettingAttention(nn.Module):
    """FoX attention with forget gates from the keys; see the module docstring."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.heads, self.dropout = config.num_heads, config.dropout
        self.forget_proj = HeadwiseProjection(config.num_heads, config.head_dim, 1)

    def log_forget(self, k: torch.Tensor) -> torch.Tensor:
        """``log f_t = logsigmoid(w_h·k_t + b_h)``, (B, H, L), every entry ≤ 0."""
        return F.logsigmoid(self.forget_proj(k)[..., 0])

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        if need_weights:
            raise NotImplementedError("forgetting does not return weights (its spec says weights=False)")
        length = q.shape[-2]
        if k.shape[-2] != length:
            raise ValueError(
                f"forgetting is self-attention only (cross=False): query length {length} != key length "
                f"{k.shape[-2]}; its forget-gate bias needs one position axis"
            )
        log_f = self.log_forget(k)
        keep = key_padding(attn_mask)
        if keep is not None:
            log_f = log_f.masked_fill(~keep[:, None, :], 0)
        c = log_f.cumsum(-1)
        diff = c[..., :, None] - c[..., None, :]  # c_i − c_j
        if is_causal:
            bias = diff.masked_fill(~torch.ones(length, length, dtype=torch.bool, device=q.device).tril(), float("-inf"))
        else:
            bias = -diff.abs()
        if keep is not None:
            bias = bias.masked_fill(~keep[:, None, None, :], float("-inf"))
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout)

    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """A KV cache, the cumulative log-gates of the cached keys, and the running total."""
        return {"cache": KVCache.empty(batch_size, device=device, dtype=dtype),
                "c": torch.zeros(batch_size, self.heads, 0, device=device, dtype=dtype)}

    def state_nbytes(self, state):
        """Bytes of the cached keys, values and cumulative gates: linear in the context."""
        return state["cache"].nbytes + state["c"].numel() * state["c"].element_size()

    def step(self, q, k, v, state):
        """Bias the newest chunk's scores by ``c_i − c_j`` over every cached key, then softmax."""
        previous = state["c"]
        start = previous[..., -1:] if previous.shape[-1] else previous.new_zeros(*previous.shape[:2], 1)
        c_new = start + self.log_forget(k).cumsum(-1)
        c = torch.cat([previous, c_new], dim=-1)
        keys, values = state["cache"].append(k, v)
        dropout = self.dropout if self.training else 0.0
        out = softmax_over_cache(q, keys, values, bias=c_new[..., :, None] - c[..., None, :], dropout=dropout)
        return out, {"cache": state["cache"], "c": c}


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="forgetting",
        build=ForgettingAttention,
        summary="Forgetting Transformer: softmax with a cumulative forget-gate bias c_i − c_j (gates from the keys)",
        complexity="O(L^2)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        tolerance=None,  # the forget bias changes the scores on purpose
        citation="Lin et al. 2025, Forgetting Transformer: Softmax Attention with a Forget Gate (ICLR, arXiv:2503.02130)",
        incremental=True,
    ))
