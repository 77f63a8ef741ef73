"""attnbench.flex: FlexAttention score_mod / mask_mod as variants, checked by the kit, a dense reference and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PACKAGES, run_cli

import attnbench
from attnbench.errors import PluginError
from attnbench.nn.attention import build_attention
from attnbench.testing.attention import ATTENTION_CHECKS, NotApplicable


def softcap(score, b, h, q_idx, kv_idx, *, cap=50.0):
    """Gemma 2's soft-capping, as the flexmods package writes it."""
    return cap * torch.tanh(score / cap)


def prefix_lm(b, h, q_idx, kv_idx, *, prefix=16):
    """Prefix-LM mask, as the flexmods package writes it."""
    return (kv_idx < prefix) | (q_idx >= kv_idx)


def head_bias(score, b, h, q_idx, kv_idx, *, num_heads):
    """A per-head distance penalty reading num_heads from the AttentionConfig."""
    return score - (h + 1) / num_heads * (q_idx - kv_idx).abs()


SPECS = {
    "softcap-dense": attnbench.flex.variant("softcap", "s", score_mod=softcap, backend="dense"),
    "softcap-flex": attnbench.flex.variant("softcap", "s", score_mod=softcap, backend="flex"),
    "prefix-lm-dense": attnbench.flex.variant("prefix-lm", "p", mask_mod=prefix_lm, backend="dense"),
    "prefix-lm-flex": attnbench.flex.variant("prefix-lm", "p", mask_mod=prefix_lm, backend="flex"),
    "both-flex": attnbench.flex.variant("both", "b", score_mod=head_bias, mask_mod=prefix_lm, backend="flex"),
    "no-mods": attnbench.flex.variant("plain", "exact softmax through flex", backend="flex"),
}


@pytest.mark.parametrize("check", sorted(ATTENTION_CHECKS))
@pytest.mark.parametrize("key", sorted(SPECS))
def test_helper_variants_pass_every_conformance_check(key: str, check: str):
    try:
        ATTENTION_CHECKS[check](SPECS[key])
    except NotApplicable as exc:
        pytest.skip(str(exc))


def test_spec_declares_what_the_module_honours():
    spec = SPECS["softcap-dense"]
    assert spec.options == {"cap": 50.0, "backend": "dense"}
    assert spec.arbitrary_mask and spec.padding_mask and spec.causal and spec.cross and spec.weights
    assert not spec.exact and SPECS["no-mods"].exact
    assert SPECS["both-flex"].options == {"prefix": 16, "backend": "flex"}  # num_heads comes from the config


def _reference(q, k, v, mask, scale_mod):
    scores = scale_mod(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    return weights @ v, weights


@pytest.mark.parametrize("backend", ["dense", "flex"])
def test_equals_a_hand_written_dense_reference(backend: str):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 20, 16, generator=g) * 4 for _ in range(3))
    padding = torch.ones(2, 1, 1, 20, dtype=torch.bool)
    padding[1, ..., 13:] = False
    i, j = torch.arange(20)[:, None], torch.arange(20)[None, :]
    config = attnbench.AttentionConfig(num_heads=3, head_dim=16, options={"cap": 5.0, "prefix": 6})

    spec = attnbench.flex.variant("softcap", "s", score_mod=softcap, backend=backend)
    module = build_attention(spec, config)
    out = module(q, k, v, attn_mask=padding, is_causal=True)
    assert module.inner.last_backend == backend
    ref, ref_weights = _reference(q, k, v, padding & (j <= i), lambda s: 5.0 * torch.tanh(s / 5.0))
    assert (out - ref).abs().max() < 1e-5
    assert (module(q, k, v, attn_mask=padding, is_causal=True, need_weights=True)[1] - ref_weights).abs().max() < 1e-6
    # the cap really bites: the uncapped softmax differs
    assert (out - _reference(q, k, v, padding & (j <= i), lambda s: s)[0]).abs().max() > 1e-2

    spec = attnbench.flex.variant("both", "b", score_mod=head_bias, mask_mod=prefix_lm, backend=backend)
    out = build_attention(spec, config)(q, k, v, attn_mask=padding)
    slopes = torch.tensor([1 / 3, 2 / 3, 1.0])[:, None, None]
    ref, _ = _reference(q, k, v, padding & ((j < 6) | (i >= j)), lambda s: s - slopes * (i - j).abs())
    assert (out - ref).abs().max() < 1e-5


