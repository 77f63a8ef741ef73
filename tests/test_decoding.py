"""Incremental decoding (DESIGN.md, "Incremental decoding"): the pieces in attnbench.nn.kv_cache,
the checked step of every variant, stepped layers, and what the user sees when a call is wrong.

The kit's per-variant checks (stepping equals the causal forward at T = 1 and 7, no leaks
between sequences, state growth) run for every registered variant in test_attention_conformance.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli

from attnbench import AttentionConfig, plugins
from attnbench.errors import AttentionShapeError, PluginError
from attnbench.nn import Decoder, MultiheadAttention, build_attention
from attnbench.nn.kv_cache import KVCache, RingBuffer, chunk_causal_mask, select_batch, state_nbytes
from attnbench.testing.attention import softmax_reference


def qkv(b=2, h=2, length=40, d=8, kv_heads=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    kv_heads = kv_heads or h
    return (torch.randn(b, h, length, d, generator=g), torch.randn(b, kv_heads, length, d, generator=g),
            torch.randn(b, kv_heads, length, d, generator=g))


def stepped(module, q, k, v, chunks):
    """Outputs of stepping over consecutive chunks of the given sizes (which cover the sequence)."""
    state = module.init_state(q.shape[0])
    outs, start = [], 0
    for size in chunks:
        part = slice(start, start + size)
        out, state = module.step(q[..., part, :], k[..., part, :], v[..., part, :], state)
        outs.append(out)
        start += size
    assert start == q.shape[-2]
    return torch.cat(outs, dim=-2), state


def build(name, heads=2, dim=8, **options):
    torch.manual_seed(0)
    config = AttentionConfig(num_heads=heads, head_dim=dim, max_len=256, causal=True, options=options)
    spec = plugins.get_attention(name)
    if spec.kv_heads is not None:
        config = AttentionConfig(num_heads=heads, head_dim=dim, max_len=256, causal=True, options=options,
                                 num_kv_heads=spec.kv_heads(config))
    return build_attention(spec, config).eval()


def test_kv_cache_appends_past_its_capacity_and_counts_valid_positions():
    cache = KVCache.empty(2)
    assert cache.nbytes == 0
    k, v = torch.randn(2, 3, 40, 4), torch.randn(2, 3, 40, 4)
    for start in range(0, 40, 5):
        keys, values = cache.append(k[..., start:start + 5, :], v[..., start:start + 5, :])
    assert torch.equal(keys, k) and torch.equal(values, v)
    assert cache.keys.shape[-2] >= 40  # grew by doubling past the initial 16 slots
    assert cache.nbytes == 2 * 2 * 3 * 40 * 4 * 4


def test_ring_buffer_holds_the_last_window_positions_and_its_bytes_stop_growing():
    ring = RingBuffer.empty(1, 4)
    k = torch.arange(10.0).view(1, 1, 10, 1)
    sizes = []
    for t in range(10):
        ring.append(k[..., t:t + 1, :], k[..., t:t + 1, :])
        sizes.append(ring.nbytes)
    assert sorted(ring.positions.tolist()) == [6, 7, 8, 9]
    assert sorted(ring.keys.view(-1).tolist()) == [6.0, 7.0, 8.0, 9.0]
    assert sizes[3:] == [sizes[3]] * 7 and sizes[0] < sizes[3]


def test_chunk_causal_mask_is_aligned_to_the_newest_positions():
    assert chunk_causal_mask(1, 5) is None
    mask = chunk_causal_mask(3, 5)
    assert mask.tolist() == [[True, True, True, False, False], [True, True, True, True, False], [True] * 5]


@pytest.mark.parametrize("window", [1, 5, 8])
def test_local_steps_equal_its_causal_forward_once_the_window_slides(window):
    module = build("local", window=window)
    q, k, v = qkv(length=150)
    want = module(q, k, v, is_causal=True)
    for chunks in ([1] * 150, [7] * 21 + [3], [1, 100, 49]):  # 100 > the step's piece: split inside
        got, state = stepped(module, q, k, v, chunks)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert module.state_nbytes(state) == 2 * 2 * 2 * window * 8 * 4  # the window only


@pytest.mark.parametrize("name", ["sdpa", "rope", "linear", "retention", "s4d", "gqa"])
def test_selecting_sequences_mid_decode_continues_each_one(name):
    """Finished rows leave a greedy decode, beams get reordered: select_batch keeps each sequence's own state."""
    module = build(name, heads=4)
    kv_heads = module.config.num_kv_heads
    q, k, v = qkv(b=3, h=4, length=30, kv_heads=kv_heads)
    want = module(q, k, v, is_causal=True)
    state = module.init_state(3)
    first, state = module.step(q[..., :20, :], k[..., :20, :], v[..., :20, :], state)
    order = torch.tensor([2, 0])
    kept = select_batch(state, order)
    assert kept.batch_size == 2 and kept.position == 20
    rest, _ = module.step(q[order, :, 20:], k[order, :, 20:], v[order, :, 20:], kept)
    torch.testing.assert_close(rest, want[order, :, 20:], atol=1e-5, rtol=0)
    # The original state is untouched by the selection: its batch of 3 still steps.
    again, _ = module.step(q[..., 20:, :], k[..., 20:, :], v[..., 20:, :], state)
    torch.testing.assert_close(again, want[..., 20:, :], atol=1e-5, rtol=0)
    assert state_nbytes(kept) > 0


