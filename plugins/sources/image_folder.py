"""An ImageFolder tree, as ``torchvision.datasets.ImageFolder`` reads it, one tree per split.

Layout: ``<root>/train/<class>/*.png`` and ``<root>/test/<class>/*.png``, optionally
``<root>/val/<class>/…``; class names are the ``train`` sub-directories in sorted order
(torchvision's order). Files with an image extension (png, jpg, jpeg, bmp, gif, tif,
tiff, webp) are read with PIL. Every image must have the first one's size and channels:
8-bit grayscale (mode ``L``; ``1`` is read as ``L``) or RGB (``P`` palette images are read
as RGB). The whole tree is held in memory as uint8, so it is meant for small sets
(CIFAR-, MNIST- or MedMNIST-sized). Every problem is a one-line
:class:`~attnbench.errors.DataError` naming the file and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnbench.errors import DataError

EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: PIL modes read as they are, and the ones converted on reading.
MODES: dict[str, str] = {"L": "L", "1": "L", "RGB": "RGB", "P": "RGB"}
CHANNELS: dict[str, int] = {"L": 1, "RGB": 3}
EXPECTED = "an ImageFolder tree: train/<class>/*.png and test/<class>/*.png (val/ optional)"


@dataclass(frozen=True)
class Images:
    """Images as uint8 (N, C, H, W) with int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class ImageFolder:
    """The splits found (``val`` may be None) and the class names, index = label."""

    train: Images
    val: Images | None
    test: Images
    classes: list[str]


def is_image_folder(root: Path) -> bool:
    """Whether ``root`` has a ``train/`` directory with class sub-directories."""
    train = Path(root) / "train"
    return train.is_dir() and any(p.is_dir() for p in train.iterdir())


def image_files(class_dir: Path) -> list[Path]:
    """The image files directly in ``class_dir``, sorted by name."""
    return sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


class _Shape:
    """The size and mode every image must share: the first image read sets them."""

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None
        self.mode: str | None = None
        self.first: Path | None = None

    def check(self, path: Path, size: tuple[int, int], mode: str) -> None:
        if self.size is None:
            self.size, self.mode, self.first = size, mode, path
            return
        if size != self.size or mode != self.mode:
            (w, h), (ew, eh) = size, self.size
            raise DataError(
                f"{path}: {w}x{h} with {CHANNELS[mode]} channel(s) ({mode}); expected {ew}x{eh} with "
                f"{CHANNELS[self.mode]} channel(s) ({self.mode}) like {self.first.name} and every other image"
            )


def read_image(path: Path, shape: _Shape) -> np.ndarray:
    """One image as uint8 (C, H, W), checked against ``shape``; DataError names the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in MODES:
                raise DataError(f"{path}: image mode {image.mode}; expected 8-bit grayscale (L) or RGB")
            converted = image.convert(MODES[image.mode])
            converted.load()
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a readable image ({reason}); expected a PNG/JPEG image file") from None
    shape.check(path, converted.size, converted.mode)
    array = np.asarray(converted, dtype=np.uint8)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def read_split(split_dir: Path, classes: list[str], shape: _Shape) -> Images:
    """Every image of one split directory, labelled by its class directory."""
    known = set(classes)
    unknown = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in known)
    if unknown:
        raise DataError(f"{split_dir / unknown[0]}: class {unknown[0]!r} is not among train's classes "
                        f"({', '.join(classes[:10])}{' …' if len(classes) > 10 else ''}); expected the same classes")
    images, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        for path in image_files(class_dir):
            images.append(read_image(path, shape))
            labels.append(label)
    if not images:
        raise DataError(f"{split_dir} holds no images; expected {split_dir.name}/<class>/*.png files")
    return Images(images=np.stack(images), labels=np.asarray(labels, dtype=np.int64))


def load_image_folder(root: Path) -> ImageFolder:
    """The ``train``, optional ``val`` and ``test`` splits under ``root``."""
    root = Path(root)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"{root} lacks {split}/; expected {EXPECTED}")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root / 'train'} has no class directories; expected {EXPECTED}")
    shape = _Shape()
    train = read_split(root / "train", classes, shape)
    val = read_split(root / "val", classes, shape) if (root / "val").is_dir() else None
    test = read_split(root / "test", classes, shape)
    return ImageFolder(train=train, val=val, test=test, classes=classes)
