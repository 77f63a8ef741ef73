"""The kernels the peer comparison (benchmarks/peers.py) relies on are the ones actually reached.

alibi and relative hand SDPA their per-offset bias as a strided view; torch's CPU SDPA takes its
fused (flash) kernel only for a 4-D float mask, and falls back to the unfused math path (scores
built, the mask scanned) for a 3-D one. These tests fail if the fused path is lost again.
"""

from __future__ import annotations

import pytest
import torch
from attnbench_plugins.attention.alibi import ALiBiAttention
from attnbench_plugins.attention.relative import RelativeBiasAttention

from attnbench import AttentionConfig


def _sdpa_kernels(module, causal: bool) -> set[str]:
    q, k, v = (torch.randn(1, 4, 64, 16) for _ in range(3))
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        module(q, k, v, is_causal=causal)
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


@pytest.mark.parametrize("build", [ALiBiAttention, RelativeBiasAttention], ids=["alibi", "relative"])
@pytest.mark.parametrize("causal", [False, True])
def test_offset_bias_reaches_the_fused_cpu_kernel(build, causal):
    module = build(AttentionConfig(num_heads=4, head_dim=16, causal=causal)).eval()
    kernels = _sdpa_kernels(module, causal)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in kernels, kernels
    assert "aten::_scaled_dot_product_attention_math" not in kernels, kernels
