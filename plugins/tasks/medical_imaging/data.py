"""Medical imaging data in MedMNIST's ``.npz`` layout: simulated CT slices by default, or any
2-D MedMNIST set from ``--data-dir``.

A MedMNIST file (``pneumoniamnist.npz``, ``organamnist_64.npz``, …) holds ``train_images``,
``train_labels``, ``val_images``, ``val_labels``, ``test_images``, ``test_labels``; images
are uint8 (N, H, W) grayscale or (N, H, W, 3) RGB, labels integers (N, 1). ``--data-dir``
is a directory holding one such file (any name). Multi-label sets (ChestMNIST's (N, 14))
and 3-D volumes are refused with the reason.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from attnbench_plugins.tasks.image_classification.vit import ImageData, ImageSplit, check_labels, limit_splits

from attnbench.datafiles import require_dir
from attnbench.errors import DataError

from . import simulator

SPLITS = simulator.SPLITS
KEYS: tuple[str, ...] = tuple(f"{split}_{part}" for split in SPLITS for part in ("images", "labels"))
EXPECTED = "a MedMNIST .npz file (train_images, train_labels, val_images, val_labels, test_images, test_labels)"


def find_npz(data_dir: Path) -> Path:
    """The one ``.npz`` file in ``data_dir``; DataError when there is none or several."""
    data_dir = require_dir(data_dir, EXPECTED)
    found = sorted(p for p in data_dir.glob("*.npz") if p.is_file())
    if not found:
        raise DataError(f"{data_dir} holds no .npz file; expected {EXPECTED}")
    if len(found) > 1:
        raise DataError(f"{data_dir} holds {len(found)} .npz files ({', '.join(p.name for p in found[:4])}); "
                        "expected exactly one MedMNIST .npz (move the others away)")
    return found[0]


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The six MedMNIST arrays of ``path``; DataError names the file and what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)}; expected {EXPECTED}")
            return {key: archive[key] for key in KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a readable .npz archive ({reason}); expected {EXPECTED}") from None


def _images(path: Path, key: str, images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) from MedMNIST's (N, H, W) or (N, H, W, 3)."""
    if images.dtype != np.uint8:
        raise DataError(f"{path}: {key} is {images.dtype}; expected uint8 images as MedMNIST stores them")
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    raise DataError(f"{path}: {key} has shape {images.shape}; expected 2-D images (N, H, W) or (N, H, W, 3) "
                    "(3-D MedMNIST volumes are not supported)")


def _labels(path: Path, key: str, labels: np.ndarray, count: int) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise DataError(f"{path}: {key} has shape {labels.shape} (multi-label); expected one label per image, (N, 1)")
    if labels.ndim not in (1, 2) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {key} is {labels.dtype} of shape {labels.shape}; expected integer labels (N, 1)")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != count:
        image_key = key.replace("_labels", "_images")
        raise DataError(f"{path}: {key} holds {len(labels)} labels for {count} images in {image_key}; "
                        "expected one label per image")
    if (labels < 0).any():
        raise DataError(f"{path}: {key} holds a negative label {int(labels.min())}; expected class indices 0..K-1")
    return labels


def from_arrays(arrays: Mapping[str, np.ndarray], path: Path) -> ImageData:
    """Checked :class:`ImageData` from MedMNIST arrays (``path`` names the source in errors)."""
    splits, shape = {}, None
    for split in SPLITS:
        images = _images(path, f"{split}_images", arrays[f"{split}_images"])
        labels = _labels(path, f"{split}_labels", arrays[f"{split}_labels"], len(images))
        if len(images) == 0:
            raise DataError(f"{path}: {split}_images is empty; expected images in every split")
        if shape is None:
            shape = images.shape[1:]
        elif images.shape[1:] != shape:
            c, h, w = images.shape[1:]
            raise DataError(f"{path}: {split}_images are {h}x{w} with {c} channel(s); expected "
                            f"{shape[1]}x{shape[2]} with {shape[0]} channel(s) like train_images")
        splits[split] = ImageSplit.from_numpy(images, labels)
    top = max(int(s.labels.max()) for s in splits.values())
    data = ImageData(**splits, classes=[str(c) for c in range(max(top + 1, 2))])
    check_labels(data, str(path))
    return data


def simulated(cfg: Mapping[str, Any]) -> ImageData:
    """The default: CT slices from :mod:`.simulator`, in MedMNIST layout."""
    arrays = simulator.simulate(
        int(cfg.get("data_seed", 0)), (int(cfg["n_train"]), int(cfg["n_val"]), int(cfg["n_test"])),
        size=int(cfg["image_size"]), angles=int(cfg["angles"]), photons=float(cfg["photons"]),
    )
    data = from_arrays(arrays, Path("<simulated CT>"))
    return ImageData(data.train, data.val, data.test, classes=["no lesion", "lesion"])


def load(data_dir: Path | None, cfg: Mapping[str, Any]) -> ImageData:
    """The profile's data: the ``.npz`` in ``data_dir`` (capped at the profile's sizes), else simulated CT."""
    if data_dir is None:
        return simulated(cfg)
    path = find_npz(data_dir)
    return limit_splits(from_arrays(read_npz(path), path), cfg)
