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


@pytest.fixture(scope="module")
def flexmods_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugin_packages/attnbench-flexmods, installed by pip into a folder (no network)."""
    root = tmp_path_factory.mktemp("flexmods")
    shutil.copytree(PACKAGES / "attnbench-flexmods", root / "src")  # builds leave files behind; keep tests/ clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(root / "site"), str(root / "src")], check=True, capture_output=True, text=True)
    return root / "site"


def test_third_party_flex_variants_run_listops_through_attnbench_run(flexmods_site: Path, tmp_path: Path):
    store = tmp_path / "flex.sqlite"
    # One pairing proves the path (prefix-lm is checked by the package's own conformance run below);
    # the generous timeout is for a loaded CI machine, the pairing takes seconds on an idle one.
    ran = run_cli("run", "--tasks", "listops", "--variants", "softcap", "--profile", "smoke",
                  "--variant-option", "softcap.cap=5", "--store", str(store), site=flexmods_site, cwd=tmp_path,
                  env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = run_cli("report", "--store", str(store), "--format", "json", site=flexmods_site)
    assert report.returncode == 0, report.stderr
    entries = {e["variant"]: e for t in json.loads(report.stdout)["tasks"] for e in t["entries"]}
    # the option is part of the variant's name in the table, so it never ranks as the default softcap
    assert {name: e["status"] for name, e in entries.items()} == {"softcap[cap=5.0]": "ok"}, report.stdout
    assert 0.0 <= entries["softcap[cap=5.0]"]["metrics"]["accuracy"] <= 1.0


def test_the_package_passes_attnbench_conformance_kit_with_pytest(flexmods_site: Path):
    """The flexmods package's own tests subclass AttentionConformance, as a third party's would."""
    tests_dir = PACKAGES / "attnbench-flexmods" / "tests"
    env = {**os.environ, "PYTHONPATH": str(flexmods_site), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                             str(tests_dir), str(tests_dir)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
