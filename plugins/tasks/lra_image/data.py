"""LRA Image data: real MNIST digits by default, CIFAR-10 python batches from ``--data-dir``.

Both become grayscale ``side × side`` uint8 images, one token a pixel (see :mod:`.pixels`).

* Default: :func:`attnbench_plugins.sources.digits.mnist_5k` (5,000 real MNIST digits,
  28×28, 500 a class), resized to the profile's side with ``torch.nn.functional.interpolate``
  (bilinear, antialiased when shrinking), then split by a seeded permutation.
* ``--data-dir``: CIFAR-10 python batches (read by :mod:`attnbench_plugins.sources.cifar`),
  converted to grayscale as LRA's input pipeline does (``tf.image.rgb_to_grayscale``:
  0.2989 R + 0.5870 G + 0.1140 B on [0, 1] values, back to uint8), split as LRA splits
  ``cifar10``: the first 90 % of the training batches train, the last 10 % validate,
  ``test_batch`` tests. Images are resized when the profile's side is not 32.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from attnbench_plugins.sources import cifar, digits

from attnbench.errors import DataError

from .pixels import Split, Splits

NUM_CLASSES = 10
#: ``tf.image.rgb_to_grayscale``'s weights.
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


def resize(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 images (N, H, W) resized to (N, side, side): bilinear, antialiased when shrinking."""
    if images.shape[1:] == (side, side):
        return images
    x = torch.from_numpy(np.array(images, dtype=np.float32)).unsqueeze(1)
    antialias = side < max(images.shape[1:])
    out = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=antialias)
    return out.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """uint8 (N, 3, H, W) RGB to uint8 (N, H, W) as ``tf.image.rgb_to_grayscale`` on uint8 images does."""
    gray = np.tensordot(GRAY_WEIGHTS, rgb.astype(np.float32) / 255.0, axes=([0], [1]))
    # tf.image.convert_image_dtype(float → uint8) scales by 255.5 and truncates
    return np.clip(gray * 255.5, 0, 255).astype(np.uint8)


def _seeded_split(images: np.ndarray, labels: np.ndarray, sizes: tuple[int, int, int], seed: int) -> Splits:
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = (sizes[0], sizes[0] + sizes[1], sum(sizes))
    parts = (order[: cut[0]], order[cut[0] : cut[1]], order[cut[1] : cut[2]])
    return Splits(*(Split.from_images(images[p], labels[p]) for p in parts))


@functools.lru_cache(maxsize=4)
def _digits(side: int, sizes: tuple[int, int, int], seed: int) -> Splits:
    images, labels = digits.mnist_5k()
    if sum(sizes) > len(labels):
        raise ValueError(f"lra-image: n_train + n_val + n_test = {sum(sizes)} exceeds the {len(labels)} MNIST digits")
    return _seeded_split(resize(images, side), labels, sizes, seed)


def default_splits(config: Mapping[str, Any], side: int) -> Splits:
    """The embedded default: MNIST digits at ``side × side``, split by the profile's ``data_seed``.

    Kept for the life of the process.
    """
    sizes = (int(config["n_train"]), int(config["n_val"]), int(config["n_test"]))
    return _digits(side, sizes, int(config["data_seed"]))


def cifar_splits(data_dir: Path, side: int) -> Splits:
    """CIFAR-10 python batches in ``data_dir`` as LRA's grayscale splits at ``side × side``."""
    train, test, _ = cifar.load_cifar10(data_dir)
    if len(train) < 2 or len(test) < 1:
        raise DataError(f"{data_dir}: {len(train)} training and {len(test)} test images; expected at least 2 and 1 "
                        f"in {cifar.EXPECTED}")
    train_images = resize(to_grayscale(train.images), side)
    val_start = len(train) - max(1, len(train) // 10)  # LRA: train[:90%], validation train[90%:]
    return Splits(
        Split.from_images(train_images[:val_start], train.labels[:val_start]),
        Split.from_images(train_images[val_start:], train.labels[val_start:]),
        Split.from_images(resize(to_grayscale(test.images), side), test.labels),
    )
