"""Behaviour of the efficient variants: each computes what it claims, at the cost it claims.

The conformance kit checks the contract; these tests check the maths (blocked, gathered and
chunked computations equal dense references of the same formula), the approximation trends,
and that no variant materialises an (L, L) tensor or anything that grows faster than L.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from attnbench import AttentionConfig, plugins
from attnbench.errors import PluginError
from attnbench.nn.attention import build_attention


@pytest.fixture(scope="module")
def specs():
    return plugins.load().attention


def build(specs, name: str, heads: int = 2, dim: int = 8, max_len: int = 256, seed: int = 0, **options):
    torch.manual_seed(seed)
    config = AttentionConfig(num_heads=heads, head_dim=dim, max_len=max_len, options=options)
    return build_attention(specs.get(name), config).eval()


def qkv(lq: int, lk: int | None = None, heads: int = 2, dim: int = 8, scale: float = 1.0, seed: int = 1,
        dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    lk = lq if lk is None else lk
    q = torch.randn(2, heads, lq, dim, generator=g, dtype=dtype) * scale
    k = torch.randn(2, heads, lk, dim, generator=g, dtype=dtype) * scale
    v = torch.randn(2, heads, lk, dim, generator=g, dtype=dtype)
    return q, k, v


def padding(lk: int, seed: int = 2) -> torch.Tensor:
    """A (B, Lk) keep-mask with scattered holes and a padded tail; key 0 always kept."""
    keep = torch.rand(2, lk, generator=torch.Generator().manual_seed(seed)) > 0.3
    keep[0, lk - lk // 4 :] = False
    keep[:, 0] = True
    return keep


def dense_softmax(q, k, v, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ/√D) v over ``allowed`` keys; a row with no allowed key gives 0."""
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, -1).nan_to_num(0.0) @ v


def band(length: int, lo: int, hi: int) -> torch.Tensor:
    rel = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    return (rel >= lo) & (rel <= hi)