def test_a_row_with_no_key_left_gives_zeros_not_nan():
    q = torch.randn(1, 1, 4, 8, requires_grad=True)
    module = build_attention(attnbench.flex.variant("first-key", "f", mask_mod=lambda b, h, q_idx, kv_idx: kv_idx == 0),
                             attnbench.AttentionConfig(num_heads=1, head_dim=8))
    padding = torch.tensor([False, True, True, True])[None, None, None, :]
    out, weights = module(q, q, q, attn_mask=padding, need_weights=True)
    assert out.abs().max() == 0 and weights.abs().max() == 0
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_a_score_mod_with_the_wrong_signature_is_an_error_naming_the_variant():
    with pytest.raises(PluginError, match=r"flex variant 'bad-cap': score_mod .*\(score, q_idx\) cannot be called as "
                                          r"score_mod\(score, b, h, q_idx, kv_idx\)"):
        attnbench.flex.variant("bad-cap", "x", score_mod=lambda score, q_idx: score)
    with pytest.raises(PluginError, match="'swapped'.*it looks like a mask_mod: pass it as mask_mod="):
        attnbench.flex.variant("swapped", "x", score_mod=prefix_lm)
    with pytest.raises(PluginError, match="'knob'.*parameter 'cap' without a value; give it with options="):
        attnbench.flex.variant("knob", "x", score_mod=lambda score, b, h, q_idx, kv_idx, *, cap: score)
    with pytest.raises(PluginError, match="'typo'.*unknown backend 'cuda'"):
        attnbench.flex.variant("typo", "x", score_mod=softcap, backend="cuda")


def test_a_mod_that_fails_at_run_time_names_the_variant():
    config = attnbench.AttentionConfig(num_heads=2, head_dim=8)
    q = torch.randn(1, 2, 5, 8)

    def branches(score, b, h, q_idx, kv_idx):
        return score if q_idx > kv_idx else -score  # Python `if` on a tensor: neither flex nor grids can

    module = build_attention(attnbench.flex.variant("branchy", "x", score_mod=branches), config)
    with pytest.raises(PluginError, match="flex variant 'branchy': score_mod failed under torch.vmap.*torch.where"):
        module(q, q, q)
    module = build_attention(attnbench.flex.variant("floaty", "x", mask_mod=lambda b, h, q_idx, kv_idx: q_idx * 1.0), config)
    with pytest.raises(PluginError, match="'floaty': mask_mod returned dtype torch.float32, expected torch.bool"):
        module(q, q, q)


def test_an_explicit_flex_backend_that_fails_is_an_error_not_a_silent_switch_to_dense():
    def reads_item(score, b, h, q_idx, kv_idx):
        return score * (1.0 + 0.0 * kv_idx.max().item())  # .item() cannot run element-wise under vmap

    config = attnbench.AttentionConfig(num_heads=2, head_dim=8)
    q = torch.randn(2, 2, 6, 8)
    module = build_attention(attnbench.flex.variant("itemy", "x", score_mod=reads_item, backend="flex"), config)
    with pytest.raises(PluginError, match="flex variant 'itemy': score_mod failed under torch.vmap, .*no \\.item\\(\\)"):
        module(q, q, q, is_causal=True)
    assert module.inner.fallback_reason is None


# -- element-wise semantics ---------------------------------------------------------------------------------

ROPE_Q, ROPE_K = torch.randn(2, 20, 4), torch.randn(1, 20, 4)
INTERVALS = torch.tensor([[0, 10], [5, 20]])


