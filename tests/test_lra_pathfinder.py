"""LRA Pathfinder: the generator, LRA's released layout (metadata text + PNGs), errors, a smoke run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from attnbench_plugins.tasks.lra_image import pixels
from attnbench_plugins.tasks.lra_pathfinder import TASK, data, generator
from PIL import Image

import attnbench
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute

LEVEL = "curv_baseline"


def write_lra_level(root: Path, side: int = 16, count: int = 10, level: str = LEVEL, seed: int = 0) -> Path:
    """``root/pathfinder<side>/<level>`` as LRA's release lays it out: PNGs and a text metadata/0.npy."""
    rng = np.random.default_rng(seed)
    level_dir = root / f"pathfinder{side}" / level
    (level_dir / "imgs" / "0").mkdir(parents=True)
    (level_dir / "metadata").mkdir()
    lines = []
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(level_dir / "imgs" / "0" / f"sample_{k}.png")
        lines.append(f"imgs/0 sample_{k}.png {k} {k % 2} 1.0 6 2 2 0.5 1 1")
    (level_dir / "metadata" / "0.npy").write_text("\n".join(lines) + "\n")
    return root / f"pathfinder{side}"


# --- the generator --------------------------------------------------------------------------------


def test_lra32_parameters_follow_lra_pathfinder_builder():
    hard = generator.Params.lra32("curv_contour_length_14")
    assert (hard.window, hard.padding, hard.paddle_length, hard.marker_radius, hard.contour_length) == (32, 1, 2, 1.5, 14)
    assert (hard.paddle_thickness, hard.antialias_scale, hard.seed_distance, hard.continuity) == (0.5, 2, 7, 1.0)
    assert (hard.distractor_length, hard.num_distractor_snakes) == (4, 5)  # 14 // 3, 20 // 4
    assert (hard.snake_contrast, hard.paddle_contrast, hard.paddle_margin) == (2.0, 0.75, 1)
    assert [generator.Params.lra32(level).contour_length for level in generator.LEVELS] == [6, 9, 14]
    with pytest.raises(ValueError, match="unknown Pathfinder level"):
        generator.Params.lra32("curv_easy")


def test_generation_is_seeded_and_draws_both_labels():
    params = data.params_for(TASK.profiles["quick"], 16)
    images, labels = generator.generate(24, params, seed=5)
    again, labels_again = generator.generate(24, params, seed=5)
    other, _ = generator.generate(24, params, seed=6)
    assert images.shape == (24, 16, 16) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(images, other)
    assert set(labels.tolist()) == {0, 1}
    # bytescaled as scipy.misc.imsave wrote LRA's PNGs: black background, brightest pixel 255
    assert (images.reshape(24, -1).max(1) == 255).all() and (images == 0).mean() > 0.3


def test_each_target_snake_runs_from_its_origin_tip_to_its_terminal_tip():
    params = generator.Params.lra32("curv_baseline")
    rng = np.random.default_rng(0)
    canvas = generator._Canvas(params, rng)
    snakes = None
    while snakes is None:
        snakes = canvas.two_snakes()
    images, _, origins, terminals = snakes
    for n in range(2):  # each target snake runs from its origin tip to its terminal tip
        assert images[n][tuple(origins[n])] > 0 and images[n][tuple(terminals[n])] > 0
        assert images[1 - n][tuple(origins[n])] == 0 or images[1 - n][tuple(terminals[n])] == 0


def test_generator_command_writes_lra_layout_that_loads_back(tmp_path):
    generator.main(["--output-dir", str(tmp_path / "pathfinder32"), "--levels", LEVEL, "--num-images", "10",
                    "--per-batch", "6"])
    level_dir = tmp_path / "pathfinder32" / LEVEL
    assert sorted(p.name for p in (level_dir / "metadata").iterdir()) == ["0.npy", "1.npy"]
    first = (level_dir / "metadata" / "0.npy").read_text().splitlines()[0].split(" ")
    assert first[:2] == ["imgs/0", "sample_0.png"] and first[3] in ("0", "1") and len(first) == 11
    splits = data.load_dir(tmp_path / "pathfinder32", LEVEL, 32, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 1, 1)
    assert splits.train.tokens.shape == (8, 1024)


# --- LRA's layout ---------------------------------------------------------------------------------


def test_lra_layout_reads_path_from_columns_0_1_and_label_from_column_3(tmp_path):
    root = write_lra_level(tmp_path, count=10)
    splits = data.load_dir(root, LEVEL, 16, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 1, 1)
    tokens = torch.cat([splits.train.tokens, splits.val.tokens, splits.test.tokens])
    labels = torch.cat([splits.train.labels, splits.val.labels, splits.test.labels])
    assert sorted(labels.tolist()) == [0] * 5 + [1] * 5
    sample_3 = np.asarray(Image.open(root / LEVEL / "imgs" / "0" / "sample_3.png")).reshape(-1)
    row = next(i for i in range(10) if tokens[i].numpy().tolist() == sample_3.tolist())
    assert labels[row] == 1  # line 4 says label 1 in column 3
    # the level folder itself, or the folder above pathfinder16, work too
    assert len(data.load_dir(root / LEVEL, LEVEL, 16, seed=0).train) == 8
    assert len(data.load_dir(tmp_path, LEVEL, 16, seed=0).train) == 8


def test_metadata_line_naming_a_missing_image_names_file_line_and_path(tmp_path):
    root = write_lra_level(tmp_path, count=6)
    (root / LEVEL / "imgs" / "0" / "sample_4.png").unlink()
    with pytest.raises(DataError) as info:
        data.load_dir(root, LEVEL, 16, seed=0)
    message = str(info.value)
    assert re.search(r"metadata/0\.npy, line 5: it names imgs/0/sample_4\.png, but .*sample_4\.png does not exist", message)
    assert "\n" not in message


