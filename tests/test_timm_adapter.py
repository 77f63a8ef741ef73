"""attnbench.nn.timm: any variant inside timm's VisionTransformer, with timm's weights."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

import attnbench
from attnbench import plugins
from attnbench.nn.timm import VariantAttention, attention_layer, replace_attention, token_count, vision_transformer

VIT = dict(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=2, num_heads=4, qkv_bias=True)


def stock_vit(**overrides) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(**{**VIT, **overrides}).eval()


@pytest.mark.parametrize("variant", ["softmax", "sdpa"])
def test_exact_variant_logits_equal_timm_attention_on_the_same_weights(variant):
    stock = stock_vit()
    adapted = vision_transformer(variant, **VIT).eval()
    adapted.load_state_dict(stock.state_dict(), strict=True)  # same names and shapes as timm's Attention
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected, got = stock(images), adapted(images)
    assert isinstance(adapted.blocks[0].attn, VariantAttention)
    assert adapted.blocks[0].attn.attention.spec.name == variant
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_qk_norm_and_no_class_token_load_and_match():
    kwargs = dict(qk_norm=True, class_token=False, global_pool="avg", reg_tokens=2)
    stock = stock_vit(**kwargs)
    adapted = vision_transformer("softmax", **VIT, **kwargs).eval()
    adapted.load_state_dict(stock.state_dict(), strict=True)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(adapted(images), stock(images), atol=1e-4, rtol=0)
    assert adapted.blocks[0].attn.max_len == 16 + 2


def test_replace_attention_keeps_a_models_weights():
    stock = stock_vit()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = stock(images)
        swapped = replace_attention(copy.deepcopy(stock), "softmax")
        got = swapped(images)
    assert all(isinstance(block.attn, VariantAttention) for block in swapped.blocks)
    assert swapped.blocks[1].attn.max_len == token_count(16, 4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_token_count_counts_patches_and_prefix_tokens():
    assert token_count(28, 4) == 50
    assert token_count((28, 32), 4, class_token=False) == 7 * 8
    assert token_count(30, 4, reg_tokens=4) == 49 + 1 + 4  # timm's PatchEmbed drops the remainder


def test_variant_needing_max_len_runs_in_a_timm_block():
    spec = plugins.get_attention("linformer")
    assert spec.needs_max_len
    block = Block(dim=32, num_heads=4, attn_layer=attention_layer(spec, max_len=17, k=8))
    out = block(torch.randn(2, 17, 32))
    assert out.shape == (2, 17, 32)
    assert block.attn.attention.inner.k == 8  # options reach the variant


def test_boolean_and_additive_masks_reach_the_variant():
    layer = attention_layer("softmax")(32, num_heads=4).eval()
    x = torch.randn(1, 6, 32)
    keep = torch.ones(1, 1, 1, 6, dtype=torch.bool)
    keep[..., 4:] = False
    additive = torch.zeros(1, 1, 1, 6).masked_fill(~keep, float("-inf"))
    with torch.no_grad():
        torch.testing.assert_close(layer(x, attn_mask=additive), layer(x, attn_mask=keep))
        assert not torch.allclose(layer(x, attn_mask=keep), layer(x))
    with pytest.raises(ValueError, match="boolean masks"):
        layer(x, attn_mask=torch.full((1, 1, 1, 6), 0.5))


class _LinearCore(nn.Module):
    """A variant with an nn.Linear inside, initialised to a constant timm would overwrite."""

    def __init__(self, config):
        super().__init__()
        self.mix = nn.Linear(config.head_dim, config.head_dim)
        nn.init.constant_(self.mix.weight, 0.5)

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        return torch.nn.functional.scaled_dot_product_attention(self.mix(q), k, v)


def test_the_variants_own_initialisation_survives_timms_weight_init():
    spec = attnbench.AttentionSpec(name="linear-core", build=_LinearCore, summary="test", complexity="O(L^2)")
    vit = vision_transformer(spec, **VIT)
    weight = vit.blocks[0].attn.attention.inner.mix.weight
    assert torch.all(weight == 0.5)
