"""Multi-head attention that takes any registered variant.

Projections, heads and the output projection belong here; the variant only maps
(q, k, v) of shape (B, H, L, D) to the output, so one variant plugs into every model.
Grouped-query variants (spec ``kv_heads``) get k, v with fewer heads, (B, H_kv, L, D).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnbench.errors import AttentionShapeError, PluginError
from attnbench.specs import AttentionConfig, AttentionSpec


@dataclasses.dataclass(frozen=True)
class DecodingState:
    """A variant's decoding state as :meth:`CheckedAttention.step` hands it around.

    ``inner`` is what the variant's own ``init_state``/``step`` return; ``batch_size`` and
    ``position`` (how many positions were stepped so far) let the wrapper check each call.
    """

    batch_size: int
    position: int
    inner: Any

    def select_batch(self, index: torch.Tensor) -> DecodingState:
        """This state for the sequences ``index`` only (see ``attnbench.nn.kv_cache.select_batch``)."""
        from attnbench.nn.kv_cache import select_batch

        if index.dtype == torch.bool:
            index = index.nonzero().view(-1)
        return dataclasses.replace(self, batch_size=int(index.numel()), inner=select_batch(self.inner, index))


class CheckedAttention(nn.Module):
    """A variant's module, with its output checked against the forward contract."""

    def __init__(self, spec: AttentionSpec, config: AttentionConfig) -> None:
        super().__init__()
        if spec.needs_max_len and not config.max_len:
            raise PluginError(
                f"attention {spec.name!r} needs max_len at build time; "
                "pass AttentionConfig(max_len=...)"
            )
        self.spec = spec
        self.config = config
        self.inner = spec.build(config)
        if not isinstance(self.inner, nn.Module):
            raise PluginError(
                f"attention {spec.name!r}: build(config) returned {type(self.inner).__name__}, "
                "expected a torch.nn.Module"
            )

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._check_capabilities(q, k, attn_mask, is_causal, need_weights)
        result = self.inner(q, k, v, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights)
        out, weights = result if need_weights else (result, None)
        expected = (*q.shape[:-1], v.shape[-1])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise AttentionShapeError(
                f"attention {self.spec.name!r} returned output of shape {got} for q {tuple(q.shape)}, "
                f"k {tuple(k.shape)}, v {tuple(v.shape)}; expected {expected} (B, H, Lq, D)"
            )
        if need_weights:
            want = (*q.shape[:-1], k.shape[-2])
            if not isinstance(weights, torch.Tensor) or tuple(weights.shape[-2:]) != want[-2:]:
                got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
                raise AttentionShapeError(
                    f"attention {self.spec.name!r} returned weights of shape {got}; expected {want}"
                )
            return out, weights
        return out


    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> DecodingState:
        """An empty decoding state for ``batch_size`` sequences (DESIGN.md, "Incremental decoding")."""
        spec = self.spec
        if not spec.incremental:
            why = spec.not_incremental or "its spec does not say incremental=True"
            raise PluginError(f"attention {spec.name!r} cannot decode incrementally: {why}; "
                              "recompute the causal forward over the whole prefix instead")
        if int(batch_size) < 1:
            raise ValueError(f"init_state: batch_size must be >= 1, got {batch_size}")
        inner = self.inner.init_state(int(batch_size), device=device, dtype=dtype)
        return DecodingState(batch_size=int(batch_size), position=0, inner=inner)

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             state: DecodingState) -> tuple[torch.Tensor, DecodingState]:
        """The outputs (B, H, T, D) of the T newest positions, and the state after them.

        Stepping over consecutive chunks equals ``forward(q, k, v, is_causal=True)`` over the
        whole sequence. q has ``num_heads`` heads, k and v ``num_kv_heads`` (grouped variants).
        """
        if not isinstance(state, DecodingState):
            raise TypeError(f"attention {self.spec.name!r}: step() takes the state from init_state() or the "
                            f"previous step(), got {type(state).__name__}")
        heads = self.config.num_heads
        kv_heads = self.config.num_kv_heads or heads
        dim = self.config.head_dim
        want_q = (state.batch_size, heads, "T", dim)
        want_kv = (state.batch_size, kv_heads, "T", dim)
        shapes = f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        ok = (q.dim() == k.dim() == v.dim() == 4 and q.shape[0] == k.shape[0] == v.shape[0] == state.batch_size
              and q.shape[1] == heads and k.shape[1] == v.shape[1] == kv_heads and q.shape[-1] == k.shape[-1] == dim
              and v.shape[-1] == dim and q.shape[2] == k.shape[2] == v.shape[2] >= 1)
        if not ok:
            raise AttentionShapeError(
                f"attention {self.spec.name!r}: step() expects q {want_q} and k, v {want_kv} (B, H, T, D) with "
                f"the state's batch of {state.batch_size} and one T >= 1; {shapes}".replace("'T'", "T")
            )
        out, inner = self.inner.step(q, k, v, state.inner)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(q.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise AttentionShapeError(f"attention {self.spec.name!r}: step() returned output of shape {got}, "
                                      f"expected {tuple(q.shape)} (B, H, T, D)")
        return out, DecodingState(batch_size=state.batch_size, position=state.position + q.shape[2], inner=inner)

    def state_nbytes(self, state: DecodingState) -> int:
        """Bytes the variant's state holds (a KV cache grows with the context, a window is bounded,
        a recurrent state is constant)."""
        return int(self.inner.state_nbytes(state.inner))

    def _check_capabilities(self, q, k, attn_mask, is_causal, need_weights) -> None:
        """Refuse a call the spec does not declare it can serve, rather than risk a wrong answer."""
        spec, lacking = self.spec, []
        if need_weights and not spec.weights:
            lacking.append("weights (need_weights=True)")
        if is_causal and not spec.causal:
            lacking.append("causal (is_causal=True)")
        if q.shape[-2] != k.shape[-2] and not spec.cross:
            lacking.append(f"cross (query length {q.shape[-2]} != key length {k.shape[-2]})")
        if attn_mask is not None:
            padding_shaped = attn_mask.dim() == 4 and attn_mask.shape[1] == 1 and attn_mask.shape[2] == 1
            if not spec.arbitrary_mask and not (spec.padding_mask and padding_shaped):
                kind = "a (B, 1, 1, Lk) padding mask" if padding_shaped else f"a mask of shape {tuple(attn_mask.shape)}"
                lacking.append(f"{'padding_mask' if padding_shaped else 'arbitrary_mask'} ({kind})")
        if lacking:
            raise PluginError(
                f"attention {spec.name!r} was called with what its spec does not support: {'; '.join(lacking)}. "
                "Pick a variant that declares it (attnbench list attention)"
            )


def build_attention(spec: AttentionSpec, config: AttentionConfig) -> CheckedAttention:
    """Build ``spec``'s module for ``config``, wrapped so contract breaches name the variant."""
    return CheckedAttention(spec, config)


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``-style layer whose core is an attention variant.

    Masks use True = may attend. ``key_padding_mask`` (B, Lk) is passed to the variant as
    (B, 1, 1, Lk); a full ``attn_mask`` only to variants that declare ``arbitrary_mask``;
    causality as ``is_causal=True``, never as a materialised triangle.

    Keys and values get ``num_heads`` heads, except for a grouped-query variant (its spec
    sets ``kv_heads``): then they are projected to ``spec.kv_heads(config)`` heads only
    (fewer parameters, a smaller k/v), and the variant receives k, v of shape
    (B, H_kv, Lk, D) with ``config.num_kv_heads`` saying so.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        attention: AttentionSpec,
        *,
        max_len: int | None = None,
        causal: bool = False,
        cross: bool = False,
        dropout: float = 0.0,
        kdim: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.spec = attention
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.causal = causal
        kdim = kdim or embed_dim
        config = AttentionConfig(
            num_heads=num_heads, head_dim=self.head_dim, max_len=max_len, causal=causal,
            cross=cross, dropout=dropout, options=dict(options or {}),
        )
        if attention.kv_heads is not None:
            # AttentionConfig checks that the count divides num_heads, naming the value.
            config = dataclasses.replace(config, num_kv_heads=int(attention.kv_heads(config)))
        self.num_kv_heads = config.num_kv_heads or num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(kdim, self.num_kv_heads * self.head_dim)
        self.v_proj = nn.Linear(kdim, self.num_kv_heads * self.head_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.attention = build_attention(attention, config)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> DecodingState:
        """An empty decoding state for causal self-attention over ``batch_size`` sequences."""
        if not self.causal:
            raise PluginError("MultiheadAttention.init_state: only causal self-attention decodes step by step; "
                              "build the layer with causal=True")
        return self.attention.init_state(batch_size, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, state: DecodingState) -> tuple[torch.Tensor, DecodingState]:
        """Causal self-attention output (B, T, E) of the T newest positions ``x`` (B, T, E), given the
        state of the earlier ones; equals the rows of ``forward`` over the whole sequence."""
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(x), self.num_kv_heads)
        v = self._heads(self.v_proj(x), self.num_kv_heads)
        out, state = self.attention.step(q, k, v, state)
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)), state

    def project_memory(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, H_kv, Lk, D) of a cross-attention's ``context``, to reuse at every decoding step."""
        return self._heads(self.k_proj(context), self.num_kv_heads), self._heads(self.v_proj(context), self.num_kv_heads)

    def attend_memory(self, x: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor], position: int, *,
                      key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-attention (B, T, E) of the queries ``x`` (B, T, E) at positions ``position …`` to keys and
        values from :meth:`project_memory`.

        A variant that is not ``exact`` may depend on a query's index (rope, alibi, relative
        rotate or bias by position), so the queries are placed at their own positions behind
        ``position`` zero queries; the zero rows are dropped. Queries of a cross-attention do not
        interact in any built-in variant, so the kept rows equal those of the full forward.
        """
        q = self._heads(self.q_proj(x))
        if position and not self.spec.exact:
            q = torch.cat((q.new_zeros(*q.shape[:2], position, q.shape[-1]), q), dim=-2)
        mask = None if key_padding_mask is None else key_padding_mask.to(torch.bool)[:, None, None, :]
        out = self.attention(q, memory[0], memory[1], attn_mask=mask)[..., -x.shape[1]:, :]
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))

    def _heads(self, x: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        b, length, _ = x.shape
        return x.view(b, length, heads or self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``x`` (B, Lq, E) to ``context`` (B, Lk, E), or to ``x`` itself.

        Returns ``(out, weights)``; weights are None unless ``need_weights``.
        """
        context = x if context is None else context
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(context), self.num_kv_heads)
        v = self._heads(self.v_proj(context), self.num_kv_heads)
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask.to(torch.bool)[:, None, None, :]
        if attn_mask is not None:
            if not self.spec.arbitrary_mask:
                raise PluginError(
                    f"attention {self.spec.name!r} does not accept a full (Lq, Lk) mask; "
                    "use key_padding_mask or is_causal, or pick a variant with arbitrary_mask"
                )
            full = attn_mask.to(torch.bool)
            full = full[:, None] if full.dim() == 3 else full
            mask = full if mask is None else mask & full
        result = self.attention(q, k, v, attn_mask=mask, is_causal=self.causal, need_weights=need_weights)
        out, weights = result if need_weights else (result, None)
        b, _, lq, _ = out.shape
        out = out.transpose(1, 2).reshape(b, lq, self.num_heads * self.head_dim)
        return self.out_proj(out), weights
