"""FLOP counting shared by the runner's meter and ``attnbench bench``.

``torch.utils.flop_counter.FlopCounterMode`` counts matrix products (mm, bmm, conv, SDPA
kernels). torch registers formulas for the CUDA SDPA kernels only, so ``sdpa`` on CPU,
which dispatches to the CPU flash kernel, would count 0 FLOPs and every ratio to it would
be meaningless. :func:`flop_counter` registers that kernel with the count torch uses for
its CUDA kernels (two batched matrix products) before returning a counter.

FlexAttention's higher-order ops cannot run under the counter's dispatch mode. Its backward
is run and counted by the counter (four matrix products); its forward is run outside the
mode by attnbench.flex's module, which counts it with :func:`add_flops`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode, flop_registry, register_flop_formula


@functools.cache
def _register_missing_formulas() -> None:
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_registry:
        return

    @register_flop_formula(op)
    def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        b, h, lq, d = query_shape
        lk, dv = key_shape[-2], value_shape[-1]
        return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv


class _FlexAwareMode(_FlopCounterMode):
    """The counter's dispatch mode, which also runs FlexAttention's backward higher-order op (torch's
    returns NotImplemented for it) and counts its four matrix products, twice the forward's."""

    def _handle_higher_order_ops(self, func, types, args, kwargs):
        if getattr(func, "_name", None) != "flex_attention_backward":
            return super()._handle_higher_order_ops(func, types, args, kwargs)
        out = func(*args, **kwargs)
        q, k, v = args[:3]
        add_flops(self.counter, "flex_attention_backward",
                  4 * q.shape[0] * q.shape[1] * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1]))
        return out


class _Counter(FlopCounterMode):
    def __enter__(self):
        super().__enter__()
        self.mode.__exit__(None, None, None)
        self.mode = _FlexAwareMode(self)
        self.mode.__enter__()
        return self


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that also knows the CPU flash-attention kernel and FlexAttention's
    backward (its forward is counted by attnbench.flex's module: :func:`active_flop_counter`)."""
    _register_missing_formulas()
    return _Counter(display=False)


def active_flop_counter() -> FlopCounterMode | None:
    """The FlopCounterMode counting the current call, if any (None while torch.compile traces).

    For modules whose op the counter cannot dispatch — FlexAttention's higher-order op raises
    ``TypeError: no implementation found`` under it — so they can run it in
    :func:`outside_flop_counter` and add its FLOPs with :func:`add_flops`.
    """
    if torch.compiler.is_compiling():
        return None
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    for mode in reversed(_get_current_dispatch_mode_stack()):
        counter = getattr(mode, "counter", None)
        if isinstance(counter, FlopCounterMode):
            return counter
    return None


@contextmanager
def outside_flop_counter() -> Iterator[None]:
    """Run the block with the dispatch modes (the FLOP counter's among them) set aside."""
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes():
        yield


def add_flops(counter: FlopCounterMode, key: object, flops: int) -> None:
    """Count ``flops`` under ``key`` as the counter counts an op: globally and for each enclosing module."""
    parents = getattr(getattr(counter, "mod_tracker", None), "parents", None) or {"Global"}
    for parent in set(parents):
        counter.flop_counts[parent][key] += int(flops)