# --- local ---------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_local_with_window_wider_than_sequence_is_softmax(specs, causal):
    q, k, v = qkv(37)
    keep = padding(37)
    allowed = keep[:, None, None, :] & (band(37, -36, 0) if causal else True)
    out = build(specs, "local", window=10_000)(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    assert (out - dense_softmax(q, k, v, allowed)).abs().max() < 1e-5


@pytest.mark.parametrize("length", [1, 7, 32, 45])
@pytest.mark.parametrize("window", [1, 2, 5, 8, 64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_local_equals_dense_band(specs, length, window, causal, masked):
    q, k, v = qkv(length)
    keep = padding(length) if masked else torch.ones(2, length, dtype=torch.bool)
    lo, hi = (-(window - 1), 0) if causal else (-(window // 2), window // 2)
    expected = dense_softmax(q, k, v, band(length, lo, hi) & keep[:, None, None, :])
    mask = keep[:, None, None, :] if masked else None
    out = build(specs, "local", window=window)(q, k, v, attn_mask=mask, is_causal=causal)
    assert torch.isfinite(out).all()
    assert (out - expected).abs().max() < 1e-5


@pytest.mark.parametrize(("length", "window"), [(1, 1), (7, 2), (45, 5), (45, 8), (70, 64), (37, 10_000)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("batch_heads", [(2, 2), (1, 3), (3, 1)])
def test_local_fused_equals_its_reference_and_the_dense_band_in_gradients(specs, length, window, causal, masked,
                                                                             batch_heads):
    """forward's SDPA path, the written-out blocked reference and the dense masked softmax agree
    in outputs and in the gradients of q, k and v (padding with fully masked rows included)."""
    batch, heads = batch_heads
    module = build(specs, "local", heads=heads, window=window)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(batch, heads, length, 8, generator=g, dtype=torch.float64) for _ in range(3))
    keep = torch.rand(batch, length, generator=g) > 0.4
    if masked and length > 4:
        keep[0, : length // 2] = False  # early queries of a causal window see no key at all
    lo, hi = module.inner.offsets(length, causal)
    allowed = band(length, lo, hi) & keep[:, None, None, :] if masked else band(length, lo, hi)
    mask = keep[:, None, None, :] if masked else None
    grad = torch.randn(batch, heads, length, 8, generator=g, dtype=torch.float64)
    results = []
    for way in ("fused", "reference", "dense"):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        if way == "dense":
            out = dense_softmax(*inputs, allowed.expand(batch, heads, length, length))
        else:
            module.inner.fused = way == "fused"
            out = module(*inputs, attn_mask=mask, is_causal=causal)
        out.backward(grad)
        results.append([out, *(t.grad for t in inputs)])
    module.inner.fused = True
    for name, fused, reference, dense in zip(["out", "dq", "dk", "dv"], *results, strict=True):
        assert torch.isfinite(fused).all(), name
        torch.testing.assert_close(fused, reference, atol=1e-10, rtol=0, msg=name)
        torch.testing.assert_close(fused, dense, atol=1e-10, rtol=0, msg=name)


def test_local_fused_path_is_the_default_and_calls_sdpa(specs, monkeypatch):
    module = build(specs, "local", window=8)
    assert module.inner.fused
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(a[0].shape) or sdpa(*a, **kw))
    module(*qkv(40))
    assert calls == [torch.Size([4, 10, 4, 8])]  # (B·H, blocks, block, D): blocks of w/2, no (L, L)


# --- sparse --------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [9, 32, 50])
@pytest.mark.parametrize("causal", [False, True])
def test_sparse_equals_dense_softmax_over_its_pattern(specs, length, causal):
    module = build(specs, "sparse", block=4, window_blocks=3, globals=1, random=2)
    pattern = module.inner.pattern(length, causal)
    q, k, v = qkv(length)
    keep = padding(length)
    out = module(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    assert (out - dense_softmax(q, k, v, pattern & keep[:, None, None, :])).abs().max() < 1e-5


@pytest.mark.parametrize("causal", [False, True])
def test_sparse_pattern_is_bigbird(specs, causal):
    block, length = 4, 64
    pattern = build(specs, "sparse", block=block, window_blocks=3, globals=1, random=2).inner.pattern(length, causal)
    blocks = pattern.view(16, block, 16, block).any(3).any(1)  # (query block, key block)
    if not causal:
        assert blocks[0].all()  # the global block reads everything…
    assert blocks[:, 0].all()  # …and everyone reads it
    for n in range(1, 16):
        assert blocks[n, n] and blocks[n, n - 1]
        assert blocks[n].sum() <= 1 + 3 + 2  # global + window + random blocks, nothing more
        if causal:
            assert not blocks[n, n + 1 :].any()
        elif n < 15:
            assert blocks[n, n + 1]
    if causal:
        assert not pattern.triu(1).any()
    # Random blocks are seeded at build: same seed, same pattern; another seed, another one.
    first = build(specs, "sparse", block=block).inner.pattern(length, causal)
    assert torch.equal(first, build(specs, "sparse", block=block).inner.pattern(length, causal))
    assert not torch.equal(first, build(specs, "sparse", block=block, seed=5).inner.pattern(length, causal))


# --- linear and performer: chunked prefix sums vs the naive O(L²) formula ---------------------


def naive_kernel_attention(fq, fk, v, keep, causal):
    """Σ_j a_ij v_j / Σ_j a_ij with a = fq fkᵀ, masked densely: the O(L²) reference."""
    a = (fq @ fk.transpose(-2, -1)) * keep[:, None, None, :]
    if causal:
        a = a * torch.ones(fq.shape[-2], fk.shape[-2], dtype=a.dtype).tril()
    return (a @ v) / a.sum(-1, keepdim=True)


@pytest.mark.parametrize("lengths", [(1, 1), (50, 50), (64, 64), (24, 40), (40, 24)])
@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_linear_equals_naive_formula(specs, lengths, chunk, causal):
    q, k, v = qkv(*lengths, dtype=torch.float64)
    keep = padding(lengths[1])
    out = build(specs, "linear", chunk=chunk)(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    expected = naive_kernel_attention(F.elu(q) + 1, F.elu(k) + 1, v, keep, causal)
    assert (out - expected).abs().max() < 1e-6  # 1e-6: the paper's ε in the denominator


@pytest.mark.parametrize("lengths", [(1, 1), (50, 50), (64, 64), (24, 40), (40, 24)])
@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_performer_equals_naive_formula(specs, lengths, chunk, causal):
    q, k, v = qkv(*lengths, dtype=torch.float64)
    keep = padding(lengths[1])
    module = build(specs, "performer", num_features=32, chunk=chunk).double()
    out = module(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    inner = module.inner
    # Unstabilised features: the same estimator without the running max or chunking.
    fq, fk = torch.exp(inner._logits(q)), torch.exp(inner._logits(k))
    assert (out - naive_kernel_attention(fq, fk, v, keep, causal)).abs().max() < 1e-9


# --- approximation trends -----------------------------------------------------------------


def mean_error(out, ref) -> float:
    return (out - ref).abs().mean().item()


def test_nystrom_approaches_softmax_as_landmarks_reach_length(specs):
    q, k, v = qkv(32, scale=0.8)
    ref = dense_softmax(q, k, v)
    errors = [mean_error(build(specs, "nystrom", landmarks=m)(q, k, v), ref) for m in (4, 8, 16, 32)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.01
    exact_pinv = build(specs, "nystrom", landmarks=32, pinv_iterations=25)(q, k, v)
    assert mean_error(exact_pinv, ref) < 1e-4  # the rest was the pseudo-inverse's iteration


@pytest.mark.parametrize("length", [30, 33])
def test_nystrom_uneven_segments_and_padded_landmarks(specs, length):
    q, k, v = qkv(length)
    keep = torch.ones(2, length, dtype=torch.bool)
    keep[0, length // 2 :] = False  # whole segments of padding: those landmarks must drop out
    module = build(specs, "nystrom", landmarks=7)
    out = module(q, k, v, attn_mask=keep[:, None, None, :])
    k2, v2 = k.clone(), v.clone()
    k2[0, :, length // 2 :] = 50.0
    v2[0, :, length // 2 :] = -50.0
    assert torch.isfinite(out).all()
    assert (out - module(q, k2, v2, attn_mask=keep[:, None, None, :])).abs().max() < 1e-5


def test_performer_error_shrinks_with_more_features(specs):
    q, k, v = qkv(32, scale=0.8)
    ref = dense_softmax(q, k, v)

    def median_error(m: int) -> float:
        errors = [mean_error(build(specs, "performer", num_features=m, seed=s)(q, k, v), ref) for s in range(5)]
        return sorted(errors)[2]

    few, some, many = median_error(16), median_error(256), median_error(4096)
    assert few > some > many, (few, some, many)


# --- linformer -----------------------------------------------------------------------------


def test_linformer_rejects_keys_longer_than_max_len(specs):
    module = build(specs, "linformer", max_len=16)
    q, k, v = qkv(8, 17)
    with pytest.raises(ValueError, match=r"max_len=16 .* key length 17"):
        module(q, k, v)


def test_linformer_refuses_causal(specs):
    q, k, v = qkv(8)
    with pytest.raises(PluginError, match=r"'linformer' was called with what its spec does not support: causal"):
        build(specs, "linformer", max_len=16)(q, k, v, is_causal=True)


def test_linformer_right_padding_equals_the_unpadded_prefix(specs):
    module = build(specs, "linformer", max_len=64, k=8)
    q, k, v = qkv(40)
    keep = torch.zeros(2, 40, dtype=torch.bool)
    keep[:, :25] = True
    padded = module(q, k, v, attn_mask=keep[:, None, None, :])
    assert (padded - module(q, k[..., :25, :], v[..., :25, :])).abs().max() < 1e-5


# --- cost: no (L, L) tensor, nothing growing faster than L ----------------------------------


class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (in elements) any op returns, forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                elements = t.untyped_storage().nbytes() // t.element_size()  # real memory, not a broadcast view
                if elements > self.largest:
                    self.largest, self.op = elements, str(func)
        return out


EFFICIENT = ["local", "sparse", "linformer", "nystrom", "performer", "linear"]


def largest_allocation(specs, name: str, length: int, causal: bool) -> tuple[int, str]:
    module = build(specs, name, heads=1, dim=16, max_len=2048).train()
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, length, 16, generator=g, requires_grad=True) for _ in range(3))
    mask = torch.ones(1, 1, 1, length, dtype=torch.bool)
    mask[..., -length // 8 :] = False
    mode = LargestAllocation()
    with mode:
        module(q, k, v, attn_mask=mask if specs.get(name).padding_mask else None, is_causal=causal).sum().backward()
    return mode.largest, mode.op


def test_the_allocation_probe_sees_a_dense_matrix(specs):
    largest, _ = largest_allocation(specs, "softmax", 512, causal=False)
    assert largest >= 512 * 512


@pytest.mark.parametrize("name", EFFICIENT)
@pytest.mark.parametrize("causal", [False, True])
def test_no_quadratic_allocation(specs, name, causal):
    if causal and not specs.get(name).causal:
        pytest.skip(f"{name} is not causal")
    length = 1024
    largest, op = largest_allocation(specs, name, length, causal)
    assert largest < length * length // 2, f"{name}: {op} allocated {largest} elements at L={length}"
    doubled, op2 = largest_allocation(specs, name, 2 * length, causal)
    assert doubled <= 2.2 * largest, f"{name}: largest allocation grew {doubled / largest:.2f}× when L doubled ({op2})"
