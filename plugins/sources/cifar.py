"""CIFAR-10 in its "python version" layout (``cifar-10-python.tar.gz``, unpacked).

The directory (or its ``cifar-10-batches-py/`` sub-directory) holds ``data_batch_1`` …
``data_batch_5`` (training) and ``test_batch``: each a pickled dict with ``b"data"``, an
(N, 3072) uint8 array of 32×32 RGB images, channel-planar (1024 red, 1024 green, 1024
blue values, each row-major), and ``b"labels"``, N integers 0-9. ``batches.meta`` (optional)
holds ``b"label_names"``. Any subset of the training batches is accepted, so a user can
keep only a few.

The batches are pickles, as the data set is distributed. They are read with an unpickler
that builds only NumPy arrays and plain containers, never arbitrary objects, so a
tampered file is refused instead of run. Every problem is a one-line
:class:`~attnbench.errors.DataError` naming the file and what was expected.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np

from attnbench.errors import DataError

from .image_folder import Images

SIDE = 32
CHANNELS = 3
ROW = SIDE * SIDE * CHANNELS
SUBDIR = "cifar-10-batches-py"
TRAIN_PATTERN = re.compile(r"data_batch_(\d+)$")
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
EXPECTED = "CIFAR-10 python batches (data_batch_1 … data_batch_5 and test_batch, as in cifar-10-python.tar.gz)"


def _allowed_globals() -> dict[tuple[str, str], object]:
    import codecs

    from numpy._core import multiarray

    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and built-in containers only."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays") from None


def load_pickle(path: Path) -> object:
    """The object pickled in ``path`` (arrays and containers only); DataError names the file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; expected a CIFAR python batch") from None
    try:
        return _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a readable CIFAR python batch ({reason}); expected a pickled dict "
                        "with b'data' (N, 3072) uint8 and b'labels'") from None


def _key(batch: dict, name: str) -> object:
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    return None


def read_batch(path: Path, num_classes: int | None = None) -> Images:
    """One batch file as (N, 3, 32, 32) uint8 images and labels (checked to lie in
    ``0 .. num_classes - 1`` when given); DataError names the file."""
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a pickled {type(batch).__name__}; expected a dict with b'data' and b'labels'")
    data, labels = _key(batch, "data"), _key(batch, "labels")
    if data is None or labels is None:
        missing = " and ".join(k for k, v in (("b'data'", data), ("b'labels'", labels)) if v is None)
        raise DataError(f"{path} lacks {missing}; expected a CIFAR-10 batch dict with b'data' and b'labels'")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != ROW or data.dtype != np.uint8:
        raise DataError(
            f"{path}: b'data' is {data.dtype} of shape {data.shape}; expected uint8 (N, {ROW}), "
            f"one {SIDE}x{SIDE} image with {CHANNELS} channels a row"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: b'labels' is not a list of integers") from None
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images; expected one label per image row")
    if num_classes is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise DataError(f"{path}: label {int(labels[bad][0])} is outside 0..{num_classes - 1}; "
                            f"expected one of {num_classes} classes")
    return Images(images=data.reshape(-1, CHANNELS, SIDE, SIDE), labels=labels)


def batch_dir(data_dir: Path) -> Path:
    """``data_dir``, or its ``cifar-10-batches-py`` sub-directory when the batches sit there."""
    data_dir = Path(data_dir)
    nested = data_dir / SUBDIR
    return nested if nested.is_dir() and not (data_dir / TEST_FILE).exists() else data_dir


def is_cifar_dir(data_dir: Path) -> bool:
    """Whether ``data_dir`` looks like CIFAR python batches (it has a ``test_batch`` or ``data_batch_N``)."""
    root = batch_dir(data_dir)
    return (root / TEST_FILE).is_file() or any(TRAIN_PATTERN.match(p.name) for p in root.glob("data_batch_*"))


def label_names(data_dir: Path) -> list[str] | None:
    """The class names from ``batches.meta`` when present (None otherwise)."""
    meta_path = batch_dir(data_dir) / META_FILE
    if not meta_path.is_file():
        return None
    meta = load_pickle(meta_path)
    names = _key(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list | tuple) or not names:
        raise DataError(f"{meta_path}: expected a dict with b'label_names', a list of class names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _concat(parts: list[Images]) -> Images:
    return Images(images=np.concatenate([p.images for p in parts]), labels=np.concatenate([p.labels for p in parts]))


def load_cifar10(data_dir: Path) -> tuple[Images, Images, list[str]]:
    """``(train, test, class_names)`` from CIFAR-10 python batches in ``data_dir``.

    Training batches are ``data_batch_<n>`` in numeric order; labels must lie in
    ``0 .. len(class_names) - 1`` (10 names unless ``batches.meta`` says otherwise).
    """
    root = batch_dir(data_dir)
    train_files = sorted((p for p in root.glob("data_batch_*") if TRAIN_PATTERN.match(p.name)),
                         key=lambda p: int(TRAIN_PATTERN.match(p.name).group(1)))
    test_file = root / TEST_FILE
    if not train_files or not test_file.is_file():
        lacking = " and ".join(x for x, ok in (("data_batch_<n>", train_files), (TEST_FILE, test_file.is_file())) if not ok)
        raise DataError(f"{root} lacks {lacking}; expected {EXPECTED}")
    names = label_names(root) or [str(i) for i in range(10)]
    train = _concat([read_batch(p, len(names)) for p in train_files])
    return train, read_batch(test_file, len(names)), names
