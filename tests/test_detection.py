"""The detection task: composed digit scenes, COCO folders and their errors, the set loss, a smoke run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from attnbench_plugins.sources.digits import mnist_5k
from attnbench_plugins.tasks.detection import TASK, coco, scenes
from attnbench_plugins.tasks.detection.loss import match, set_loss
from attnbench_plugins.tasks.detection.task import prior_baseline
from PIL import Image

import attnbench
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute

SMOKE = TASK.profiles["smoke"]

# --- a COCO folder, written as COCO 2017 lays it out ---------------------------------------------

CATEGORIES = [{"id": 3, "name": "car", "supercategory": "vehicle"}, {"id": 18, "name": "dog", "supercategory": "animal"}]


def coco_json(images: list[tuple[int, str, int, int]], annotations: list[tuple[int, int, int, list[float]]], **extra) -> dict:
    return {
        "info": {"description": "fixture"}, "licenses": [],
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": [
            {"id": a, "image_id": i, "category_id": c, "bbox": box, "area": box[2] * box[3], "iscrowd": 0, "segmentation": []}
            for a, i, c, box in annotations
        ],
        "categories": CATEGORIES, **extra,
    }


def write_coco(root: Path, *, train: dict | None = None, val: dict | None = None) -> Path:
    """Two train images (one with a crowd box), one val image; sizes 40×30 and 20×20."""
    rng = np.random.default_rng(0)
    if train is None:
        train = coco_json(
            [(1, "000000000001.jpg", 40, 30), (2, "000000000002.jpg", 20, 20)],
            [(10, 1, 3, [4.0, 3.0, 20.0, 12.0]), (11, 1, 18, [0.0, 0.0, 40.0, 30.0]), (12, 2, 18, [5.0, 5.0, 10.0, 10.0])],
        )
        train["annotations"].append({"id": 13, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1})
    val = val or coco_json([(7, "000000000007.jpg", 20, 20)], [(20, 7, 3, [2.0, 2.0, 8.0, 8.0])])
    (root / "annotations").mkdir(parents=True)
    for split, dataset in (("train2017", train), ("val2017", val)):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(dataset))
        (root / split).mkdir()
        for image in dataset["images"]:
            pixels = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / image["file_name"])
    return root


def test_coco_folder_is_read_resized_and_indexed(tmp_path):
    splits = coco.load_dir(write_coco(tmp_path / "coco"), {**SMOKE, "canvas": 32})
    assert splits.classes == ("car", "dog") and splits.channels == 3
    assert splits.train.images.shape == (2, 3, 32, 32) and splits.test.images.shape == (1, 3, 32, 32)
    # Image 1 is 40×30: x scales by 32/40, y by 32/30; category 3 -> class 0, 18 -> class 1.
    sx, sy = 32 / 40, 32 / 30
    expected = torch.tensor([[4 * sx, 3 * sy, 24 * sx, 15 * sy], [0, 0, 32, 32]])
    assert torch.allclose(splits.train.boxes[0], expected)
    assert splits.train.labels[0].tolist() == [0, 1]
    assert splits.train.labels[1].tolist() == [1]  # the crowd box is left out
    assert torch.allclose(splits.test.boxes[0], torch.tensor([[3.2, 3.2, 16.0, 16.0]]))


def test_coco_limits_images_to_the_profile(tmp_path):
    splits = coco.load_dir(write_coco(tmp_path / "coco"), {**SMOKE, "n_train": 1})
    assert len(splits.train) == 1 and splits.train.labels[0].tolist() == [0, 1]


def _bad_train(tmp_path, dataset) -> Path:
    return write_coco(tmp_path / "coco", train=dataset)


@pytest.mark.parametrize(("box", "what"), [([30.0, 3.0, 20.0, 12.0], "x + w"), ([4.0, -5.0, 10.0, 10.0], "y < 0")])
def test_box_outside_its_image_names_file_annotation_and_image(tmp_path, box, what):
    dataset = coco_json([(1, "000000000001.jpg", 40, 30)], [(10, 1, 3, [4.0, 3.0, 20.0, 12.0]), (99, 1, 18, box)])
    with pytest.raises(DataError) as info:
        coco.load_dir(_bad_train(tmp_path, dataset), SMOKE)
    message = str(info.value)
    assert "instances_train2017.json" in message and "annotation 99" in message
    assert "image 1 (000000000001.jpg, 40×30)" in message and "expected a box inside the image" in message
    assert "\n" not in message


def test_invalid_json_names_file_and_line(tmp_path):
    root = write_coco(tmp_path / "coco")
    (root / "annotations" / "instances_val2017.json").write_text('{\n  "images": [\n    {"id": 1,,}\n  ]\n}')
    with pytest.raises(DataError, match=r"instances_val2017\.json, line 3: not valid JSON .*expected a COCO instances json"):
        coco.load_dir(root, SMOKE)


@pytest.mark.parametrize(("drop", "message"), [
    ("annotations", "lacks the list 'annotations'"),
    ("bbox", r"annotations\[0\] lacks bbox; expected COCO's id, image_id, category_id, bbox"),
    ("file_name", r"images\[0\] lacks file_name"),
])
def test_missing_keys_are_named(tmp_path, drop, message):
    dataset = coco_json([(1, "000000000001.jpg", 40, 30)], [(10, 1, 3, [4.0, 3.0, 20.0, 12.0])])
    if drop == "annotations":
        del dataset["annotations"]
    elif drop == "bbox":
        del dataset["annotations"][0]["bbox"]
    root = tmp_path / "coco"
    if drop == "file_name":
        root = write_coco(root)
        del dataset["images"][0]["file_name"]
        (root / "annotations" / "instances_train2017.json").write_text(json.dumps(dataset))
    else:
        root = _bad_train(tmp_path, dataset)
    with pytest.raises(DataError, match=message) as info:
        coco.load_dir(root, SMOKE)
    assert "instances_train2017.json" in str(info.value)


def test_missing_or_wrong_sized_image_is_named(tmp_path):
    root = write_coco(tmp_path / "coco")
    (root / "val2017" / "000000000007.jpg").unlink()
    missing = r"instances_val2017\.json: image 7 is 000000000007\.jpg, but .*val2017/000000000007\.jpg does not exist"
    with pytest.raises(DataError, match=missing):
        coco.load_dir(root, SMOKE)
    Image.new("RGB", (21, 20)).save(root / "val2017" / "000000000007.jpg")
    with pytest.raises(DataError, match=r"000000000007\.jpg: image is 21×20 but instances_val2017\.json says 20×20"):
        coco.load_dir(root, SMOKE)


def test_missing_annotation_files_are_named(tmp_path):
    root = write_coco(tmp_path / "coco")
    (root / "annotations" / "instances_train2017.json").unlink()
    with pytest.raises(DataError, match=r"lacks a train annotation file .*annotations/instances_train\*\.json"):
        coco.load_dir(root, SMOKE)
    with pytest.raises(DataError, match="does not exist or is not a directory; expected COCO's"):
        coco.load_dir(tmp_path / "nowhere", SMOKE)


# --- the composed default ---------------------------------------------------------------------------


def test_default_scenes_have_the_claimed_sizes_and_exact_boxes():
    splits = scenes.composed(SMOKE)
    assert (len(splits.train), len(splits.test)) == (SMOKE["n_train"], SMOKE["n_test"])
    assert splits.classes == tuple("0123456789") and splits.channels == 1
    canvas = SMOKE["canvas"]
    assert splits.train.images.shape[-2:] == (canvas, canvas)
    singles = 0
    for image, boxes, labels in zip(splits.train.images, splits.train.boxes, splits.train.labels, strict=True):
        assert 1 <= len(boxes) <= SMOKE["max_digits"] and len(labels) == len(boxes)
        assert bool(((boxes >= 0) & (boxes <= canvas)).all()) and bool((boxes[:, 2:] > boxes[:, :2]).all())
        if len(boxes) == 1:  # one digit: its box is the tight box of every lit pixel
            rows, cols = torch.nonzero(image[0], as_tuple=True)
            assert boxes[0].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            singles += 1
    assert singles > 10
    assert set(torch.cat(splits.train.labels).tolist()) == set(range(10))


def test_scenes_use_real_digits_disjoint_between_splits_and_are_seeded():
    digits, labels = mnist_5k()
    train, test = scenes.digit_pools(SMOKE["data_seed"], len(digits))
    assert (len(train), len(test)) == (4000, 1000) and not set(train.tolist()) & set(test.tolist())
    # A scene of one unscaled digit is that MNIST digit, pasted with its label.
    split = scenes.compose(digits[:1], labels[:1], 1, np.random.default_rng(0), canvas=28, max_digits=1,
                           min_scale=1.0, max_scale=1.0, max_overlap=0.3)
    assert torch.equal(split.images[0, 0], torch.tensor(digits[0])) and split.labels[0].tolist() == [int(labels[0])]
    again = [scenes.compose(digits[:50], labels[:50], 20, np.random.default_rng(5), canvas=48, max_digits=3,
                            min_scale=0.3, max_scale=0.6, max_overlap=0.3) for _ in range(2)]
    assert torch.equal(again[0].images, again[1].images)
    assert all(torch.equal(a, b) for a, b in zip(again[0].boxes, again[1].boxes, strict=True))


# --- the set loss and the baseline ----------------------------------------------------------------


def test_hungarian_matching_finds_the_right_queries_and_exact_predictions_cost_little():
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.7, 0.1, 0.3]]])
    target = [{"boxes": torch.tensor([[0.8, 0.7, 0.1, 0.3], [0.2, 0.2, 0.1, 0.1]]), "labels": torch.tensor([4, 1])}]
    logits = torch.full((1, 3, 11), -10.0)
    logits[0, 0, 1] = logits[0, 2, 4] = logits[0, 1, 10] = 10.0  # query 1 says "no object"
    rows, cols = match(logits, boxes, target)[0]
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 2: 0}
    exact = set_loss(logits, boxes, target)
    assert float(exact) < 1e-3
    assert float(set_loss(logits, boxes.flip(1), target)) > 1.0


def test_prior_baseline_is_near_zero_map():
    result = prior_baseline(scenes.composed(SMOKE))
    assert 0.0 <= result["prior_baseline"] < 0.05 and 0.0 <= result["prior_baseline_50"] < 0.1


# --- the task -------------------------------------------------------------------------------------


def test_task_is_registered_and_profiles_are_json():
    assert plugins.get_task("detection") is TASK
    assert isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    assert TASK.metric.name == "map" and TASK.metric.baseline == "prior_baseline" and TASK.requires == frozenset({"cross"})
    assert "composed" in TASK.description.lower()


def test_smoke_run_through_the_harness(tmp_path):
    row = execute(Pairing(task="detection", variant="sdpa", profile="smoke", seed=0), torch.device("cpu"), workdir=tmp_path)
    assert row.status == "ok", row.error
    assert {"map", "map_50", "proposal_map", "prior_baseline", "final_loss"} <= set(row.metrics)
    assert TASK.metric.in_range(row.metrics["map"]) and math.isfinite(row.metrics["final_loss"])
    assert row.efficiency["flops_per_example"] > 0 and row.efficiency["params"] > 0


def test_smoke_run_on_coco_with_a_weights_variant_saves_the_attention_map(tmp_path):
    root = write_coco(tmp_path / "coco")
    work = tmp_path / "work"
    work.mkdir()
    row = execute(Pairing(task="detection", variant="softmax", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"), workdir=work)
    assert row.status == "ok", row.error
    path = Path(row.artifacts["attention_map"])
    assert path.parent == work and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unsupported_variant_is_a_reasoned_blank():
    row = execute(Pairing(task="detection", variant="local", profile="smoke", seed=0), torch.device("cpu"))
    assert row.status == "unsupported" and re.search(r"cross", row.error)
