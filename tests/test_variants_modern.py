"""gqa, mqa, sigmoid and differential attention against their papers' formulas (beyond the conformance kit)."""

from __future__ import annotations

import math

import pytest
import torch
from attnbench_plugins.attention.differential import DifferentialAttention
from attnbench_plugins.attention.gqa import GroupedQueryAttention, default_kv_heads
from attnbench_plugins.attention.sigmoid import SigmoidAttention

from attnbench import AttentionConfig, plugins
from attnbench.nn import MultiheadAttention, build_attention
from attnbench.nn.masks import dense_mask

B, H, D = 2, 4, 8


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _padding(lk: int) -> torch.Tensor:
    mask = torch.ones(B, 1, 1, lk, dtype=torch.bool)
    mask[0, ..., lk - 3:] = False
    return mask


def _allowed(mask: torch.Tensor | None, causal: bool, lq: int, lk: int) -> torch.Tensor:
    """(B, 1, Lq, Lk) booleans: which (query, key) pairs may attend."""
    full = dense_mask(mask, causal, lq, lk, torch.device("cpu"))
    return torch.ones(B, 1, lq, lk, dtype=torch.bool) if full is None else full.expand(B, 1, lq, lk)


def _spec(name: str):
    return plugins.load().attention.get(name)


# --- gqa / mqa ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_heads, expected", [(1, 1), (2, 2), (3, 1), (4, 2), (6, 2), (8, 2), (12, 3),
                                                  (16, 4), (32, 8), (64, 16)])
def test_gqa_default_kv_heads_groups_four_query_heads_where_it_can(num_heads, expected):
    assert default_kv_heads(num_heads) == expected
    assert _spec("gqa").kv_heads(AttentionConfig(num_heads=num_heads, head_dim=D)) == expected
    assert _spec("mqa").kv_heads(AttentionConfig(num_heads=num_heads, head_dim=D)) == 1


