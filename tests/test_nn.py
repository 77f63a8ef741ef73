"""attnbench.nn: one variant plugs into self, causal and cross attention layers; contract breaches are named."""

from __future__ import annotations

import pytest
import torch

from attnbench import AttentionConfig, plugins
from attnbench.errors import PluginError
from attnbench.nn import Decoder, Encoder, MultiheadAttention, build_attention


def test_multihead_attention_matches_torch_with_the_same_weights():
    torch.manual_seed(0)
    ours = MultiheadAttention(16, 4, plugins.get_attention("softmax"))
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 7, 16)
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[1, 5:] = False
    out, weights = ours(x, key_padding_mask=keep, need_weights=True)
    expected, expected_weights = ref(x, x, x, key_padding_mask=~keep, average_attn_weights=False)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-5)


@pytest.mark.parametrize("variant", ["sdpa", "linear", "performer"])
def test_encoder_and_decoder_run_with_any_capable_variant(variant: str):
    spec = plugins.get_attention(variant)
    enc = Encoder(2, 16, 2, spec, max_len=32)
    dec = Decoder(1, 16, 2, spec, max_len=32)
    src, tgt = torch.randn(2, 12, 16), torch.randn(2, 9, 16)
    memory = enc(src, key_padding_mask=torch.ones(2, 12, dtype=torch.bool))
    out = dec(tgt, memory)
    assert out.shape == (2, 9, 16) and torch.isfinite(out).all()
    # causal self-attention: position 0 of the decoder output ignores later target positions
    tgt2 = tgt.clone()
    tgt2[:, 1:] += 1.0
    assert torch.allclose(dec(tgt2, memory)[:, 0], out[:, 0], atol=1e-5)


def test_calls_beyond_the_spec_are_refused_with_the_variant_named():
    config = AttentionConfig(num_heads=2, head_dim=8, max_len=16)
    q = torch.randn(1, 2, 6, 8)
    with pytest.raises(PluginError, match="'sdpa' .* weights"):
        build_attention(plugins.get_attention("sdpa"), config)(q, q, q, need_weights=True)
    with pytest.raises(PluginError, match="'local' .* cross \\(query length 6 != key length 4\\)"):
        build_attention(plugins.get_attention("local"), config)(q, q[..., :4, :], q[..., :4, :])
    full = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    with pytest.raises(PluginError, match="'linear' .* arbitrary_mask"):
        build_attention(plugins.get_attention("linear"), config)(q, q, q, attn_mask=full)
    with pytest.raises(PluginError, match="needs max_len"):
        build_attention(plugins.get_attention("linformer"), AttentionConfig(num_heads=2, head_dim=8))
    with pytest.raises(PluginError, match="does not accept a full"):
        MultiheadAttention(16, 2, plugins.get_attention("linear"))(torch.randn(1, 6, 16), attn_mask=full[0, 0])
