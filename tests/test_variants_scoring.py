"""Behaviour of talking-heads, additive, cosformer and the forced SDPA backends (beyond the conformance kit)."""

from __future__ import annotations

import math

import pytest
import torch
from attnbench_plugins.attention.additive import AdditiveAttention
from attnbench_plugins.attention.cosformer import CosFormerAttention
from attnbench_plugins.attention.talking_heads import TalkingHeadsAttention
from torch.overrides import TorchFunctionMode

from attnbench import AttentionConfig, plugins
from attnbench.nn.masks import dense_mask
from attnbench.testing.attention import softmax_reference

B, H, D = 2, 3, 8


def _config(**options) -> AttentionConfig:
    return AttentionConfig(num_heads=H, head_dim=D, options=options)


def _qkv(lq: int, lk: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, lq, D, generator=g), torch.randn(B, H, lk, D, generator=g),
            torch.randn(B, H, lk, D, generator=g))


def _padding(lk: int) -> torch.Tensor:
    mask = torch.ones(B, 1, 1, lk, dtype=torch.bool)
    mask[0, ..., lk - 4:] = False
    return mask


def _spec(name: str):
    return plugins.load().attention.get(name)


# --- talking-heads ----------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_talking_heads_equals_softmax_at_identity_init(causal):
    module = TalkingHeadsAttention(_config())
    q, k, v = _qkv(10, 10)
    mask = _padding(10)
    assert torch.allclose(module(q, k, v, attn_mask=mask, is_causal=causal),
                          softmax_reference(q, k, v, mask, causal), atol=1e-6)


def test_talking_heads_mixes_heads_once_trained():
    module = TalkingHeadsAttention(_config())
    with torch.no_grad():
        module.pre_softmax.copy_(torch.randn(H, H))
    q, k, v = _qkv(10, 10)
    out = module(q, k, v)
    assert not torch.allclose(out, softmax_reference(q, k, v), atol=1e-3)
    # Head 0's logits are a mix of every head's: changing only head 2's keys changes head 0.
    k2 = k.clone()
    k2[:, 2] = torch.randn_like(k2[:, 2])
    assert not torch.allclose(module(q, k2, v)[:, 0], out[:, 0], atol=1e-4)


def test_talking_heads_per_head_mask_does_not_leak_between_heads():
    module = TalkingHeadsAttention(_config())
    with torch.no_grad():
        module.pre_softmax.copy_(torch.rand(H, H) + 0.5)
        module.post_softmax.copy_(torch.rand(H, H) + 0.5)
    q, k, v = _qkv(6, 6)
    mask = torch.ones(1, H, 6, 6, dtype=torch.bool)
    mask[0, 0, :, 5] = False  # only head 0 may not see key 5
    before = module(q, k, v, attn_mask=mask)
    k2, v2 = k.clone(), v.clone()
    k2[:, 0, 5], v2[:, 0, 5] = 9.0, -9.0  # head 0's copy of the masked key
    after = module(q, k2, v2, attn_mask=mask)
    assert torch.allclose(before, after, atol=1e-6)


# --- additive ---------------------------------------------------------------------------------


def test_additive_scores_are_v_tanh_wq_plus_uk():
    module = AdditiveAttention(_config(additive_dim=5))
    q, k, _ = _qkv(4, 6)
    with torch.no_grad():
        scores = module.scores(q, k)
        w, u, v = module.w, module.u, module.v
    for b in range(B):
        for h in range(H):
            for i in range(4):
                for j in range(6):
                    hidden = torch.tanh(q[b, h, i] @ w[h] + k[b, h, j] @ u[h])
                    assert scores[b, h, i, j].item() == pytest.approx((hidden @ v[h]).item(), abs=1e-5)