def latent_rope(score, b, h, q_idx, kv_idx):
    """attention-gym's latent_attention.py shape: torch.dot of two gathered rows (element-wise only)."""
    return score + torch.dot(ROPE_Q[h, q_idx], ROPE_K[h // 2, kv_idx])


def flamingo(b, h, q_idx, kv_idx):
    """attention-gym's flamingo.py shape: interval[0] of a gathered pair (element-wise only)."""
    interval = INTERVALS[kv_idx // 10]
    return (q_idx >= interval[0]) & (q_idx < interval[1])


@pytest.mark.parametrize("backend", ["dense", "flex"])
def test_mods_that_only_work_element_wise_run_and_equal_the_element_wise_reference(backend: str):
    from attnbench.flex.reference import elementwise_reference

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 20, 8, generator=g) for _ in range(3))
    spec = attnbench.flex.variant("mla-flamingo", "x", score_mod=latent_rope, mask_mod=flamingo, backend=backend)
    module = build_attention(spec, attnbench.AttentionConfig(num_heads=2, head_dim=8))
    out, weights = module(q, k, v, need_weights=True)
    want, want_weights = elementwise_reference(module.inner.bound_mods(2, 20, 20, q.device), q, k, v)
    assert (module(q, k, v) - want).abs().max() < 1e-5 and module.inner.last_backend == backend
    assert (out - want).abs().max() < 1e-5 and (weights - want_weights).abs().max() < 1e-6
    assert weights[..., :5, 10:].abs().max() == 0 and weights[..., 10:, :10].abs().max() == 0  # outside the intervals


def test_an_out_of_range_index_names_the_tensor_and_the_index():
    table = torch.zeros(16)

    def by_position(score, b, h, q_idx, kv_idx):
        return score + table[q_idx]

    module = build_attention(attnbench.flex.variant("short-table", "x", score_mod=by_position),
                             attnbench.AttentionConfig(num_heads=2, head_dim=8))
    q = torch.randn(1, 2, 20, 8)
    with pytest.raises(PluginError, match=r"'short-table': score_mod failed: it indexes captured 'table' "
                                          r"\(shape \(16,\)\) with index 19 on dim 0 at b=0, h=1, q_idx=19"):
        module(q, q, q)
    assert module(q[..., :16, :], q[..., :16, :], q[..., :16, :]).shape == (1, 2, 16, 8)


# -- captured tensors belong to the module -----------------------------------------------------------------

BIAS = torch.nn.Parameter(torch.zeros(2, 8))
DISTANCE = torch.arange(8)


def learnable_bias(score, b, h, q_idx, kv_idx):
    return score + BIAS[h, DISTANCE[(q_idx - kv_idx).abs() % 8]]


@pytest.mark.parametrize("backend", ["dense", "flex"])
def test_a_captured_parameter_is_registered_per_module_counted_moved_and_trained(backend: str):
    spec = attnbench.flex.variant("graph-bias", "x", score_mod=learnable_bias, backend=backend)
    config = attnbench.AttentionConfig(num_heads=2, head_dim=8)
    module, other = build_attention(spec, config), build_attention(spec, config)
    params = dict(module.named_parameters())
    assert [tuple(p.shape) for p in params.values()] == [(2, 8)]
    assert next(iter(params.values())) is not BIAS and next(iter(params.values())) is not next(other.parameters())
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    q = torch.randn(2, 2, 10, 8)
    module(q, q, q).square().mean().backward()
    optimizer.step()
    assert next(module.parameters()).abs().sum() > 0  # the module's own table trained ...
    assert BIAS.abs().sum() == 0 and next(other.parameters()).abs().sum() == 0  # ... and nobody else's
    moved = module.double()  # buffers and parameters follow the module; the mod reads the moved ones
    assert moved(q.double(), q.double(), q.double()).dtype == torch.float64
    assert dict(moved.named_buffers())["inner.mod_DISTANCE"].dtype == torch.int64


def test_a_captured_tensor_computed_from_a_parameter_is_refused_with_the_fix():
    table = BIAS * 2.0

    def derived(score, b, h, q_idx, kv_idx):
        return score + table[h, 0]

    with pytest.raises(PluginError, match="'derived': score_mod captures 'table', a tensor computed from a parameter.*"
                                          "Capture the nn.Parameter itself"):
        build_attention(attnbench.flex.variant("derived", "x", score_mod=derived),
                        attnbench.AttentionConfig(num_heads=2, head_dim=8))


# -- per-batch context -------------------------------------------------------------------------------------

def same_document(b, h, q_idx, kv_idx, *, document_ids):
    return document_ids[b, q_idx] == document_ids[b, kv_idx]


def test_per_batch_context_reaches_the_mod_at_any_batch_size_and_is_required_when_no_default():
    spec = attnbench.flex.variant("docs", "x", mask_mod=same_document, context={"document_ids": None})
    module = build_attention(spec, attnbench.AttentionConfig(num_heads=2, head_dim=8))
    for batch in (3, 5):  # training and evaluation batches differ in size
        ids = torch.tensor([0, 0, 0, 1, 1, 2]).expand(batch, 6)
        q = torch.randn(batch, 2, 6, 8)
        with attnbench.flex.batch_context(document_ids=ids):
            _, weights = module(q, q, q, need_weights=True)
        assert weights[:, :, :3, 3:].abs().max() == 0 and weights[:, :, 3:5, 3:5].sum(-1).min() > 0.999
    with pytest.raises(PluginError, match="'docs' reads per-batch 'document_ids', which this task does not provide; "
                                          r"a task provides it by running the model inside attnbench.flex.batch_context"):
        module(q, q, q)


def test_a_mod_reads_the_real_lengths_of_the_call():
    def last_key_only(b, h, q_idx, kv_idx, *, kv_len):
        return kv_idx == kv_len - 1

    module = build_attention(attnbench.flex.variant("last", "x", mask_mod=last_key_only),
                             attnbench.AttentionConfig(num_heads=1, head_dim=4))
    for length in (5, 9):
        v = torch.randn(2, 1, length, 4)
        assert torch.allclose(module(v, v, v), v[..., -1:, :].expand_as(v))


# -- factories and options ---------------------------------------------------------------------------------

def generate_sliding_window(window_size: int):
    """attention-gym's factory shape: a closure over the window."""

    def sliding_window(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx <= window_size) & (q_idx >= kv_idx)

    return sliding_window


def generate_alibi_bias(H: int):  # noqa: N803 - attention-gym's name
    def alibi_mod(score, b, h, q_idx, kv_idx):
        return score + (kv_idx - q_idx) * torch.exp2(-((h + 1) * 8.0 / H))

    return alibi_mod


def test_factory_parameters_are_options_and_head_count_comes_from_the_config():
    window = attnbench.flex.variant("window", "x", factory=generate_sliding_window, options={"window_size": 8})
    assert window.options == {"window_size": 8, "backend": "auto"}
    q = torch.randn(1, 1, 12, 4)
    for size in (8, 2):
        config = attnbench.AttentionConfig(num_heads=1, head_dim=4, options={"window_size": size})
        _, weights = build_attention(window, config)(q, q, q, need_weights=True)
        assert weights[0, 0, 11, : 11 - size].abs().max() == 0 and weights[0, 0, 11, 11 - size] > 0
    alibi = attnbench.flex.variant("alibi", "x", factory=generate_alibi_bias, from_config={"H": "num_heads"})
    assert alibi.options == {"backend": "auto"}
    module = build_attention(alibi, attnbench.AttentionConfig(num_heads=4, head_dim=4))
    scores = module.inner.bound_mods(1, 3, 3, q.device)["score_mod"](torch.tensor(0.0), *map(torch.tensor, (0, 3, 2, 0)))
    assert scores.item() == pytest.approx(-2.0 * 2 ** -8.0)  # the 4th of 4 heads: slope 2^-8


def test_tensor_options_are_shown_by_shape_and_unknown_options_are_refused():
    def gather_bias(score, b, h, q_idx, kv_idx, *, table=torch.zeros(4, 32)):
        return score + table[h, q_idx]

    spec = attnbench.flex.variant("tabled", "x", score_mod=gather_bias)
    assert str(spec.options["table"]) == "Tensor[4, 32] float32"
    with pytest.raises(PluginError, match="'typo-opt': options 'windw' are not parameters of its mods"):
        attnbench.flex.variant("typo-opt", "x", factory=generate_sliding_window, options={"window_size": 2, "windw": 3})
    with pytest.raises(PluginError, match="'no-window': factory generate_sliding_window has parameter 'window_size' "
                                          "without a value"):
        attnbench.flex.variant("no-window", "x", factory=generate_sliding_window)


def test_an_output_mod_post_processes_the_output_on_every_backend():
    import torch.nn.functional as F

    def gelu_scores(score, b, h, q_idx, kv_idx):
        return torch.log(F.gelu(score) + 1.0)

    def undo_softmax(out, lse, v_sum, offset=1.0):
        return out * lse.exp().unsqueeze(-1) - offset * v_sum

    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 2, 10, 8, generator=g) for _ in range(3))
    padding = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    padding[1, ..., 7:] = False
    scores = F.gelu(q @ k.transpose(-2, -1) / 8 ** 0.5).masked_fill(~padding, 0.0)
    want = scores @ v  # GELU attention, written out
    for backend in ("dense", "flex"):
        spec = attnbench.flex.variant("gelu", "x", score_mod=gelu_scores, output_mod=undo_softmax, backend=backend)
        assert not spec.weights and spec.options == {"offset": 1.0, "backend": backend}
        out = build_attention(spec, attnbench.AttentionConfig(num_heads=2, head_dim=8))(q, k, v, attn_mask=padding)
        assert (out - want).abs().max() < 1e-4, backend


