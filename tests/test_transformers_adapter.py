"""attnbench variants inside Hugging Face transformers models (random weights from tiny configs, no download)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attnbench import AttentionSpec, plugins
from attnbench.errors import PluginError
from attnbench.nn import transformers as adapter

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel  # noqa: E402

BERT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32, num_labels=3)
GPT2 = dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0)


def bert(implementation: str) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**BERT, attn_implementation=implementation)).eval()


def gpt2(implementation: str) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**GPT2, attn_implementation=implementation)).eval()


def batch(lengths: list[int], length: int = 12, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 64, (len(lengths), length), generator=torch.Generator().manual_seed(1))
    mask = (torch.arange(length) < torch.tensor(lengths)[:, None]).long()
    return ids, (mask.flip(-1) if left else mask)


def keypad_only(name: str) -> AttentionSpec:
    """An exact variant that declares only key padding + causal (no arbitrary masks): exercises the mask split."""
    return dataclasses.replace(plugins.get_attention(name), name=f"{name}-keypad", arbitrary_mask=False)


@pytest.mark.parametrize("variant", ["softmax", "sdpa", "keypad"])
def test_bert_with_padding_matches_its_own_sdpa(variant):
    name = adapter.register(keypad_only("softmax") if variant == "keypad" else variant)
    assert name == f"attnbench:{'softmax-keypad' if variant == 'keypad' else variant}"
    reference, model = bert("sdpa"), bert(name)
    ids, mask = batch([12, 7, 3])
    with torch.no_grad():
        want = reference(ids, attention_mask=mask).logits
        got = model(ids, attention_mask=mask).logits
        unpadded = model(ids[:1]).logits  # no padding: the mask is skipped, the variant runs unmasked
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    torch.testing.assert_close(unpadded, want[:1], atol=1e-4, rtol=0)
    layer = model.bert.encoder.layer[0].attention.self
    assert list(getattr(layer, adapter.CACHE_ATTRIBUTE)) == [name.removeprefix("attnbench:")]  # built once, kept


@pytest.mark.parametrize("variant", ["softmax", "sdpa", "keypad"])
def test_gpt2_causal_matches_its_own_sdpa(variant):
    name = adapter.register(keypad_only("sdpa") if variant == "keypad" else variant)
    reference, model = gpt2("sdpa"), gpt2(name)
    with torch.no_grad():
        for left in (False, True):  # right padding; left padding leaves queries that see no key at all
            ids, mask = batch([12, 9, 4], left=left)
            want = reference(ids, attention_mask=mask).logits
            got = model(ids, attention_mask=mask).logits
            torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-4, rtol=0)
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-4, rtol=0)
        # Cached greedy decoding: one query over a growing cache of keys.
        prompt, prompt_mask = ids[:, :6], mask[:, :6]
        want = reference.generate(prompt, attention_mask=prompt_mask, max_new_tokens=4, do_sample=False)
        got = model.generate(prompt, attention_mask=prompt_mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(got, want)


def test_weights_are_returned_when_the_variant_has_them():
    model = bert(adapter.register("softmax"))
    ids, mask = batch([12, 5])
    attentions = model(ids, attention_mask=mask, output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[0].shape == (2, 4, 12, 12)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(2, 4, 12))
    assert float(attentions[0][1, :, :, 5:].detach().abs().max()) == 0.0  # padded keys get no weight


@pytest.mark.parametrize(("variant", "call", "capability"), [
    ("linformer", "gpt2", "'causal'"),  # no causal: refused in a decoder
    ("sdpa", "weights", "'weights'"),  # output_attentions without attention maps
    ("sdpa-flash", "padded", "'padding_mask'"),  # no masks at all (registered as attnbench:sdpa-FLASH)
])
def test_what_a_variant_cannot_honour_is_refused(variant, call, capability):
    name = adapter.register(variant)
    ids, mask = batch([12, 6])
    with pytest.raises(PluginError, match=rf"attention '{variant}'.*{capability}"), torch.no_grad():
        if call == "gpt2":
            gpt2(name)(ids)
        elif call == "weights":
            bert(name)(ids, attention_mask=mask, output_attentions=True)
        else:
            bert(name)(ids, attention_mask=mask)


def test_a_mask_that_is_not_padding_or_causal_is_refused_without_arbitrary_mask():
    spec = keypad_only("softmax")
    q = k = v = torch.randn(1, 2, 4, 8)
    window = torch.ones(4, 4, dtype=torch.bool).triu(-1).tril()[None, None]  # a sliding window of 2
    module = torch.nn.Module()
    with pytest.raises(PluginError, match="'softmax-keypad'.*neither key padding nor padding with causality.*'arbitrary_mask'"):
        adapter.forward(spec, module, q, k, v, window)
    # The same mask goes straight through to a variant that declares arbitrary masks.
    out, _ = adapter.forward(plugins.get_attention("softmax"), module, q, k, v, window)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=window).transpose(1, 2)
    torch.testing.assert_close(out, want)


def test_scaling_and_grouped_query_heads():
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    q = torch.randn(2, 4, 5, 8)
    k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    out, weights = adapter.forward(plugins.get_attention("softmax"), module, q, k, v, None, scaling=0.5)
    assert weights is None
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), scale=0.5
    ).transpose(1, 2)
    torch.testing.assert_close(out, want)


def test_variant_parameters_train_with_the_model():
    name = adapter.register("talking-heads")
    model = bert(name)
    ids, mask = batch([12, 8])
    adapter.prepare(model, ids, attention_mask=mask)
    added = [n for n, _ in model.named_parameters() if adapter.CACHE_ATTRIBUTE in n]
    assert added and all(".talking-heads." in n for n in added)
    model.train()
    model(ids, attention_mask=mask, labels=torch.tensor([0, 2])).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if adapter.CACHE_ATTRIBUTE in n)


def test_register_all_names_every_variant():
    names = adapter.register_all()
    assert set(names) == {adapter.implementation_name(n) for n in plugins.load().attention.names()}
    assert set(names) <= set(transformers.AttentionInterface._global_mapping)


def test_flash_in_a_variant_name_is_not_mistaken_for_a_flash_kernel():
    assert adapter.implementation_name("sdpa-flash") == "attnbench:sdpa-FLASH"
    assert "flash" not in adapter.register("sdpa-flash")


@pytest.mark.parametrize("variant", ["sdpa", "rope", "linear", "retention", "local", "s4d"])
def test_gpt2_generate_with_the_variants_own_state_equals_generating_without_a_cache(variant):
    """Greedy, 2 layers: stepping each layer's KV cache / window / recurrent state gives the tokens of recomputing."""
    model = gpt2(adapter.register(variant))
    ids, mask = batch([8, 8], length=8)
    cache = adapter.DecodingCache()
    with torch.no_grad():
        got = adapter.generate(model, ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                               eos_token_id=None, cache=cache)
        want = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None,
                              use_cache=False)
    assert got.shape == (2, 18) and torch.equal(got, want)
    assert len(cache.layers) == 2 and all(layer.state is not None for layer in cache.layers)
    assert cache.layers[0].seen == 17 and cache.layers[0].state.position == 17  # prompt + 9 stepped tokens


