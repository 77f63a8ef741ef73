"""The frame shared by the linear-recurrence variants (GLA, DeltaNet, Gated DeltaNet, Mamba-2).

Each of them is a causal recurrence over a (K, V) state whose gates are computed from the
keys. What they share lives here, once:

* the forward contract: self-attention only (the recurrence needs one position axis), no
  weights, a key-padding mask honoured by making a padded position a no-op (zero key and
  value, neutral gates), so changing a padded key changes nothing;
* the non-causal form: the causal scan left to right plus the same scan right to left
  (:func:`attnbench.nn.chunked_scan.bidirectional`);
* the incremental-decoding contract of DESIGN.md (``init_state``, ``step``, ``state_nbytes``):
  the state is the (B, H, K, V) matrix, constant in the context length, and a step of T
  positions is the same scan started from it.

A subclass writes :meth:`prepare` (its gates, from q, k, v) and :meth:`scan` (which
recurrence), and optionally :meth:`finish` (a skip term); the output is normalised per head
(:class:`attnbench.nn.head_norm.HeadwiseRMSNorm`) as these layers do. What the frame decides
about the spec is :data:`RECURRENT_SPEC`, which each one's ``AttentionSpec`` takes as it is.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from attnbench.nn.chunked_scan import bidirectional
from attnbench.nn.head_norm import HeadwiseRMSNorm
from attnbench.nn.masks import key_padding
from attnbench.specs import AttentionConfig

#: The ``AttentionSpec`` fields this frame decides for every subclass (``AttentionSpec(name=…, build=…,
#: summary=…, citation=…, options=…, **RECURRENT_SPEC)``): O(L) time and a constant (K, V) state; a
#: recurrence, neither exact softmax nor an approximation of it (no tolerance claimed); causal, and
#: bidirectional as two scans; key padding honoured; self-attention only; no weights; incremental decoding.
RECURRENT_SPEC = MappingProxyType({
    "complexity": "O(L)", "exact": False, "causal": True, "padding_mask": True, "cross": False, "weights": False,
    "tolerance": None, "incremental": True,
})


class RecurrentAttention(nn.Module):
    """Base of the gated linear-recurrence variants; see the module docstring."""

    #: The variant's name, for error messages.
    variant = "recurrent"

    def __init__(self, config: AttentionConfig, *, default_chunk: int) -> None:
        super().__init__()
        self.heads, self.head_dim = config.num_heads, config.head_dim
        self.chunk = int(config.option("chunk", default_chunk))
        if self.chunk < 1:
            raise ValueError(f"{self.variant}: chunk must be >= 1, got {self.chunk}; pass options={{'chunk': {default_chunk}}}")
        self.norm = HeadwiseRMSNorm(self.heads, self.head_dim)

    # -- what a subclass writes -------------------------------------------------------------
    def prepare(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                keep: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The scan's inputs (sequence on dim 2), gates computed; ``keep`` (B, L) or None marks
        positions to turn into no-ops."""
        raise NotImplementedError

    def scan(self, *seqs: torch.Tensor, initial_state: torch.Tensor | None = None,
             recurrent: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the recurrence over ``seqs`` (chunked, or step by step with ``recurrent``)."""
        raise NotImplementedError

    def finish(self, out: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The per-head output normalisation (a subclass may add a skip term first)."""
        return self.norm(out)

    # -- the shared contract ----------------------------------------------------------------
    def _check(self, q: torch.Tensor, k: torch.Tensor, need_weights: bool) -> None:
        if need_weights:
            raise NotImplementedError(f"{self.variant} has no attention weights (its spec says weights=False)")
        if q.shape[-2] != k.shape[-2]:
            raise ValueError(
                f"{self.variant} is self-attention only (cross=False): query length {q.shape[-2]} "
                f"!= key length {k.shape[-2]}; its recurrence needs one position axis"
            )
        if q.shape[1] != self.heads or q.shape[-1] != self.head_dim:
            raise ValueError(
                f"{self.variant} was built for {self.heads} heads of {self.head_dim} channels, got "
                f"{q.shape[1]} of {q.shape[-1]}; build it with AttentionConfig(num_heads={q.shape[1]}, "
                f"head_dim={q.shape[-1]})"
            )

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False, need_weights: bool = False) -> torch.Tensor:
        self._check(q, k, need_weights)
        keep = key_padding(attn_mask)
        if keep is not None:  # a padded value reaches neither the state nor a skip term
            v = v.masked_fill(~keep[:, None, :, None], 0)
        seqs = self.prepare(q, k, v, keep)
        if is_causal:
            out, _ = self.scan(*seqs)
        else:
            out = bidirectional(self.scan, *seqs)
        return self.finish(out, v)

    def reference(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The causal forward by the step-by-step recurrence: what the chunked form must equal."""
        out, _ = self.scan(*self.prepare(q, k, v, None), recurrent=True)
        return self.finish(out, v)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        """An empty (B, H, K, V) state: the start of a sequence."""
        return {"S": torch.zeros(batch_size, self.heads, self.state_dims[0], self.state_dims[1],
                                 device=device, dtype=dtype)}

    @property
    def state_dims(self) -> tuple[int, int]:
        """The (K, V) shape of one head's state."""
        return self.head_dim, self.head_dim

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The outputs of the T newest positions, continuing from ``state``."""
        self._check(q, k, False)
        seqs = self.prepare(q, k, v, None)
        out, final = self.scan(*seqs, initial_state=state["S"], recurrent=q.shape[-2] == 1)
        return self.finish(out, v), {"S": final}

    def state_nbytes(self, state: dict[str, Any]) -> int:
        """Bytes held: one (K, V) matrix per batch row and head, whatever the context length."""
        s = state["S"]
        return s.numel() * s.element_size()
