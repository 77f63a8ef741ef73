"""CUDA paths no CPU run reaches: every variant on the GPU against itself on the CPU, the fused SDPA kernels,
the allocator's memory column. Skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them (``-m cuda``).
"""

from __future__ import annotations

import copy

import pytest
import torch

from attnbench import AttentionConfig, memory, plugins
from attnbench.nn.attention import build_attention

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these)"),
]

CUDA = torch.device("cuda")
B, H, L, D = 2, 4, 64, 16


@pytest.fixture(autouse=True)
def _exact_float32():
    """TF32 would make CUDA float32 matmuls differ from the CPU's by ~1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _qkv(device, grad=False):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, H, L, D, generator=g).to(device).requires_grad_(grad) for _ in range(3)]


@pytest.mark.parametrize("causal", [False, True])
def test_every_variant_on_cuda_matches_itself_on_cpu(causal):
    failures = []
    for name in plugins.load().attention.names():
        spec = plugins.get_attention(name)
        if (callable(spec.available) and spec.available(CUDA)) or (causal and not spec.causal):
            continue
        torch.manual_seed(0)
        cpu = build_attention(spec, AttentionConfig(num_heads=H, head_dim=D, max_len=L, causal=causal)).eval()
        gpu = copy.deepcopy(cpu).to(CUDA)
        outs, grads = [], []
        for module, device in ((cpu, torch.device("cpu")), (gpu, CUDA)):
            q, k, v = _qkv(device, grad=True)
            out = module(q, k, v, is_causal=causal)
            out.square().sum().backward()
            outs.append(out.detach().cpu())
            grads.append([torch.zeros(1) if t.grad is None else t.grad.cpu() for t in (q, k, v)])  # s4d ignores q, k
        diff = (outs[0] - outs[1]).abs().max().item()
        gdiff = max((a - b).abs().max().item() for a, b in zip(*grads, strict=True))
        if not diff < 1e-4 or not gdiff < 1e-3:
            failures.append(f"{name}: output {diff:.2g}, gradient {gdiff:.2g}")
    assert not failures, "CUDA differs from CPU: " + "; ".join(failures)


@pytest.mark.parametrize("name", ["sdpa-flash", "sdpa-efficient"])
def test_fused_sdpa_backends_agree_with_math_in_half_precision(name):
    config = AttentionConfig(num_heads=H, head_dim=64, max_len=512)
    fused = build_attention(plugins.get_attention(name), config).to(CUDA)
    exact = build_attention(plugins.get_attention("sdpa-math"), config).to(CUDA)
    q, k, v = (torch.randn(B, H, 512, 64, device=CUDA, dtype=torch.bfloat16) for _ in range(3))
    with torch.no_grad():
        diff = (fused(q, k, v).float() - exact(q.float(), k.float(), v.float())).abs().max().item()
    assert diff < 2e-2, f"{name} differs from the math backend by {diff:.3g} in bfloat16"


@pytest.mark.parametrize("name", ["alibi", "relative"])
def test_offset_bias_stays_on_a_fused_cuda_kernel(name):
    module = build_attention(plugins.get_attention(name), AttentionConfig(num_heads=H, head_dim=64, max_len=256))
    module = module.to(CUDA).eval()
    q, k, v = (torch.randn(1, H, 256, 64, device=CUDA, dtype=torch.float16) for _ in range(3))
    with torch.no_grad(), torch.profiler.profile() as prof:
        module.half()(q, k, v)
    kernels = {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}
    assert "aten::_scaled_dot_product_attention_math" not in kernels, kernels
    assert any("efficient" in k or "flash" in k or "cudnn" in k for k in kernels), kernels


def test_allocator_memory_column_sees_the_attention():
    module = build_attention(plugins.get_attention("sdpa-math"), AttentionConfig(num_heads=H, head_dim=64, max_len=2048))
    q, k, v = (torch.randn(1, H, 2048, 64, device=CUDA) for _ in range(3))
    with torch.no_grad():
        peak = memory.peak_tensor_mb(lambda: module(q, k, v), CUDA)
    scores_mb = H * 2048 * 2048 * 4 / 2**20  # the math backend materialises the (H, L, L) scores
    assert peak is not None and peak >= scores_mb, f"allocator peak {peak} MiB, expected at least {scores_mb:.0f} MiB"