def test_additive_chunked_scores_and_gradients_match_unchunked():
    whole = AdditiveAttention(_config())
    # A budget of 3 query rows: 7 queries run in chunks of 3, 3, 1 with checkpointing.
    chunked = AdditiveAttention(_config(additive_chunk_elements=B * H * 9 * D * 3))
    chunked.load_state_dict(whole.state_dict())
    q, k, v = (t.requires_grad_() for t in _qkv(7, 9))
    mask = _padding(9)
    out_whole = whole(q, k, v, attn_mask=mask, is_causal=True)
    out_chunked = chunked(q, k, v, attn_mask=mask, is_causal=True)
    assert torch.allclose(out_whole, out_chunked, atol=1e-6)
    grads_whole = torch.autograd.grad(out_whole.square().sum(), (q, k, v, whole.w, whole.u, whole.v))
    grads_chunked = torch.autograd.grad(out_chunked.square().sum(), (q, k, v, chunked.w, chunked.u, chunked.v))
    for a, b in zip(grads_whole, grads_chunked, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_additive_weights_honour_an_arbitrary_mask():
    module = AdditiveAttention(_config())
    q, k, v = _qkv(5, 5)
    mask = torch.rand(B, H, 5, 5, generator=torch.Generator().manual_seed(3)) > 0.4
    mask[..., 0] = True
    _, weights = module(q, k, v, attn_mask=mask, need_weights=True)
    assert weights.masked_select(~mask).abs().max() == 0
    assert torch.allclose(weights.sum(-1), torch.ones(B, H, 5), atol=1e-6)


# --- cosformer --------------------------------------------------------------------------------


def _cosformer_naive(q, k, v, causal, padding=None):
    """The cosFormer formula written out with the full Lq×Lk matrix."""
    lq, lk = q.shape[-2], k.shape[-2]
    m = max(lq, lk)
    i = torch.arange(1, lq + 1)[:, None]
    j = torch.arange(1, lk + 1)[None, :]
    scores = torch.relu(q) @ torch.relu(k).transpose(-2, -1) * torch.cos(math.pi / 2 * (i - j) / m)
    keep = dense_mask(padding, causal, lq, lk, q.device)
    if keep is not None:
        scores = scores.masked_fill(~keep, 0.0)
    return scores @ v / scores.sum(-1, keepdim=True).clamp_min(1e-6)


@pytest.mark.parametrize(("lq", "lk", "chunk"), [(16, 16, 4), (13, 13, 5), (10, 17, 4), (17, 10, 3), (9, 9, 64)])
@pytest.mark.parametrize("causal", [False, True])
def test_cosformer_matches_the_naive_quadratic_formula(lq, lk, chunk, causal):
    module = CosFormerAttention(_config(chunk_size=chunk))
    q, k, v = _qkv(lq, lk)
    padding = _padding(lk)
    assert torch.allclose(module(q, k, v, is_causal=causal), _cosformer_naive(q, k, v, causal), atol=1e-5)
    assert torch.allclose(module(q, k, v, attn_mask=padding, is_causal=causal),
                          _cosformer_naive(q, k, v, causal, padding), atol=1e-5)


def test_cosformer_reweighting_favours_nearby_keys():
    module = CosFormerAttention(_config())
    # Identical positive q and k everywhere: only the cos re-weighting tells keys apart.
    q = torch.ones(1, 1, 8, D)
    v = torch.arange(8.0)[None, None, :, None].expand(1, 1, 8, D)
    out = module(q, q, v)[0, 0, :, 0]
    assert out[0] < out[-1]  # the first query leans to early keys, the last to late ones
    assert torch.all(out[1:] > out[:-1])


class _LargestTensor(TorchFunctionMode):
    """Records the most elements any torch call returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if isinstance(result, torch.Tensor):
            self.largest = max(self.largest, result.numel())
        return result


@pytest.mark.parametrize("causal", [False, True])
def test_cosformer_never_builds_the_length_squared_matrix(causal):
    module = CosFormerAttention(_config(chunk_size=16))
    length = 512
    q, k, v = _qkv(length, length)
    with _LargestTensor() as mode:
        module(q, k, v, attn_mask=_padding(length), is_causal=causal)
    assert mode.largest < B * H * length * length // 8, f"a tensor of {mode.largest} elements was built"


# --- forced SDPA backends ---------------------------------------------------------------------


def test_sdpa_math_is_available_on_cpu_and_exact():
    spec = _spec("sdpa-math")
    assert spec.available(torch.device("cpu")) is None
    module = spec.build(_config())
    q, k, v = _qkv(9, 11)
    mask = _padding(11)
    assert torch.allclose(module(q, k, v, attn_mask=mask, is_causal=True),
                          softmax_reference(q, k, v, mask, causal=True), atol=1e-6)


def test_sdpa_efficient_on_cpu_is_unavailable_with_a_reason_and_never_falls_back():
    spec = _spec("sdpa-efficient")
    reason = spec.available(torch.device("cpu"))
    assert isinstance(reason, str) and "CUDA" in reason
    q, k, v = _qkv(4, 4)
    with pytest.raises(RuntimeError):
        spec.build(_config())(q, k, v)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["sdpa-math", "sdpa-flash", "sdpa-efficient"])
def test_sdpa_backends_without_cuda_say_why_not(name):
    reason = _spec(name).available(torch.device("cuda"))
    assert isinstance(reason, str) and reason


def test_sdpa_flash_takes_no_mask_on_any_device():
    spec = _spec("sdpa-flash")
    assert not spec.padding_mask and not spec.arbitrary_mask
    q, k, v = _qkv(4, 4)
    with pytest.raises(ValueError, match="no attention mask"):
        spec.build(_config())(q, k, v, attn_mask=_padding(4))


@pytest.mark.skipif(
    _spec("sdpa-flash").available(torch.device("cpu")) is not None, reason="flash backend not available on this CPU"
)
def test_sdpa_flash_on_cpu_is_exact_with_causality():
    module = _spec("sdpa-flash").build(_config())
    q, k, v = _qkv(12, 12)
    assert torch.allclose(module(q, k, v, is_causal=True), softmax_reference(q, k, v, causal=True), atol=1e-5)
