"""sinks: sliding-window softmax attention with attention sinks, in O(L·(w + s)).

Xiao, Tian, Chen, Han & Lewis, "Efficient Streaming Language Models with Attention Sinks"
(StreamingLLM), ICLR 2024 (arXiv:2309.17453): the first ``s`` tokens stay visible to every
query beside the window of recent keys, because softmax parks surplus attention on them.
OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card", 2025: a learned per-head sink logit, a
virtual key with no value that takes its share of the softmax denominator.

Per head h and query i, over the visible keys V(i) = window(i) ∪ {j < s}::

    o_i = Σ_{j∈V(i)} e^{q_i·k_j/√D} v_j / (e^{σ_h} + Σ_{j∈V(i)} e^{q_i·k_j/√D})

window(i) is the ``w`` most recent keys (i itself included) when causal, ``|i − j| ≤ ⌊w/2⌋``
otherwise (an extension: the papers are decoders); a key in both sets counts once. σ_h is a
learned scalar per head (0 at start); option ``learned_sink=False`` drops it (StreamingLLM).
Nothing is computed from the input beyond the scores: the sink logit is input-independent in
GPT-OSS too.

Blocked as ``local``: queries in blocks of ~w/2, each block's scores against its neighbouring
key blocks plus the ``s`` sink keys and the sink logit, so the largest tensor is
(L, 1.5·w + s + 1) — time and memory O(L·(w + s)). StreamingLLM's position re-indexing inside
the cache concerns RoPE models; this variant has no positional encoding of its own.
Self-attention only, padding honoured, no weights. Incremental decoding: the sink keys plus a
ring buffer of the window (``attnbench.nn.kv_cache.RingBuffer``) — bounded memory.
Options: ``window`` (64), ``sinks`` (4), ``learned_sink`` (True).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnbench
from attnbench.nn.kv_cache import RingBuffer
from attnbench.nn.masks import key_padding


def _neighbour_blocks(x: torch.Tensor, block: int, left: int, right: int, nblocks: int) -> torch.Tensor:
    """``x`` (…, L, X) padded to ``left + nblocks + right`` blocks: query block n's keys are blocks n … n+left+right."""
    x = F.pad(x, (0, 0, left * block, (nblocks + right) * block - x.shape[-2]))
    return x.unflatten(-2, (nblocks + left + right, block))


