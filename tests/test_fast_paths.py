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


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_local_blocks_reach_the_fused_cpu_kernel(causal, padded):
    """local's blocks (overlapping views of the padded keys, a 4-D bool mask) go to the flash kernel, both passes."""
    from attnbench_plugins.attention.local import LocalAttention

    module = LocalAttention(AttentionConfig(num_heads=4, head_dim=16, causal=causal, options={"window": 16}))
    q, k, v = (torch.randn(2, 4, 64, 16, requires_grad=True) for _ in range(3))
    keep = torch.ones(2, 1, 1, 64, dtype=torch.bool)
    keep[0, ..., 40:] = False
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        module(q, k, v, attn_mask=keep if padded else None, is_causal=causal).sum().backward()
    kernels = {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in kernels, kernels
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in kernels, kernels
    assert "aten::_scaled_dot_product_attention_math" not in kernels, kernels
