"""Behaviour of the positional variants: rope, alibi, relative (beyond the conformance kit)."""

from __future__ import annotations

import pytest
import torch
from attnbench_plugins.attention.alibi import ALiBiAttention, alibi_slopes
from attnbench_plugins.attention.relative import RelativeBiasAttention, relative_position_bucket
from attnbench_plugins.attention.rope import RotaryAttention
from torch.overrides import TorchFunctionMode

from attnbench import AttentionConfig
from attnbench.testing.attention import softmax_reference

B, H, D = 2, 4, 16


def _config(causal: bool = False, **options) -> AttentionConfig:
    return AttentionConfig(num_heads=H, head_dim=D, causal=causal, options=options)


def _qkv(lq: int, lk: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, lq, D, generator=g), torch.randn(B, H, lk, D, generator=g),
            torch.randn(B, H, lk, D, generator=g))


def _padding(lk: int) -> torch.Tensor:
    mask = torch.ones(B, 1, 1, lk, dtype=torch.bool)
    mask[0, ..., lk - 5:] = False
    return mask


# --- RoPE -------------------------------------------------------------------------------------


def _rope_scores(module: RotaryAttention, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return module.rotate(q) @ module.rotate(k).transpose(-2, -1)


def test_rope_scores_depend_only_on_the_offset():
    module = RotaryAttention(_config())
    a, b = torch.randn(D), torch.randn(D)
    length = 12
    q = a.expand(1, 1, length, D)  # the same query and key content at every position
    k = b.expand(1, 1, length, D)
    scores = _rope_scores(module, q, k)[0, 0]
    for offset in range(-length + 1, length):
        diagonal = torch.diagonal(scores, offset=offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4), f"offset {offset}"
    assert abs(scores.diagonal(0)[0] - scores.diagonal(3)[0]) > 1e-3, "offsets must matter"


def test_rope_scores_are_invariant_to_shifting_the_sequence():
    module = RotaryAttention(_config())
    q, k, _ = _qkv(10, 10)
    shift = 7
    q_shifted = torch.cat((torch.randn(B, H, shift, D), q), dim=-2)
    k_shifted = torch.cat((torch.randn(B, H, shift, D), k), dim=-2)
    before = _rope_scores(module, q, k)
    after = _rope_scores(module, q_shifted, k_shifted)[..., shift:, shift:]
    assert torch.allclose(before, after, atol=1e-4)


def test_rope_rotation_keeps_norms_and_leaves_position_zero_alone():
    module = RotaryAttention(_config())
    q, _, _ = _qkv(9, 9)
    rotated = module.rotate(q)
    assert torch.allclose(rotated.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    assert torch.equal(rotated[..., 0, :], q[..., 0, :])
    assert not torch.allclose(rotated[..., 1:, :], q[..., 1:, :])


def test_rope_odd_head_dim_rotates_all_but_the_last_dim():
    module = RotaryAttention(AttentionConfig(num_heads=1, head_dim=5))
    x = torch.randn(1, 1, 6, 5)
    rotated = module.rotate(x)
    assert torch.equal(rotated[..., 4], x[..., 4])
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_tables_are_cached_and_sliced_for_shorter_lengths():
    module = RotaryAttention(_config())
    cos_long, _ = module.tables(32, torch.device("cpu"), torch.float32)
    cos_short, _ = module.tables(8, torch.device("cpu"), torch.float32)
    assert len(module._tables) == 1
    assert torch.equal(cos_short, cos_long[:8])


@pytest.mark.parametrize("causal", [False, True])
def test_rope_fused_path_matches_written_out_weights(causal):
    module = RotaryAttention(_config(causal))
    q, k, v = _qkv(12, 12)
    mask = _padding(12)
    fused = module(q, k, v, attn_mask=mask, is_causal=causal)
    out, weights = module(q, k, v, attn_mask=mask, is_causal=causal, need_weights=True)
    assert torch.allclose(fused, out, atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(B, H, 12), atol=1e-5)


# --- ALiBi ------------------------------------------------------------------------------------


def test_alibi_slopes_match_the_paper_for_8_heads():
    expected = torch.tensor([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256])
    assert torch.allclose(alibi_slopes(8), expected)


def test_alibi_slopes_for_16_and_12_heads():
    assert torch.allclose(alibi_slopes(16), torch.tensor([2 ** (-0.5 * (i + 1)) for i in range(16)]))
    # Not a power of 2: the 8-head slopes, then every other one of the 16-head slopes.
    expected = [2.0 ** -(i + 1) for i in range(8)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]
    assert torch.allclose(alibi_slopes(12), torch.tensor(expected))


def test_alibi_with_equal_scores_weights_decay_with_distance():
    module = ALiBiAttention(_config())
    zeros = torch.zeros(1, H, 6, D)
    _, weights = module(zeros, zeros, zeros, need_weights=True)
    slopes = alibi_slopes(H)
    distance = (torch.arange(6)[:, None] - torch.arange(6)[None, :]).abs()
    expected = torch.softmax(-slopes[:, None, None] * distance, dim=-1)
    assert torch.allclose(weights[0], expected, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_alibi_equals_softmax_with_the_linear_bias(causal, need_weights):
    module = ALiBiAttention(_config(causal))
    q, k, v = _qkv(10, 14)
    mask = _padding(14)
    slopes = alibi_slopes(H)
    bias = -slopes[:, None, None] * (torch.arange(10)[:, None] - torch.arange(14)[None, :]).abs()
    result = module(q, k, v, attn_mask=mask, is_causal=causal, need_weights=need_weights)
    out = result[0] if need_weights else result
    assert torch.allclose(out, softmax_reference(q, k, v, mask, causal, bias=bias), atol=1e-5)


# --- T5 relative bias -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "bucket"),
    [(0, 0), (-1, 1), (-7, 7), (-8, 8), (-16, 10), (-32, 12), (-64, 14), (-128, 15), (-1000, 15),
     (1, 17), (8, 24), (1000, 31)],
)
def test_relative_buckets_bidirectional(offset, bucket):
    got = relative_position_bucket(torch.tensor([offset]), True, num_buckets=32, max_distance=128)
    assert got.item() == bucket


@pytest.mark.parametrize(
    ("offset", "bucket"), [(0, 0), (5, 0), (-15, 15), (-16, 16), (-32, 21), (-128, 31), (-500, 31)]
)
def test_relative_buckets_causal(offset, bucket):
    got = relative_position_bucket(torch.tensor([offset]), False, num_buckets=32, max_distance=128)
    assert got.item() == bucket


def test_relative_bias_is_the_embedding_of_the_bucket():
    module = RelativeBiasAttention(_config())
    bias = module.bias(5, 7)
    assert bias.shape == (H, 5, 7)
    for i in range(5):
        for j in range(7):
            bucket = relative_position_bucket(torch.tensor(j - i), True, 32, 128)
            assert torch.equal(bias[:, i, j], module.embedding.weight[bucket])


def test_relative_options_and_causal_buckets():
    module = RelativeBiasAttention(_config(causal=True, num_buckets=8, max_distance=16))
    assert module.embedding.num_embeddings == 8 and not module.bidirectional
    bias = module.bias(4, 4)
    # Causal: every key at or after the query shares bucket 0.
    assert torch.equal(bias[:, 0, 3], module.embedding.weight[0])


@pytest.mark.parametrize("causal", [False, True])
def test_relative_equals_softmax_with_its_bias_and_learns_it(causal):
    module = RelativeBiasAttention(_config(causal))
    q, k, v = _qkv(9, 9)
    mask = _padding(9)
    out = module(q, k, v, attn_mask=mask, is_causal=causal)
    expected = softmax_reference(q, k, v, mask, causal, bias=module.bias(9, 9).detach())
    assert torch.allclose(out, expected, atol=1e-5)
    out.square().sum().backward()
    assert module.embedding.weight.grad is not None and module.embedding.weight.grad.abs().sum() > 0


# --- alibi and relative: the fused per-offset path --------------------------------------------


class _LargestStorage(TorchFunctionMode):
    """Records the most bytes of storage behind any tensor a torch call returns (a strided view counts once)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if isinstance(result, torch.Tensor):
            self.largest = max(self.largest, result.untyped_storage().nbytes())
        return result


def _offset_module(name: str, causal: bool):
    torch.manual_seed(0)
    return ALiBiAttention(_config(causal)) if name == "alibi" else RelativeBiasAttention(_config(causal))


@pytest.mark.parametrize("name", ["alibi", "relative"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("lq", "lk"), [(11, 11), (6, 13), (13, 6)])
@pytest.mark.parametrize("masked", [False, True])
def test_offset_bias_fused_path_matches_the_dense_formula(name, causal, lq, lk, masked):
    module = _offset_module(name, causal)
    q, k, v = _qkv(lq, lk)
    mask = _padding(lk) if masked else None
    fused = module(q, k, v, attn_mask=mask, is_causal=causal)
    written_out, _ = module(q, k, v, attn_mask=mask, is_causal=causal, need_weights=True)
    expected = softmax_reference(q, k, v, mask, causal, bias=module.bias(lq, lk).detach())
    assert torch.allclose(fused, expected, atol=1e-5), (fused - expected).abs().max()
    assert torch.allclose(written_out, expected, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_relative_fused_gradients_match_the_written_out_path(causal):
    module = _offset_module("relative", causal)
    q, k, v = (t.requires_grad_() for t in _qkv(12, 12))
    grads = []
    for need_weights in (False, True):
        result = module(q, k, v, is_causal=causal, need_weights=need_weights)
        out = result[0] if need_weights else result
        grads.append(torch.autograd.grad(out.square().sum(), (q, k, v, module.embedding.weight)))
    for fused, written_out in zip(*grads, strict=True):
        assert torch.allclose(fused, written_out, atol=1e-4)


@pytest.mark.parametrize("name", ["alibi", "relative"])
@pytest.mark.parametrize("causal", [False, True])
def test_offset_bias_forward_never_builds_the_heads_by_length_squared_bias(name, causal):
    module = _offset_module(name, causal)
    length = 512
    q, k, v = _qkv(length, length)  # 256 KiB each; the dense bias would be 4 MiB
    with torch.no_grad(), _LargestStorage() as mode:
        module(q, k, v, is_causal=causal)
    dense_bias_bytes = H * length * length * 4
    assert mode.largest < dense_bias_bytes // 8, f"a tensor of {mode.largest} bytes was built"
