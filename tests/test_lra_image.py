"""LRA Image: pixel tokens from real MNIST digits and from CIFAR-10 python batches, errors, a smoke run."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from attnbench_plugins.tasks.lra_image import TASK, data, pixels

import attnbench
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute


def write_cifar(root: Path, train_sizes=(12, 8), test_size=6, seed=0) -> Path:
    """CIFAR-10 python batches exactly as cifar-10-python.tar.gz holds them (pickled dicts of bytes keys)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i + 1}" for i in range(len(train_sizes))] + ["test_batch"]
    for name, size in zip(names, [*train_sizes, test_size], strict=True):
        batch = {b"batch_label": name.encode(), b"labels": [int(x) for x in rng.integers(0, 10, size)],
                 b"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{i}.png".encode() for i in range(size)]}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def test_task_is_registered_with_lra_full_sizes():
    assert plugins.get_task("lra-image") is TASK
    assert isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    assert TASK.requires == frozenset()  # every row is full length: no padding mask needed
    full = TASK.profiles["full"]
    sizes = (full["length"], full["depth"], full["heads"], full["dim"], full["ff_dim"], full["pooling"])
    assert sizes == (1024, 1, 8, 128, 128, "cls")
    assert TASK.profiles["quick"]["length"] >= 256


def test_default_data_is_real_mnist_at_the_profile_side():
    config = TASK.profiles["quick"]
    side = pixels.side_of(config, "lra-image")
    splits = data.default_splits(config, side)
    assert side == 16
    assert (len(splits.train), len(splits.val), len(splits.test)) == (config["n_train"], config["n_val"], config["n_test"])
    assert splits.train.tokens.shape == (config["n_train"], 256) and splits.train.tokens.dtype == torch.uint8
    assert set(splits.train.labels.tolist()) == set(range(10))
    # real digits: mostly black background with bright strokes
    assert int(splits.test.tokens.max()) >= 250 and float((splits.test.tokens == 0).float().mean()) > 0.4
    rows = [{tuple(t.tolist()) for t in s.tokens} for s in (splits.train, splits.val, splits.test)]
    assert not (rows[0] & rows[2])
    assert data.default_splits(config, side) is splits  # cached in-process


@pytest.mark.parametrize("length", [300, 0, "big"])
def test_length_must_be_a_perfect_square(length):
    with pytest.raises(pixels.ProfileError, match="length"):
        pixels.side_of({"length": length}, "lra-image")
    assert pixels.side_of({"length": 1024}, "lra-image") == 32


def test_cifar_batches_become_lra_grayscale_splits(tmp_path):
    root = write_cifar(tmp_path / "cifar", train_sizes=(12, 8), test_size=6)
    splits = data.cifar_splits(root, 32)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 6)  # LRA: train[:90%], val train[90%:]
    batch = pickle.loads((root / "data_batch_1").read_bytes())
    rgb = batch[b"data"][0].reshape(3, 32, 32).astype(np.float64) / 255
    expected = (0.2989 * rgb[0] + 0.5870 * rgb[1] + 0.1140 * rgb[2]) * 255.5
    assert np.abs(splits.train.tokens[0].numpy().astype(float) - expected.reshape(-1)).max() <= 1.0
    assert splits.train.labels[0].item() == batch[b"labels"][0]
    small = data.cifar_splits(root, 16)
    assert small.test.tokens.shape == (6, 256)


def test_grayscale_matches_tensorflow_on_pure_colours():
    rgb = np.zeros((3, 3, 1, 1), np.uint8)
    for c in range(3):
        rgb[c, c] = 255
    assert data.to_grayscale(rgb).reshape(-1).tolist() == [76, 149, 29]  # trunc(w · 255.5)


@pytest.mark.parametrize(("payload", "message"), [
    (b"\x80\x02not a pickle at all", "not a readable CIFAR python batch"),
    (pickle.dumps({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}), "expected uint8 (N, 3072)"),
    (pickle.dumps({b"data": np.zeros((4, 3072), np.uint8)}), "lacks b'labels'"),
])
def test_corrupt_or_wrong_size_batch_is_a_one_line_data_error(tmp_path, payload, message):
    root = write_cifar(tmp_path / "cifar")
    (root / "data_batch_2").write_bytes(payload)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        data.cifar_splits(root, 32)
    assert "data_batch_2" in str(info.value) and "\n" not in str(info.value)


def test_smoke_pairing_runs_on_default_and_cifar_data(tmp_path):
    row = execute(Pairing(task="lra-image", variant="sdpa", profile="smoke", seed=0), torch.device("cpu"))
    assert row.status == "ok", row.error
    assert row.metrics["chance"] == 0.1 and 0.0 <= row.metrics["accuracy"] <= 1.0
    assert row.efficiency["flops_per_example"] > 0
    root = write_cifar(tmp_path / "cifar")
    row = execute(Pairing(task="lra-image", variant="softmax", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"))
    assert row.status == "ok", row.error
    assert row.metrics["majority_baseline"] >= 1 / 6


def test_empty_data_dir_is_a_data_error_naming_cifar_batches(tmp_path):
    with pytest.raises(DataError, match=r"lacks data_batch_<n> and test_batch; expected CIFAR-10 python batches"):
        execute(Pairing(task="lra-image", variant="sdpa", profile="smoke", seed=0, data_dir=str(tmp_path)),
                torch.device("cpu"))
