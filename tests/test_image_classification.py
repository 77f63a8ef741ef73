"""image-classification: real MNIST by default, CIFAR-10 batches and ImageFolder trees from disk, errors, smoke runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from attnbench_plugins.sources import cifar, image_folder
from attnbench_plugins.tasks.image_classification import TASK, data
from PIL import Image

from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute

SMOKE = TASK.profiles["smoke"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- fixtures written in the real formats ------------------------------------------------------


def cifar_batch(path: Path, n: int, seed: int, *, row: int = 3072, labels: list | None = None) -> np.ndarray:
    """Write one batch as CIFAR-10's python version does: a pickled dict of bytes keys."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, row), dtype=np.uint8)
    batch = {b"batch_label": b"training batch", b"data": pixels,
             b"labels": list(rng.integers(0, 10, n)) if labels is None else labels,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return pixels


def write_cifar(root: Path, n: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in (1, 2):
        cifar_batch(root / f"data_batch_{i}", n, seed=i)
    cifar_batch(root / "test_batch", n // 2, seed=9)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    return root


def write_png(path: Path, size=(12, 10), mode="L", seed=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def write_image_folder(root: Path, *, classes=("cat", "dog", "fish"), per_class=6, mode="RGB", val=False) -> Path:
    splits = [("train", per_class), ("test", 2)] + ([("val", 2)] if val else [])
    for split, count in splits:
        for c, name in enumerate(classes):
            for i in range(count):
                write_png(root / split / name / f"{i:03d}.png", mode=mode, seed=hash((split, c, i)) % 1000)
    return root


# --- default data -------------------------------------------------------------------------------


def test_default_data_is_real_mnist_in_disjoint_seeded_splits():
    cfg = TASK.profiles["quick"]
    images = data.load(None, cfg)
    assert (len(images.train), len(images.val), len(images.test)) == (4000, 500, 500)
    assert images.shape == (1, 28, 28) and images.num_classes == 10
    assert images.train.images.dtype == torch.uint8
    # Real digits: mostly black background, strokes near 255, every class present in the test split.
    assert images.train.images.float().mean() < 60 and images.train.images.max() == 255
    assert set(images.test.labels.tolist()) == set(range(10))
    flat = [s.images.reshape(len(s), -1) for s in (images.train, images.val, images.test)]
    assert len(torch.unique(torch.cat(flat), dim=0)) == 5000  # no digit in two splits
    again = data.load(None, cfg)
    assert torch.equal(again.test.images, images.test.images)


# --- CIFAR-10 python batches --------------------------------------------------------------------


def test_cifar_batches_load_channel_planar_with_class_names(tmp_path: Path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    first = pickle.loads((root / "data_batch_1").read_bytes(), encoding="bytes")
    images = data.load(tmp_path, SMOKE)  # the parent directory works too
    assert images.classes[:3] == ["airplane", "automobile", "bird"] and images.num_classes == 10
    assert len(images.train) + len(images.val) == 80 and len(images.test) == 20
    assert images.shape == (3, 32, 32)
    train, test, _ = cifar.load_cifar10(root)
    assert np.array_equal(train.images[0, 0].reshape(-1), first[b"data"][0, :1024])  # red plane, row-major
    assert np.array_equal(train.images[0, 2].reshape(-1), first[b"data"][0, 2048:])
    assert train.labels[:40].tolist() == [int(x) for x in first[b"labels"]]


def test_cifar_wrong_image_size_names_the_file(tmp_path: Path):
    root = write_cifar(tmp_path)
    cifar_batch(root / "data_batch_2", 5, seed=3, row=32 * 32)  # one channel only
    with pytest.raises(DataError, match=r"data_batch_2: b'data' is uint8 of shape \(5, 1024\); expected uint8 \(N, 3072\)"):
        data.load(root, SMOKE)


def test_cifar_labels_not_matching_the_images_name_the_file(tmp_path: Path):
    root = write_cifar(tmp_path)
    cifar_batch(root / "test_batch", 6, seed=3, labels=[1, 2, 3])
    with pytest.raises(DataError, match=r"test_batch: 3 labels for 6 images; expected one label per image row"):
        data.load(root, SMOKE)


def test_cifar_corrupt_pickle_names_the_file(tmp_path: Path):
    root = write_cifar(tmp_path)
    raw = (root / "data_batch_1").read_bytes()
    (root / "data_batch_1").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"data_batch_1 is not a readable CIFAR python batch") as info:
        data.load(root, SMOKE)
    assert "\n" not in str(info.value)


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path):
    root = write_cifar(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (print, ("ran",))

    (root / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match=r"test_batch .*refusing to load builtins.print"):
        data.load(root, SMOKE)


# --- ImageFolder ---------------------------------------------------------------------------------


def test_image_folder_loads_sorted_classes_and_holds_out_validation(tmp_path: Path):
    root = write_image_folder(tmp_path, classes=("dog", "cat", "fish"))
    images = data.load(root, SMOKE)
    assert images.classes == ["cat", "dog", "fish"]
    assert images.shape == (3, 10, 12)
    assert len(images.train) + len(images.val) == 18 and len(images.test) == 6
    with Image.open(root / "test" / "cat" / "000.png") as png:
        assert np.array_equal(images.test.images[0].permute(1, 2, 0).numpy(), np.asarray(png))
    assert images.test.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_image_folder_uses_its_val_split(tmp_path: Path):
    images = data.load(write_image_folder(tmp_path, mode="L", val=True), SMOKE)
    assert (len(images.train), len(images.val), len(images.test)) == (18, 6, 6)
    assert images.shape == (1, 10, 12)


def test_image_folder_wrong_size_names_the_file_and_expected_size(tmp_path: Path):
    root = write_image_folder(tmp_path)
    write_png(root / "train" / "dog" / "005.png", size=(16, 16), mode="RGB")
    with pytest.raises(DataError, match=r"dog/005.png: 16x16 with 3 channel\(s\) \(RGB\); expected 12x10 with 3 channel"):
        data.load(root, SMOKE)


def test_image_folder_wrong_channels_names_the_file(tmp_path: Path):
    root = write_image_folder(tmp_path)
    write_png(root / "test" / "fish" / "001.png", mode="L")
    with pytest.raises(DataError, match=r"fish/001.png: 12x10 with 1 channel\(s\) \(L\); expected 12x10 with 3 channel"):
        data.load(root, SMOKE)


def test_image_folder_corrupt_image_and_unknown_class_are_named(tmp_path: Path):
    root = write_image_folder(tmp_path)
    (root / "train" / "cat" / "002.png").write_bytes(PNG_SIGNATURE + b"truncated")
    with pytest.raises(DataError, match=r"cat/002.png is not a readable image"):
        data.load(root, SMOKE)
    root = write_image_folder(tmp_path / "other")
    write_png(root / "test" / "zebra" / "000.png", mode="RGB")
    with pytest.raises(DataError, match=r"zebra: class 'zebra' is not among train's classes"):
        data.load(root, SMOKE)


def test_a_directory_in_neither_format_says_what_is_expected(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"holds neither; expected CIFAR-10 python batches .* or an ImageFolder tree"):
        data.load(tmp_path, SMOKE)
    assert image_folder.is_image_folder(tmp_path) is False and cifar.is_cifar_dir(tmp_path) is False


# --- runs through the harness ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "has_map"), [("softmax", True), ("linear", False)])
def test_smoke_run_saves_an_attention_map_only_for_variants_with_weights(tmp_path: Path, variant, has_map):
    row = execute(Pairing(task="image-classification", variant=variant, profile="smoke", seed=0),
                  torch.device("cpu"), workdir=tmp_path)
    assert row.status == "ok", row.error
    assert 0.0 <= row.metrics["accuracy"] <= 1.0 and row.metrics["chance"] == pytest.approx(0.1)
    png = tmp_path / "attention_map.png"
    assert png.exists() is has_map
    assert ("attention_map" in row.artifacts) is has_map
    if has_map:
        assert row.artifacts["attention_map"] == str(png)
        with Image.open(png) as image:
            assert image.format == "PNG"


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["cifar", "image_folder"])
def test_smoke_run_on_data_dir(tmp_path: Path, layout):
    root = write_cifar(tmp_path / "data") if layout == "cifar" else write_image_folder(tmp_path / "data")
    (tmp_path / "work").mkdir()
    row = execute(Pairing(task="image-classification", variant="sdpa", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"), workdir=tmp_path / "work")
    assert row.status == "ok", row.error
    assert row.metrics["chance"] == pytest.approx(0.1 if layout == "cifar" else 1 / 3)


def test_bad_data_dir_stops_the_pairing_before_training(tmp_path: Path):
    root = write_cifar(tmp_path)
    cifar_batch(root / "test_batch", 6, seed=3, labels=[1, 2])
    (tmp_path / "work").mkdir()
    with pytest.raises(DataError, match="test_batch: 2 labels for 6 images"):
        execute(Pairing(task="image-classification", variant="sdpa", profile="smoke", seed=0, data_dir=str(root)),
                torch.device("cpu"), workdir=tmp_path / "work")
    assert not (tmp_path / "work" / "loss-train.json").exists()