def test_generate_with_a_non_incremental_variant_recomputes_and_says_why():
    model = gpt2(adapter.register("cosformer"))
    ids, _ = batch([6, 6], length=6)
    with torch.no_grad(), pytest.warns(UserWarning, match="'cosformer' has no incremental form .*recomputes"):
        got = adapter.generate(model, ids, max_new_tokens=4, do_sample=False, eos_token_id=None)
    assert got.shape == (2, 10)


def test_transformers_own_cache_is_refused_for_a_variant_it_would_misread():
    model = gpt2(adapter.register("rope"))
    ids, _ = batch([6, 6], length=6)
    with torch.no_grad(), pytest.raises(PluginError, match="only exact variants read correctly.*generate"):
        model.generate(ids, max_new_tokens=3, do_sample=False, eos_token_id=None)


def test_decoding_state_refuses_padding():
    model = gpt2(adapter.register("linear"))
    ids, mask = batch([6, 4], length=6)
    with torch.no_grad(), pytest.raises(PluginError, match="takes no padding"):
        adapter.generate(model, ids, attention_mask=mask, max_new_tokens=3, do_sample=False, eos_token_id=None)


def test_beam_search_reorders_the_decoding_states():
    model = gpt2(adapter.register("rope"))
    ids, _ = batch([6, 6], length=6)
    with torch.no_grad():
        got = adapter.generate(model, ids, max_new_tokens=6, num_beams=3, do_sample=False, eos_token_id=None)
        want = model.generate(ids, max_new_tokens=6, num_beams=3, do_sample=False, eos_token_id=None, use_cache=False)
    assert torch.equal(got, want)
