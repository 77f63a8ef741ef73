"""attnbench.nn.attention_maps: weights captured on one forward, PNG overlays, recorded artifacts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from attnbench import plugins
from attnbench.nn import Encoder
from attnbench.nn.attention_maps import capture_attention, record_attention_map, save_attention_overlay
from attnbench.nn.timm import vision_transformer
from attnbench.runner.meter import Meter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_vit(variant: str):
    torch.manual_seed(0)
    return vision_transformer(variant, img_size=16, patch_size=4, in_chans=1, num_classes=3,
                              embed_dim=16, depth=2, num_heads=2).eval()


def test_capture_gets_the_last_layers_weights_and_leaves_the_output_alone():
    model = tiny_vit("softmax")
    images = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = model(images)
        with capture_attention(model) as capture:
            got = model(images)
    assert capture.module is model.blocks[-1].attn.attention
    assert capture.weights.shape == (2, 2, 17, 17)  # (B, heads, 16 patches + class token, same)
    torch.testing.assert_close(capture.weights.sum(-1), torch.ones(2, 2, 17))
    torch.testing.assert_close(got, expected)
    assert not capture.module._forward_hooks and not capture.module._forward_pre_hooks


def test_capture_works_on_attnbench_layers_and_keeps_a_callers_own_request():
    encoder = Encoder(2, 16, 2, plugins.get_attention("softmax"), ff_dim=32).eval()
    with torch.no_grad(), capture_attention(encoder) as capture:
        encoder(torch.randn(1, 5, 16))
    assert capture.weights.shape == (1, 2, 5, 5)
    core = capture.module
    q = torch.randn(1, 2, 5, 8)
    with torch.no_grad(), capture_attention(encoder, module=core) as again:
        out, weights = core(q, q, q, need_weights=True)
    torch.testing.assert_close(again.weights, weights)


@pytest.mark.parametrize("variant", ["linear", "sdpa"])
def test_a_variant_without_weights_is_left_alone(variant):
    model = tiny_vit(variant)
    with torch.no_grad(), capture_attention(model) as capture:
        model(torch.randn(1, 1, 16, 16))
    assert capture.weights is None


def test_disabled_capture_asks_for_nothing():
    model = tiny_vit("softmax")
    with torch.no_grad(), capture_attention(model, enabled=False) as capture:
        model(torch.randn(1, 1, 16, 16))
    assert capture.weights is None


@pytest.mark.parametrize(("image", "query"), [
    (torch.rand(16, 16), "cls"), (torch.rand(1, 16, 16), 3), (np.random.rand(3, 16, 16), "mean"),
])
def test_overlay_is_a_valid_png(tmp_path: Path, image, query):
    weights = torch.softmax(torch.randn(2, 17, 17), -1)
    path = save_attention_overlay(image, weights, (4, 4), tmp_path / "map.png", query_index=query)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] > png.size[1] > 50


def test_overlay_refuses_weights_that_do_not_fit_the_grid(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot cover a 5x5"):
        save_attention_overlay(torch.rand(16, 16), torch.rand(2, 17, 17), (5, 5), tmp_path / "x.png")
    with pytest.raises(ValueError, match="outside 17 queries"):
        save_attention_overlay(torch.rand(16, 16), torch.rand(2, 17, 17), (4, 4), tmp_path / "x.png", query_index=40)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(("variant", "written"), [("softmax", True), ("linear", False)])
def test_record_writes_and_records_only_with_weights(tmp_path: Path, variant, written):
    model = tiny_vit(variant).train()
    ctx = SimpleNamespace(attention=plugins.get_attention(variant), workdir=tmp_path, meter=Meter(torch.device("cpu")))
    image = torch.rand(1, 16, 16)
    path = record_attention_map(ctx, model, lambda: model(image[None]), image, (4, 4))
    assert model.training  # restored
    if written:
        assert path == tmp_path / "attention_map.png"
        assert ctx.meter.artifacts == {"attention_map": str(path)}
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    else:
        assert path is None and ctx.meter.artifacts == {}
        assert not list(tmp_path.iterdir())