@pytest.mark.parametrize(("line", "message"), [
    ("imgs/0 sample_0.png 0", "line 7: 3 field(s)"),
    ("imgs/0 sample_0.png 0 2 1.0 6 2 2 0.5 1 1", "line 7: label (column 4) '2'; expected 0 or 1"),
])
def test_malformed_metadata_line_is_a_data_error(tmp_path, line, message):
    root = write_lra_level(tmp_path, count=6)
    with open(root / LEVEL / "metadata" / "0.npy", "a") as f:
        f.write(line + "\n")
    with pytest.raises(DataError, match=re.escape(message)):
        data.load_dir(root, LEVEL, 16, seed=0)


def test_corrupt_image_is_a_data_error_naming_it(tmp_path):
    root = write_lra_level(tmp_path, count=6)
    bad = root / LEVEL / "imgs" / "0" / "sample_2.png"
    bad.write_bytes(bad.read_bytes()[:30])  # truncated PNG
    with pytest.raises(DataError, match=r"sample_2\.png is not a readable image .*expected a 16×16 grayscale PNG"):
        data.load_dir(root, LEVEL, 16, seed=0)


def test_wrong_image_size_is_a_data_error_naming_it(tmp_path):
    root = write_lra_level(tmp_path, side=16, count=6)
    with pytest.raises(DataError, match=r"sample_0\.png is 16×16 pixels; expected 32×32.*--set length=256"):
        data.load_dir(root, LEVEL, 32, seed=0)


def test_missing_level_lists_what_was_tried(tmp_path):
    root = write_lra_level(tmp_path, count=6)
    with pytest.raises(DataError, match=r"no Pathfinder metadata folder for level 'curv_contour_length_14'.*expected LRA"):
        data.load_dir(root, "curv_contour_length_14", 16, seed=0)


# --- the task -------------------------------------------------------------------------------------


def test_task_is_registered_with_lra_full_sizes():
    assert plugins.get_task("lra-pathfinder") is TASK
    assert isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
        assert pixels.side_of(profile, TASK.name) ** 2 == profile["length"]
    assert TASK.requires == frozenset()
    full = TASK.profiles["full"]
    assert (full["length"], full["level"], full["contour_length"], full["depth"], full["heads"], full["dim"]) == (
        1024, "curv_contour_length_14", 14, 4, 4, 32)
    assert data.params_for(full, 32) == generator.Params.lra32("curv_contour_length_14")


def test_smoke_pairing_runs_on_generated_and_lra_layout_data(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "cache"))  # generated images are cached there
    row = execute(Pairing(task="lra-pathfinder", variant="sdpa", profile="smoke", seed=0), torch.device("cpu"))
    assert row.status == "ok", row.error
    assert row.metrics["chance"] == 0.5 and 0.0 <= row.metrics["accuracy"] <= 1.0
    root = write_lra_level(tmp_path, side=16, count=12)
    row = execute(Pairing(task="lra-pathfinder", variant="linear", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"))
    assert row.status == "ok", row.error


def test_generated_sets_are_drawn_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    config = TASK.profiles["smoke"]
    data._generated.cache_clear()
    first = data.generated(config, 16)
    cached = list((tmp_path / "cache" / "lra-pathfinder").glob("generated-*.npz"))
    assert len(cached) == 1
    data._generated.cache_clear()

    def no_drawing(*args, **kwargs):
        raise AssertionError("the generator ran although its images were cached")

    monkeypatch.setattr(generator, "generate", no_drawing)
    again = data.generated(config, 16)
    assert torch.equal(first.train.tokens, again.train.tokens) and torch.equal(first.test.labels, again.test.labels)
    cached[0].write_bytes(b"not an npz")  # a damaged cache file is drawn again, not an error
    data._generated.cache_clear()
    with pytest.raises(AssertionError, match="the generator ran"):
        data.generated(config, 16)
    data._generated.cache_clear()


def test_sincos2d_positions_are_fixed_and_learned_positions_stay_the_default():
    spec = plugins.get_attention("sdpa")
    sizes = {"vocab_size": 256, "num_classes": 2, "max_len": 16, "dim": 8, "depth": 1, "heads": 2, "ff_dim": 8}
    learned = pixels.PixelClassifier(spec, **sizes)
    assert learned.positions == "learned" and learned.position_embedding.weight.requires_grad
    fixed = pixels.PixelClassifier(spec, positions="sincos2d", **sizes)
    assert not any("position" in name for name, _ in fixed.named_parameters())
    table = fixed.fixed_positions  # 4 × 4 grid, row-major
    assert table.shape == (16, 8)
    # pixel (1, 1) is nearer its right neighbour (1, 2) than the far corner (3, 3), and the row half ignores columns
    assert (table[5] - table[6]).norm() < (table[5] - table[15]).norm()
    assert torch.equal(table[5, :4], table[6, :4]) and torch.equal(table[5, 4:], table[9, 4:])
    with_cls = pixels.PixelClassifier(spec, positions="sincos2d", pooling="cls", **{**sizes, "max_len": 17})
    assert torch.equal(with_cls.fixed_positions[0], torch.zeros(8)) and torch.equal(with_cls.fixed_positions[1:], table)
    with pytest.raises(pixels.ProfileError, match=r"positions must be one of 'learned', 'sincos2d', got 'rope'"):
        pixels.PixelClassifier(spec, positions="rope", **sizes)
    with pytest.raises(pixels.ProfileError, match=r"divisible by 4, got dim=6; use dim=8"):
        pixels.PixelClassifier(spec, positions="sincos2d", **{**sizes, "dim": 6, "ff_dim": 6})
