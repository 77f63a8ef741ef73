"""sdpa-math, sdpa-flash, sdpa-efficient: PyTorch SDPA with one backend forced, to compare kernels.

Dao et al., "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness", NeurIPS 2022;
Rabe & Staats, "Self-attention Does Not Need O(n²) Memory", 2021 (the memory-efficient kernel, via xFormers).

Each variant runs ``torch.nn.functional.scaled_dot_product_attention`` inside
``torch.nn.attention.sdpa_kernel(backend)`` in the input's dtype, so a backend that cannot
serve a call raises instead of silently falling back to another kernel. Whether a backend runs
on a device (and for which dtypes, masks and shapes) depends on the build of torch and the GPU,
so ``available(device)`` does not guess: it runs a tiny float32 forward and backward for every
capability the spec declares, under the forced backend, and returns the reason if one fails.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import attnbench
from attnbench.nn.kv_cache import KVCacheDecoding, chunk_causal_mask
from attnbench.nn.masks import dense_mask


@dataclass(frozen=True)
class _Backend:
    """One forced SDPA backend and what it honestly supports on every device where it runs."""

    name: str
    backend: SDPBackend
    masks: bool  # accepts a boolean attn_mask (padding and arbitrary)
    summary: str
    requirement: str  # where the kernel runs, for the reason text when the probe fails
    citation: str


_BACKENDS: tuple[_Backend, ...] = (
    _Backend(
        name="sdpa-math",
        backend=SDPBackend.MATH,
        masks=True,
        summary="torch SDPA forced onto the math backend (unfused reference kernel, any device)",
        requirement="the math backend runs wherever torch does",
        citation="Vaswani et al. 2017, Attention Is All You Need; PyTorch SDPA",
    ),
    _Backend(
        name="sdpa-flash",
        # FlashAttention-2 on CUDA takes no attention mask, so neither does this variant on any
        # device: declaring masks would make the spec true on CPU and false on GPU.
        backend=SDPBackend.FLASH_ATTENTION,
        masks=False,
        summary="torch SDPA forced onto the FlashAttention backend (no masks; causal via is_causal)",
        requirement=(
            "the FlashAttention backend runs on CPU, or on CUDA GPUs of compute capability sm80+ "
            "with fp16/bf16 inputs only (attnbench's models run in float32)"
        ),
        citation="Dao et al. 2022, FlashAttention; Dao 2023, FlashAttention-2",
    ),
    _Backend(
        name="sdpa-efficient",
        backend=SDPBackend.EFFICIENT_ATTENTION,
        masks=True,
        summary="torch SDPA forced onto the memory-efficient backend (xFormers kernel, CUDA only)",
        requirement="the memory-efficient backend runs only on CUDA GPUs",
        citation="Rabe & Staats 2021, Self-attention Does Not Need O(n^2) Memory; xFormers",
    ),
)


class ForcedSDPAttention(KVCacheDecoding, nn.Module):
    """``scaled_dot_product_attention`` restricted to one backend; raises if that backend cannot run."""

    def __init__(self, config: attnbench.AttentionConfig, backend: _Backend) -> None:
        super().__init__()
        self.backend = backend.backend
        self.masks = backend.masks
        self.variant = backend.name
        self.dropout = config.dropout

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
            raise NotImplementedError(f"{self.variant} cannot return attention weights (its spec says weights=False)")
        if attn_mask is not None:
            if not self.masks:
                raise ValueError(f"{self.variant} takes no attention mask (its spec says padding_mask=False)")
            if is_causal:  # SDPA accepts a mask or is_causal, not both
                attn_mask, is_causal = dense_mask(attn_mask, True, q.shape[-2], k.shape[-2], q.device), False
        with sdpa_kernel(self.backend):
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
            )

    def attend_cache(self, q, keys, values):
        """The newest chunk over every cached key, under the forced backend.

        A backend without masks (flash) serves a chunk after earlier positions one query at a
        time: each sees a prefix of the keys, so it needs no mask.
        """
        t, total = q.shape[-2], keys.shape[-2]
        dropout = self.dropout if self.training else 0.0
        with sdpa_kernel(self.backend):
            if t == 1 or (t == total and not self.masks):
                return F.scaled_dot_product_attention(q, keys, values, dropout_p=dropout, is_causal=t > 1)
            if self.masks:
                mask = chunk_causal_mask(t, total, q.device)
                return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=dropout)
            past = total - t
            outs = [F.scaled_dot_product_attention(q[..., i : i + 1, :], keys[..., : past + i + 1, :],
                                                   values[..., : past + i + 1, :], dropout_p=dropout)
                    for i in range(t)]
        return torch.cat(outs, dim=-2)


def _probe(backend: _Backend, device: torch.device) -> None:
    """Run every declared capability once (forward and backward, float32) under the forced backend."""
    g = torch.Generator().manual_seed(0)

    def qkv(lq: int, lk: int) -> tuple[torch.Tensor, ...]:
        shapes = ((2, 2, lq, 16), (2, 2, lk, 16), (2, 2, lk, 16))
        return tuple(torch.randn(s, generator=g).to(device).requires_grad_() for s in shapes)

    calls: list[tuple[tuple[torch.Tensor, ...], dict]] = [
        (qkv(8, 8), {}),
        (qkv(8, 8), {"is_causal": True}),
        (qkv(8, 12), {}),
    ]
    if backend.masks:
        padding = torch.ones(2, 1, 1, 12, dtype=torch.bool, device=device)
        padding[0, ..., 9:] = False
        arbitrary = torch.rand(2, 2, 8, 12, generator=g).to(device) > 0.3
        arbitrary[..., 0] = True  # no fully masked rows
        calls += [(qkv(8, 12), {"attn_mask": padding}), (qkv(8, 12), {"attn_mask": arbitrary})]
    with sdpa_kernel(backend.backend):
        for (q, k, v), kwargs in calls:
            out = F.scaled_dot_product_attention(q, k, v, **kwargs)
            out.sum().backward()
            if not torch.isfinite(out).all():
                raise RuntimeError("the probe's output is not finite")


@functools.cache
def _availability(name: str, device: str) -> str | None:
    backend = next(b for b in _BACKENDS if b.name == name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # torch explains a refused backend in warnings
        try:
            _probe(backend, torch.device(device))
        except Exception as exc:  # any failure means "cannot run here"; say why
            details = "; ".join(dict.fromkeys(str(w.message).strip() for w in caught))
            torch_says = " ".join(str(exc).split())
            return f"{backend.requirement}; on {device} torch says: {torch_says}" + (
                f" ({details})" if details else ""
            )
    return None


def _available(name: str):
    def available(device: torch.device) -> str | None:
        """None when this backend runs float32 SDPA on ``device``, else the reason."""
        return _availability(name, str(torch.device(device)))

    return available


@attnbench.hookimpl
def register_attention(register):
    for backend in _BACKENDS:
        register(attnbench.AttentionSpec(
            name=backend.name,
            build=functools.partial(ForcedSDPAttention, backend=backend),
            summary=backend.summary,
            complexity="O(L^2)",
            exact=True,
            causal=True,
            padding_mask=backend.masks,
            arbitrary_mask=backend.masks,
            cross=True,
            weights=False,
            citation=backend.citation,
            available=_available(backend.name),
            incremental=True,
        ))