class SinkAttention(nn.Module):
    """Sliding window + sink tokens + a learned sink logit; see the module docstring."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.window = int(config.option("window", 64))
        self.sinks = int(config.option("sinks", 4))
        if self.window < 1 or self.sinks < 0:
            raise ValueError(
                f"sinks: window must be >= 1 and sinks >= 0, got window={self.window}, sinks={self.sinks}; "
                "pass e.g. options={'window': 64, 'sinks': 4}"
            )
        self.heads = config.num_heads
        self.sink_logit = nn.Parameter(torch.zeros(config.num_heads)) if config.option("learned_sink", True) else None
        self.dropout = nn.Dropout(config.dropout)

    def offsets(self, is_causal: bool) -> tuple[int, int]:
        """The key offsets ``[lo, hi]`` (key − query position) of the window."""
        return (-(self.window - 1), 0) if is_causal else (-(self.window // 2), self.window // 2)

    def _extra_logit(self, scores: torch.Tensor) -> torch.Tensor:
        """The sink-logit column, broadcast like ``scores[..., :1]`` (heads on dim 1)."""
        shape = [1] * scores.dim()
        shape[1] = self.heads
        return self.sink_logit.to(scores.dtype).view(shape).expand(*scores.shape[:-1], 1)

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        if need_weights:
            raise NotImplementedError("sinks does not return weights (its spec says weights=False)")
        length = q.shape[-2]
        if k.shape[-2] != length:
            raise ValueError(f"sinks is self-attention only (cross=False): query length {length} != key length {k.shape[-2]}")
        lo, hi = self.offsets(is_causal)
        lo, hi = max(lo, -(length - 1)), min(hi, length - 1)
        block = max(1, (hi - lo + 1) // 2)
        left, right = math.ceil(-lo / block), math.ceil(hi / block)
        nblocks = math.ceil(length / block)
        nwin, s = left + 1 + right, min(self.sinks, length)
        span = nwin * block
        scale = q.shape[-1] ** -0.5
        qb = F.pad(q, (0, 0, 0, nblocks * block - length)).unflatten(-2, (nblocks, block))
        kb = _neighbour_blocks(k, block, left, right, nblocks)
        vb = _neighbour_blocks(v, block, left, right, nblocks)
        scores = [qb @ kb[..., i : i + nblocks, :, :].transpose(-2, -1) for i in range(nwin)]
        scores.append(qb @ k[..., None, :s, :].transpose(-2, -1))  # the sink keys, (B, H, n, block, s)
        scores = torch.cat(scores, dim=-1) * scale

        device = q.device
        qpos = torch.arange(nblocks * block, device=device).view(nblocks, block, 1)
        starts = torch.arange(nblocks, device=device) * block - left * block
        kpos = starts.view(nblocks, 1, 1) + torch.arange(span, device=device)
        rel = kpos - qpos
        in_window = (rel >= lo) & (rel <= hi) & (kpos >= s) & (kpos < length)  # sinks counted once, below
        sink_pos = torch.arange(s, device=device)
        in_sinks = (sink_pos <= qpos) if is_causal else (sink_pos >= 0).expand(nblocks, block, s)
        allowed = torch.cat([in_window, in_sinks.expand(nblocks, block, s)], dim=-1)
        keep = key_padding(attn_mask)
        if keep is not None:
            keep_b = _neighbour_blocks(keep[:, :, None], block, left, right, nblocks)[..., 0]
            keep_b = torch.cat([keep_b[:, i : i + nblocks] for i in range(nwin)]
                               + [keep[:, None, :s].expand(-1, nblocks, s)], dim=-1)
            allowed = allowed & keep_b[:, None, :, None, :]
        else:
            allowed = allowed.expand(1, 1, *allowed.shape)
        scores = scores.masked_fill(~allowed, float("-inf"))
        if self.sink_logit is not None:
            scores = torch.cat([scores, self._extra_logit(scores)], dim=-1)
        # A fully padded row (no sink logit) would be all -inf: the finite fill keeps it NaN-free.
        scores = scores.clamp(min=torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if self.sink_logit is None:
            weights = weights * allowed.any(-1, keepdim=True)
        weights = self.dropout(weights)
        out = weights[..., span : span + s] @ v[..., None, :s, :]
        for i in range(nwin):
            out = out + weights[..., i * block : (i + 1) * block] @ vb[..., i : i + nblocks, :, :]
        return out.flatten(-3, -2)[..., :length, :]

    # -- incremental decoding -------------------------------------------------------------------
    def init_state(self, batch_size, *, device=None, dtype=torch.float32):
        """The sink keys and values (filled by the first ``sinks`` positions) and a window ring buffer."""
        return {"window": RingBuffer.empty(batch_size, self.window, device=device, dtype=dtype),
                "sink_k": torch.zeros(batch_size, 0, 0, 0, device=device, dtype=dtype),
                "sink_v": torch.zeros(batch_size, 0, 0, 0, device=device, dtype=dtype)}

    def state_nbytes(self, state):
        """Bytes of the window's keys and values plus the sink keys and values: bounded."""
        return state["window"].nbytes + sum(t.numel() * t.element_size() for t in (state["sink_k"], state["sink_v"]))

    def step(self, q, k, v, state):
        """Each new query attends the sink keys, the ``window`` most recent keys and the sink logit."""
        ring: RingBuffer = state["window"]
        sink_k, sink_v = state["sink_k"], state["sink_v"]
        outs = []
        piece = max(self.window, 64)  # a prefill goes through in pieces: O(T·(w + s)), not O(T²)
        for start in range(0, q.shape[-2], piece):
            qp, kp, vp = (t[..., start : start + piece, :] for t in (q, k, v))
            first = ring.seen
            if first < self.sinks:  # the first positions become the sinks
                take = min(self.sinks - first, kp.shape[-2])
                if sink_k.shape[1] == 0:
                    sink_k, sink_v = kp[..., :take, :], vp[..., :take, :]
                else:
                    sink_k = torch.cat([sink_k, kp[..., :take, :]], dim=-2)
                    sink_v = torch.cat([sink_v, vp[..., :take, :]], dim=-2)
            keys, values, positions = ring.attend_keys(kp, vp)
            qpos = torch.arange(first, first + qp.shape[-2], device=q.device)[:, None]
            near = (positions >= self.sinks) & (positions <= qpos) & (positions > qpos - self.window)
            sink_pos = torch.arange(sink_k.shape[-2], device=q.device)
            keys = torch.cat([keys, sink_k], dim=-2)
            values = torch.cat([values, sink_v], dim=-2)
            allowed = torch.cat([near, sink_pos <= qpos], dim=-1)
            scores = (qp @ keys.transpose(-2, -1)) * q.shape[-1] ** -0.5
            scores = scores.masked_fill(~allowed, float("-inf"))
            if self.sink_logit is not None:
                scores = torch.cat([scores, self._extra_logit(scores)], dim=-1)
            weights = torch.softmax(scores, dim=-1)
            outs.append(weights[..., : keys.shape[-2]] @ values)
            ring.append(kp, vp)
        return torch.cat(outs, dim=-2), {"window": ring, "sink_k": sink_k, "sink_v": sink_v}


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="sinks",
        build=SinkAttention,
        summary="Sliding window + the first s tokens always visible + a learned per-head sink logit",
        complexity="O(L·w)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        tolerance=None,  # the sink logit takes a share of every row: not an approximation of softmax
        citation="Xiao et al. 2024, StreamingLLM (ICLR, arXiv:2309.17453); OpenAI 2025, gpt-oss model card (sink logits)",
        options={"window": 64, "sinks": 4, "learned_sink": True},
        incremental=True,
    ))