# -- measurement -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant_kwargs", [{"mask_mod": prefix_lm}, {"score_mod": latent_rope}],
                         ids=["mask_mod", "score_mod-with-dot"])
def test_a_flex_row_measures_flex_its_flops_latency_and_memory(variant_kwargs):
    from attnbench.nn import SequenceClassifier
    from attnbench.runner.meter import Meter

    tokens = torch.randint(1, 50, (4, 20))
    mask = torch.ones(4, 20, dtype=torch.bool)
    figures, calls = {}, {}
    for backend in ("dense", "flex"):
        spec = attnbench.flex.variant("measured", "x", backend=backend, **variant_kwargs)
        torch.manual_seed(0)
        model = SequenceClassifier(spec, vocab_size=50, num_classes=3, max_len=20, dim=16, depth=1, heads=2, ff_dim=32)
        meter = Meter(torch.device("cpu"), latency_repeats=2)
        meter.model(model, tokens, mask)
        figures[backend] = meter.figures()
        calls[backend] = model.encoder.layers[0].attn.attention.inner.backend_calls
    # every measured call (FLOPs, warm-up, latency, training-step memory) took the backend the row names
    assert set(calls["flex"]) == {"flex"} and calls["flex"]["flex"] >= 5 and set(calls["dense"]) == {"dense"}
    # FLOPs of flex counted outside the counter: its two matrix products plus the mod's own, equal to dense's
    assert figures["flex"]["flops_per_example"] == figures["dense"]["flops_per_example"] > 0
    assert figures["flex"]["step_peak_mb"] > 0 and figures["flex"]["infer_ms_per_batch"] > 0


