"""FLOP counting shared by the runner's meter and ``attnbench bench``.

``torch.utils.flop_counter.FlopCounterMode`` counts matrix products (mm, bmm, conv, SDPA
kernels). torch registers formulas for the CUDA SDPA kernels only, so ``sdpa`` on CPU,
which dispatches to the CPU flash kernel, would count 0 FLOPs and every ratio to it would
be meaningless. :func:`flop_counter` registers that kernel with the count torch uses for
its CUDA kernels (two batched matrix products) before returning a counter.
"""

from __future__ import annotations

import functools

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula


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


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that also knows the CPU flash-attention kernel."""
    _register_missing_formulas()
    return FlopCounterMode(display=False)
