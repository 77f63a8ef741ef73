"""medical-imaging: the CT simulator, MedMNIST .npz files from disk, errors, AUC, and smoke runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from attnbench_plugins.tasks.medical_imaging import TASK, data, simulator
from attnbench_plugins.tasks.medical_imaging.task import auroc
from PIL import Image

from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute

SMOKE = TASK.profiles["smoke"]


def medmnist_arrays(n=(12, 4, 6), side=8, rgb=False, classes=2, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        shape = (count, side, side, 3) if rgb else (count, side, side)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % classes).astype(np.uint8)[:, None]
    return arrays


def write_npz(root: Path, name="pneumoniamnist.npz", **kwargs) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    arrays = kwargs.pop("arrays", None) or medmnist_arrays(**kwargs)
    np.savez(root / name, **arrays)
    return root


# --- the simulator ---------------------------------------------------------------------------------


def test_simulated_set_has_medmnist_layout_and_is_deterministic():
    arrays = simulator.simulate(5, (12, 4, 8), size=32, angles=24)
    assert sorted(arrays) == sorted(data.KEYS)
    assert arrays["train_images"].shape == (12, 32, 32) and arrays["train_images"].dtype == np.uint8
    assert arrays["test_labels"].shape == (8, 1)
    simulator.simulate.cache_clear()
    again = simulator.simulate(5, (12, 4, 8), size=32, angles=24)
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    other = simulator.simulate(6, (12, 4, 8), size=32, angles=24)
    assert not np.array_equal(arrays["train_images"], other["train_images"])


def test_quick_profile_draws_both_classes_in_about_equal_numbers():
    cfg = TASK.profiles["quick"]
    labels = np.concatenate([simulator.slice_(1, 2, i, 16, 8, 1e4)[1:] for i in range(200)])
    assert 0.4 < labels.mean() < 0.6
    assert cfg["n_train"] + cfg["n_val"] + cfg["n_test"] <= 2000


def test_a_lesion_is_a_small_local_change_to_the_same_anatomy():
    def draw(lesion):
        rng = np.random.default_rng([3, 0, 7])
        rng.uniform()  # the label draw slice_() makes first
        return simulator.phantom(rng, 32, lesion)

    healthy, sick = draw(False), draw(True)
    changed = np.abs(sick - healthy) > 1e-9
    assert 1 <= changed.sum() <= 0.08 * changed.size  # a mass of radius <= 4.5 px in 32x32
    assert healthy[16, 16] > 0.5 and healthy[0, 0] == 0.0  # body in the middle, air in the corner


def test_reconstruction_carries_noise_and_artefacts_but_keeps_the_anatomy():
    rng = np.random.default_rng(0)
    image = simulator.phantom(rng, 32, True)
    recon = simulator.scan(rng, image, angles=40, photons=1e4)
    error = recon - image
    assert np.corrcoef(recon.ravel(), image.ravel())[0, 1] > 0.9
    assert 0.02 < error.std() < 0.5  # streaks and grain, not a copy


# --- MedMNIST .npz from --data-dir -----------------------------------------------------------------


def test_grayscale_npz_loads_with_any_file_name(tmp_path: Path):
    images = data.load(write_npz(tmp_path, name="breastmnist.npz"), SMOKE)
    assert (len(images.train), len(images.val), len(images.test)) == (12, 4, 6)
    assert images.shape == (1, 8, 8) and images.num_classes == 2
    with np.load(tmp_path / "breastmnist.npz") as raw:
        assert np.array_equal(images.test.images[:, 0].numpy(), raw["test_images"])
        assert images.train.labels.tolist() == raw["train_labels"][:, 0].tolist()


def test_rgb_multiclass_npz_loads_channels_first(tmp_path: Path):
    images = data.load(write_npz(tmp_path, name="bloodmnist.npz", rgb=True, classes=4), SMOKE)
    assert images.shape == (3, 8, 8) and images.num_classes == 4
    with np.load(tmp_path / "bloodmnist.npz") as raw:
        assert np.array_equal(images.val.images.permute(0, 2, 3, 1).numpy(), raw["val_images"])


def test_corrupt_npz_names_the_file(tmp_path: Path):
    root = write_npz(tmp_path)
    path = root / "pneumoniamnist.npz"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"pneumoniamnist.npz is not a readable .npz archive .*expected a MedMNIST .npz") as info:
        data.load(root, SMOKE)
    assert "\n" not in str(info.value)


def test_missing_keys_are_named(tmp_path: Path):
    arrays = medmnist_arrays()
    del arrays["val_labels"], arrays["test_images"]
    root = write_npz(tmp_path, arrays=arrays)
    with pytest.raises(DataError, match=r"pneumoniamnist.npz lacks val_labels, test_images; expected a MedMNIST .npz"):
        data.load(root, SMOKE)


def test_label_count_not_matching_the_images_is_named(tmp_path: Path):
    arrays = medmnist_arrays()
    arrays["train_labels"] = arrays["train_labels"][:-2]
    with pytest.raises(DataError, match=r"pneumoniamnist.npz: train_labels holds 10 labels for 12 images in train_images"):
        data.load(write_npz(tmp_path, arrays=arrays), SMOKE)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("test_images", np.zeros((6, 9, 9), np.uint8), r"test_images are 9x9 with 1 channel\(s\); expected 8x8 with 1"),
    ("val_images", np.zeros((4, 8, 8, 8), np.uint8), r"val_images has shape \(4, 8, 8, 8\); expected 2-D images"),
    ("train_labels", np.zeros((12, 14), np.uint8), r"train_labels has shape \(12, 14\) \(multi-label\)"),
    ("train_images", np.zeros((12, 8, 8), np.float32), r"train_images is float32; expected uint8"),
])
def test_wrong_shapes_channels_and_dtypes_are_named(tmp_path: Path, key, value, message):
    arrays = medmnist_arrays()
    arrays[key] = value
    with pytest.raises(DataError, match=message):
        data.load(write_npz(tmp_path, arrays=arrays), SMOKE)


def test_a_directory_without_exactly_one_npz_says_what_is_expected(tmp_path: Path):
    with pytest.raises(DataError, match=r"holds no .npz file; expected a MedMNIST .npz"):
        data.load(tmp_path, SMOKE)
    write_npz(tmp_path, name="a.npz")
    write_npz(tmp_path, name="b.npz")
    with pytest.raises(DataError, match=r"holds 2 .npz files \(a.npz, b.npz\)"):
        data.load(tmp_path, SMOKE)


def test_auc_is_binary_or_macro_one_vs_rest():
    labels = torch.tensor([0, 1, 1, 0])
    assert auroc(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), labels, 2) == pytest.approx(1.0)
    assert auroc(torch.tensor([[0.0, 2.0], [1.0, 0.0], [3.0, 0.0], [0.0, 1.0]]), labels, 2) == pytest.approx(0.0)
    perfect = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 2]), 3).float() * 5
    assert auroc(perfect, torch.tensor([0, 1, 2, 2]), 3) == pytest.approx(1.0)


# --- runs through the harness ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "has_map"), [("softmax", True), ("linear", False)])
def test_smoke_run_on_simulated_ct(tmp_path: Path, variant, has_map):
    row = execute(Pairing(task="medical-imaging", variant=variant, profile="smoke", seed=0), torch.device("cpu"),
                  workdir=tmp_path)
    assert row.status == "ok", row.error
    assert 0.0 <= row.metrics["auc"] <= 1.0 and row.metrics["auc_baseline"] == 0.5
    assert (tmp_path / "attention_map.png").exists() is has_map
    assert ("attention_map" in row.artifacts) is has_map
    if has_map:
        with Image.open(tmp_path / "attention_map.png") as image:
            assert image.format == "PNG"


@pytest.mark.slow
def test_smoke_run_on_a_medmnist_npz(tmp_path: Path):
    root = write_npz(tmp_path / "data", n=(40, 8, 16), side=28, rgb=True, classes=3)
    (tmp_path / "work").mkdir()
    row = execute(Pairing(task="medical-imaging", variant="sdpa", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"), workdir=tmp_path / "work")
    assert row.status == "ok", row.error
    assert row.metrics["chance"] == pytest.approx(1 / 3)