@pytest.fixture(scope="module")
def flexmods_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugin_packages/attnbench-flexmods and attnbench-gymmods, installed by pip into a folder (no network)."""
    root = tmp_path_factory.mktemp("flexmods")
    sources = []
    for name in ("attnbench-flexmods", "attnbench-gymmods"):
        sources.append(root / name)
        shutil.copytree(PACKAGES / name, sources[-1])  # builds leave files behind; keep tests/ clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(root / "site"), *map(str, sources)], check=True, capture_output=True, text=True)
    return root / "site"


def _entries(store: Path, site: Path) -> dict[tuple[str, str], dict]:
    report = run_cli("report", "--store", str(store), "--format", "json", site=site)
    assert report.returncode == 0, report.stderr
    return {(t["task"], e["variant"]): e for t in json.loads(report.stdout)["tasks"] for e in t["entries"]}


@pytest.mark.slow
def test_attention_gym_style_variants_run_listops_and_text_classification_to_ok(flexmods_site: Path, tmp_path: Path):
    listed = run_cli("list", "attention", site=flexmods_site)
    assert listed.returncode == 0 and "window_size=8" in listed.stdout and "image_token_length=16" in listed.stdout
    store = tmp_path / "gym.sqlite"
    # Two training steps are enough to prove the wiring; the timeout is for a loaded CI machine.
    ran = run_cli("run", "--tasks", "listops,text-classification", "--variants", "gym-*,softcap", "--profile", "smoke",
                  "--set", "steps=2", "--variant-option", "softcap.cap=5", "--variant-option",
                  "gym-sliding-window.window_size=4", "--jobs", "2", "--store", str(store), site=flexmods_site,
                  cwd=tmp_path, timeout=900)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    entries = _entries(store, flexmods_site)
    gym = ("gym-document", "gym-flamingo", "gym-latent-rope", "gym-graphormer", "gym-sliding-window[window_size=4]",
           "gym-alibi", "gym-gelu", "softcap[cap=5.0]")
    statuses = {key: e["status"] for key, e in entries.items()}
    assert statuses == {(task, v): "ok" for task in ("listops", "text-classification") for v in gym}, statuses
    # Graphormer's learnable table belongs to the model: one (2 heads × 10 buckets) table in smoke ListOps' one layer
    assert entries["listops", "gym-graphormer"]["cost"]["params"] == (
        entries["listops", "gym-alibi"]["cost"]["params"] + 2 * 10)


@pytest.mark.slow
def test_packed_listops_hands_document_ids_to_a_flex_row_that_measures_flex(flexmods_site: Path, tmp_path: Path):
    store = tmp_path / "packed.sqlite"
    ran = run_cli("run", "--tasks", "listops", "--variants", "gym-document", "--profile", "smoke", "--set", "pack=2",
                  "--set", "steps=2", "--variant-option", "gym-document.backend=flex", "--store", str(store),
                  site=flexmods_site, cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    (entry,) = _entries(store, flexmods_site).values()
    assert entry["status"] == "ok" and 0.0 <= entry["metrics"]["accuracy"] <= 1.0
    assert entry["cost"]["flops_per_example"] > 0 and entry["cost"]["step_peak_mb"] > 0


@pytest.mark.slow
def test_the_packages_pass_attnbench_conformance_kit_with_pytest(flexmods_site: Path):
    """The packages' own tests subclass AttentionConformance, as a third party's would; the kit's
    `mods` check compares every variant with the element-wise reference on dense and flex."""
    dirs = [str(PACKAGES / name / "tests") for name in ("attnbench-flexmods", "attnbench-gymmods")]
    env = {**os.environ, "PYTHONPATH": str(flexmods_site), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--rootdir",
                             str(PACKAGES), *dirs], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    checked = {line.rsplit("[", 1)[-1].rstrip("]") for line in result.stdout.splitlines()
               if line.startswith("PASSED") and "::test_mods[" in line}
    assert checked == {"softcap", "prefix-lm", "gym-document", "gym-flamingo", "gym-latent-rope", "gym-graphormer",
                       "gym-sliding-window", "gym-alibi", "gym-gelu"}, result.stdout[-3000:]