@pytest.mark.parametrize("name, kv_heads", [("gqa", 2), ("mqa", 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_grouped_query_attention_is_the_per_head_formula(name, kv_heads, causal):
    """out_h = softmax(q_h k_g(h)ᵀ/√D + mask) v_g(h), g(h) = h // (H / H_kv), written head by head."""
    spec = _spec(name)
    config = AttentionConfig(num_heads=H, head_dim=D, num_kv_heads=kv_heads)
    assert spec.kv_heads(config) == kv_heads
    module = build_attention(spec, config)
    lq, lk = 7, 7 if causal else 10
    q, k, v = _rand(B, H, lq, D, seed=0), _rand(B, kv_heads, lk, D, seed=1), _rand(B, kv_heads, lk, D, seed=2)
    mask = _padding(lk)
    allowed = _allowed(mask, causal, lq, lk)[:, 0]
    group = H // kv_heads
    expected = torch.stack([
        torch.softmax((q[:, h] @ k[:, h // group].transpose(-2, -1) / math.sqrt(D)).masked_fill(~allowed, -math.inf), -1)
        @ v[:, h // group]
        for h in range(H)
    ], dim=1)
    out = module(q, k, v, attn_mask=mask, is_causal=causal)
    assert torch.allclose(out, expected, atol=1e-6)
    out_w, weights = module(q, k, v, attn_mask=mask, is_causal=causal, need_weights=True)
    assert weights.shape == (B, H, lq, lk)
    assert torch.allclose(out_w, expected, atol=1e-6)


def test_multihead_attention_projects_keys_and_values_to_the_kv_heads():
    """With gqa, k_proj/v_proj shrink to H_kv heads; the layer equals multi-head attention whose
    key/value projections repeat each kv head's rows over its group."""
    torch.manual_seed(0)
    ours = MultiheadAttention(32, H, _spec("gqa"))  # head_dim 8, default 2 kv heads
    assert ours.num_kv_heads == 2 and ours.k_proj.out_features == ours.v_proj.out_features == 2 * 8
    ref = MultiheadAttention(32, H, _spec("softmax"))
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    assert n_ref - n_ours == 2 * (32 * 16 + 16)  # two projections lose 2 of 4 heads' rows and biases
    with torch.no_grad():
        for name in ("q_proj", "out_proj"):
            getattr(ref, name).load_state_dict(getattr(ours, name).state_dict())
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(ours, name), getattr(ref, name)
            dst.weight.copy_(src.weight.view(2, 8, 32).repeat_interleave(2, dim=0).reshape(32, 32))
            dst.bias.copy_(src.bias.view(2, 8).repeat_interleave(2, dim=0).reshape(32))
    x, memory = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 6:] = False
    out, _ = ours(x, memory, key_padding_mask=keep)
    expected, _ = ref(x, memory, key_padding_mask=keep)
    assert torch.allclose(out, expected, atol=1e-5)


def test_multihead_attention_honours_the_kv_heads_option_and_leaves_other_variants_alone():
    mqa_like = MultiheadAttention(32, H, _spec("gqa"), options={"kv_heads": 1})
    assert mqa_like.k_proj.out_features == 8 and mqa_like(torch.randn(1, 5, 32))[0].shape == (1, 5, 32)
    assert MultiheadAttention(32, H, _spec("mqa")).v_proj.out_features == 8
    assert MultiheadAttention(32, H, _spec("sdpa")).k_proj.out_features == 32
    with pytest.raises(ValueError, match=r"kv_heads=3 does not divide num_heads=4"):
        MultiheadAttention(32, H, _spec("gqa"), options={"kv_heads": 3})


def test_attention_config_refuses_kv_heads_that_do_not_divide_the_heads():
    with pytest.raises(ValueError, match=r"num_kv_heads=3 does not divide num_heads=4"):
        AttentionConfig(num_heads=4, head_dim=8, num_kv_heads=3)
    with pytest.raises(ValueError, match=r"num_kv_heads=0"):
        AttentionConfig(num_heads=4, head_dim=8, num_kv_heads=0)
    assert AttentionConfig(num_heads=4, head_dim=8).num_kv_heads is None


def test_gqa_mean_pools_key_value_heads_when_handed_one_per_query_head():
    """A model that keeps H key/value heads (timm adapter, bench) gets the paper's mean-pooled conversion."""
    module = GroupedQueryAttention(AttentionConfig(num_heads=H, head_dim=D))  # wants 2 kv heads
    q, k, v = _rand(B, H, 6, D, seed=0), _rand(B, H, 6, D, seed=1), _rand(B, H, 6, D, seed=2)
    pooled_k, pooled_v = k.view(B, 2, 2, 6, D).mean(2), v.view(B, 2, 2, 6, D).mean(2)
    assert torch.allclose(module(q, k, v), module(q, pooled_k, pooled_v), atol=1e-6)
    with pytest.raises(ValueError, match=r"wants k, v with 2 key/value heads.*num_kv_heads=2"):
        module(q, k[:, :1], v[:, :1])
    # --variant-option gqa.kv_heads=1 under the runner: the model projected for the default 2.
    one = GroupedQueryAttention(AttentionConfig(num_heads=H, head_dim=D, options={"kv_heads": 1}))
    assert torch.allclose(one(q, pooled_k, pooled_v), one(q, k.mean(1, keepdim=True), v.mean(1, keepdim=True)),
                          atol=1e-6)


# --- sigmoid --------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_sigmoid_attention_is_the_papers_formula(causal):
    """out_i = Σ_j σ(q_i·k_j/√D − log Lk) v_j over the keys i may attend, summed key by key."""
    module = SigmoidAttention(AttentionConfig(num_heads=H, head_dim=D))
    lq, lk = 5, 5 if causal else 7
    q, k, v = _rand(B, H, lq, D, seed=3), _rand(B, H, lk, D, seed=4), _rand(B, H, lk, D, seed=5)
    mask = _padding(lk)
    allowed = _allowed(mask, causal, lq, lk)
    expected = torch.zeros(B, H, lq, D)
    for j in range(lk):
        logit = (q * k[:, :, j : j + 1]).sum(-1, keepdim=True) / math.sqrt(D) - math.log(lk)
        expected += torch.sigmoid(logit) * allowed[..., j : j + 1] * v[:, :, j : j + 1]
    out, weights = module(q, k, v, attn_mask=mask, is_causal=causal, need_weights=True)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(module(q, k, v, attn_mask=mask, is_causal=causal), expected, atol=1e-6)
    assert (weights[~allowed.expand_as(weights)] == 0).all()
    assert not torch.allclose(weights.sum(-1), torch.ones(B, H, lq))  # no row normalisation


def test_sigmoid_bias_option_and_fully_masked_rows():
    q, k, v = _rand(1, 1, 3, D, seed=6), _rand(1, 1, 4, D, seed=7), _rand(1, 1, 4, D, seed=8)
    module = SigmoidAttention(AttentionConfig(num_heads=1, head_dim=D, options={"bias": -2.5}))
    _, weights = module(q, k, v, need_weights=True)
    assert torch.allclose(weights, torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(D) - 2.5))
    nothing = torch.zeros(1, 1, 1, 4, dtype=torch.bool)  # every key masked: masked keys contribute 0
    assert (module(q, k, v, attn_mask=nothing) == 0).all()
    with pytest.raises(ValueError, match=r"bias must be a number or null.*'x'"):
        SigmoidAttention(AttentionConfig(num_heads=1, head_dim=D, options={"bias": "x"}))


# --- differential ---------------------------------------------------------------------------


def _differential_reference(module: DifferentialAttention, q, k, v, allowed) -> torch.Tensor:
    """(softmax(q1k1ᵀ/√(D/2)) − λ softmax(q2k2ᵀ/√(D/2))) v, RMSNorm over D, × (1 − λ_init)."""
    half = q.shape[-1] // 2

    def softmax_map(qi, ki):
        return torch.softmax((qi @ ki.transpose(-2, -1) / math.sqrt(half)).masked_fill(~allowed, -math.inf), -1)

    lam = (torch.exp((module.lambda_q1 * module.lambda_k1).sum(-1))
           - torch.exp((module.lambda_q2 * module.lambda_k2).sum(-1)) + module.lambda_init)
    diff = softmax_map(q[..., :half], k[..., :half]) - lam[:, None, None] * softmax_map(q[..., half:], k[..., half:])
    x = diff @ v
    normed = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-5) * module.norm.weight
    return normed * (1 - module.lambda_init)


@pytest.mark.parametrize("causal", [False, True])
def test_differential_attention_is_the_papers_formula(causal):
    torch.manual_seed(0)
    module = DifferentialAttention(AttentionConfig(num_heads=H, head_dim=D, options={"lambda_init": 0.35}))
    with torch.no_grad():
        module.norm.weight.uniform_(0.5, 1.5)  # a trained-looking scale, so the test sees it
    lq, lk = 6, 6 if causal else 9
    q, k, v = _rand(B, H, lq, D, seed=9), _rand(B, H, lk, D, seed=10), _rand(B, H, lk, D, seed=11)
    mask = _padding(lk)
    expected = _differential_reference(module, q, k, v, _allowed(mask, causal, lq, lk))
    assert torch.allclose(module(q, k, v, attn_mask=mask, is_causal=causal), expected, atol=1e-5)


def test_differential_lambda_starts_from_the_papers_layer_one_value():
    module = DifferentialAttention(AttentionConfig(num_heads=H, head_dim=D))
    assert module.lambda_init == pytest.approx(0.8 - 0.6 * math.exp(-0.3 * (1 - 1)))  # the paper, layer 1
    assert _spec("differential").options["lambda_init"] == pytest.approx(0.2)
    assert module.lambda_q1.shape == (H, D // 2)  # one learned vector per head
    with torch.no_grad():
        for p in (module.lambda_q1, module.lambda_k1, module.lambda_q2, module.lambda_k2):
            p.zero_()
    assert torch.allclose(module.lambda_(), torch.full((H,), 0.2))  # exp(0) − exp(0) + λ_init


def test_differential_needs_an_even_head_dim():
    with pytest.raises(ValueError, match=r"head_dim must be even, got 7"):
        DifferentialAttention(AttentionConfig(num_heads=2, head_dim=7))


def test_a_kv_heads_option_sizes_the_models_key_value_projections():
    """--variant-option gqa.kv_heads=N reaches the model's k/v projections, not only the variant."""
    from attnbench.runner.pairing import with_options

    spec = with_options(_spec("gqa"), (("kv_heads", 1),))
    layer = MultiheadAttention(64, 4, spec)
    assert layer.num_kv_heads == 1 and layer.k_proj.out_features == 16 and layer.v_proj.out_features == 16
    out, _ = layer(torch.randn(2, 5, 64))
    assert out.shape == (2, 5, 64)