@pytest.mark.parametrize(("which", "expected"), [
    ("heads", "q (2, 2, T, 8) and k, v (2, 2, T, 8)"),
    ("dim", "got q (2, 2, 1, 4)"),
    ("batch", "the state's batch of 2"),
    ("kv_heads", "k (2, 3, 1, 8)"),
])
def test_step_with_wrong_shapes_is_one_line_naming_them(which, expected):
    module = build("sdpa")
    state = module.init_state(2)
    q, k, v = (t[..., :1, :] for t in qkv())
    if which == "heads":
        q = torch.randn(2, 3, 1, 8)
    elif which == "dim":
        q, k, v = q[..., :4], k[..., :4], v[..., :4]
    elif which == "batch":
        q, k, v = q[:1], k[:1], v[:1]
    else:
        k = torch.randn(2, 3, 1, 8)
    with pytest.raises(AttentionShapeError) as info:
        module.step(q, k, v, state)
    message = str(info.value)
    assert "\n" not in message and "'sdpa'" in message and expected in message, message


def test_grouped_step_wants_its_own_key_value_heads():
    module = build("mqa", heads=4)
    state = module.init_state(2)
    q = torch.randn(2, 4, 1, 8)
    with pytest.raises(AttentionShapeError, match=r"k, v \(2, 1, T, 8\)"):
        module.step(q, q, q, state)


def test_a_variant_without_an_incremental_form_says_why():
    module = build("cosformer")
    with pytest.raises(PluginError, match="cannot decode incrementally: the re-weighting"):
        module.init_state(1)


def test_every_causal_built_in_decodes_or_says_why():
    for spec in plugins.load().attention:
        if spec.causal and not spec.incremental:
            assert len(spec.not_incremental) > 20, spec.name


def test_multihead_attention_step_equals_its_causal_forward():
    torch.manual_seed(0)
    layer = MultiheadAttention(32, 4, plugins.get_attention("gqa"), causal=True).eval()
    x = torch.randn(2, 21, 32)
    want, _ = layer(x)
    state = layer.init_state(2)
    outs = []
    for start in range(0, 21, 4):
        out, state = layer.step(x[:, start:start + 4], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), want, atol=1e-5, rtol=0)
    # gqa's cache holds its key/value heads only: 2 of 4 at this size.
    assert layer.attention.state_nbytes(state) == 2 * 2 * 2 * 21 * 8 * 4


@pytest.mark.parametrize("name", ["sdpa", "rope", "alibi", "linear"])
def test_decoder_step_equals_the_decoder_forward(name):
    torch.manual_seed(0)
    decoder = Decoder(2, 32, 4, plugins.get_attention(name), ff_dim=64, max_len=64).eval()
    x, memory = torch.randn(3, 17, 32), torch.randn(3, 11, 32)
    memory_mask = torch.ones(3, 11, dtype=torch.bool)
    memory_mask[1, 7:] = False
    want = decoder(x, memory, memory_padding_mask=memory_mask)
    state = decoder.init_state(memory, memory_mask)
    outs = []
    for size in (5, 1, 1, 10):
        out, state = decoder.step(x[:, state.position:state.position + size], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), want, atol=1e-5, rtol=0)


def test_sdpa_steps_agree_with_the_written_out_reference():
    module = build("sdpa")
    q, k, v = qkv(length=33)
    got, _ = stepped(module, q, k, v, [1] * 33)
    torch.testing.assert_close(got, softmax_reference(q, k, v, causal=True), atol=1e-5, rtol=0)


def test_list_attention_shows_the_incremental_column():
    result = run_cli("list", "attention", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["sdpa"]["incremental"] is True and rows["retention"]["incremental"] is True
    assert rows["cosformer"]["incremental"] is False and rows["linformer"]["incremental"] is False
