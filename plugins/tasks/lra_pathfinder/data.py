"""Pathfinder examples as pixel tokens: LRA's released layout from ``--data-dir``, or the seeded generator.

LRA's layout (``lra_release/pathfinder32/<level>/``)::

    imgs/<batch>/sample_<k>.png     grayscale side × side PNGs
    metadata/<batch>.npy            despite the name, space-separated TEXT, one image a line

Each metadata line is what ``snakes2.accumulate_meta`` wrote: ``imgs/<batch> sample_<k>.png
<k> <label> <continuity> <contour_length> <distractor_length> <paddle_length>
<paddle_thickness> <paddle_margin> <contrasts>``. LRA's input pipeline
(``lra_benchmarks/data/pathfinder.py``) reads the image at ``<level>/<col 0>/<col 1>``
and the label from column 3; so does this loader. Metadata files are read in numeric
order, lines in file order; the examples are then split as LRA splits each level:
the first 80 % train, the next 10 % validate, the last 10 % test, after a shuffle
seeded by the profile's ``data_seed`` (LRA's TFDS files interleave the metadata files).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from attnbench_plugins.tasks.lra_image.pixels import Split, Splits
from PIL import Image, UnidentifiedImageError

from attnbench.cache import cache_dir
from attnbench.datafiles import line_error, read_lines
from attnbench.errors import DataError

from . import generator

NAME = "lra-pathfinder"
NUM_CLASSES = 2
METADATA_NAME = re.compile(r"(\d+)\.npy$")
LAYOUT = "LRA's Pathfinder layout: <level>/metadata/<n>.npy (space-separated text) and <level>/imgs/<n>/sample_<k>.png"


def level_dir(data_dir: Path, level: str, side: int) -> Path:
    """The folder holding ``metadata/`` for ``level``: ``data_dir/level``, ``data_dir/pathfinder<side>/level``,
    or ``data_dir`` itself; DataError lists what was tried."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"Pathfinder data directory {data_dir} does not exist; expected {LAYOUT}")
    tried = [data_dir / level, data_dir / f"pathfinder{side}" / level, data_dir]
    for candidate in tried:
        if (candidate / "metadata").is_dir():
            return candidate
    raise DataError(
        f"{data_dir} holds no Pathfinder metadata folder for level {level!r}; looked for "
        f"{', '.join(str(p / 'metadata') for p in tried)}; expected {LAYOUT}"
    )


def read_metadata(path: Path, root: Path) -> list[tuple[Path, int]]:
    """``(image path, label)`` for every line of one metadata file; DataError names the file and line."""
    rows = []
    for number, line in enumerate(read_lines(path, "Pathfinder metadata as space-separated text"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4:
            raise line_error(path, number, f"{len(fields)} field(s) {line[:60]!r}",
                             "at least 4 space-separated fields: imgs/<n> sample_<k>.png <k> <label> …")
        if fields[3] not in ("0", "1"):
            raise line_error(path, number, f"label (column 4) {fields[3][:20]!r}", "0 or 1")
        image = root / fields[0] / fields[1]
        if not image.is_file():
            raise line_error(path, number, f"it names {fields[0]}/{fields[1]}, but {image} does not exist",
                             "every image the metadata lists to be present")
        rows.append((image, int(fields[3])))
    return rows


def read_image(path: Path, side: int) -> np.ndarray:
    """The grayscale image at ``path`` as uint8 (side, side); DataError names the file when it is corrupt or sized wrong."""
    try:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            image.load()
            gray = np.asarray(image.convert("L"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a readable image ({reason}); expected a {side}×{side} grayscale PNG") from None
    if gray.shape != (side, side):
        raise DataError(
            f"{path} is {gray.shape[1]}×{gray.shape[0]} pixels; expected {side}×{side}, the profile's length "
            f"{side * side} (use --set length={gray.shape[0] * gray.shape[1]} for these images)"
        )
    return gray


def load_dir(data_dir: Path, level: str, side: int, seed: int) -> Splits:
    """The examples of ``level`` under ``data_dir`` in LRA's layout, split 80/10/10 after a seeded shuffle."""
    root = level_dir(data_dir, level, side)
    files = sorted((p for p in (root / "metadata").iterdir() if METADATA_NAME.match(p.name)),
                   key=lambda p: int(METADATA_NAME.match(p.name).group(1)))
    if not files:
        raise DataError(f"{root / 'metadata'} holds no <n>.npy metadata files; expected {LAYOUT}")
    rows = [row for path in files for row in read_metadata(path, root)]
    if len(rows) < 3:
        raise DataError(f"{root / 'metadata'} lists {len(rows)} image(s); expected at least 3 (train, validation, test)")
    images = np.stack([read_image(path, side) for path, _ in rows])
    labels = np.array([label for _, label in rows], dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(rows))
    n_val = n_test = max(1, len(rows) // 10)
    parts = (order[: len(rows) - n_val - n_test], order[len(rows) - n_val - n_test : len(rows) - n_test],
             order[len(rows) - n_test :])
    return Splits(*(Split.from_images(images[p], labels[p]) for p in parts))


#: The generator settings a profile may set (the rest are LRA's Pathfinder-32 values).
GENERATOR_KEYS = ("contour_length", "distractor_length", "num_distractor_snakes", "seed_distance", "marker_radius")


def params_for(config: Mapping[str, Any], side: int) -> generator.Params:
    """Generator parameters: LRA's Pathfinder-32 values, the profile's ``GENERATOR_KEYS``, window ``side``."""
    return generator.Params(window=side, **{k: config[k] for k in GENERATOR_KEYS})


#: Bump when the generator draws different images for the same parameters, so old cached sets are not reused.
GENERATOR_VERSION = 1


def cache_path(params: generator.Params, count: int, seed: int) -> Path:
    """Where :func:`generated` keeps ``count`` images drawn with ``params`` and ``seed`` (an ``.npz``)."""
    key = json.dumps({"version": GENERATOR_VERSION, "params": dataclasses.asdict(params), "count": count,
                      "seed": seed}, sort_keys=True)
    return cache_dir(NAME) / f"generated-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _draw_cached(params: generator.Params, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The generator's images and labels, read from the cache when an earlier run drew them, else drawn and saved."""
    path = cache_path(params, count, seed)
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
        if images.shape == (count, params.window, params.window) and labels.shape == (count,):
            return images, labels
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # absent or unreadable: draw again and overwrite
    images, labels = generator.generate(count, params, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            np.savez(tmp, images=images, labels=labels)
        os.replace(tmp.name, path)
    except OSError:
        pass  # a read-only cache only costs the next run the drawing time
    return images, labels


@functools.lru_cache(maxsize=4)
def _generated(params: generator.Params, sizes: tuple[int, int, int], seed: int) -> Splits:
    images, labels = _draw_cached(params, sum(sizes), seed)
    cut = (sizes[0], sizes[0] + sizes[1])
    parts = (slice(0, cut[0]), slice(cut[0], cut[1]), slice(cut[1], None))
    return Splits(*(Split.from_images(images[p], labels[p]) for p in parts))


def generated(config: Mapping[str, Any], side: int) -> Splits:
    """The embedded default: images drawn by the generator with the profile's settings and ``data_seed``.

    Drawn once per parameter set and kept in the task's cache folder (:func:`attnbench.cache.cache_dir`,
    ``$ATTNBENCH_CACHE_DIR`` to move it), then for the life of the process.
    """
    sizes = (int(config["n_train"]), int(config["n_val"]), int(config["n_test"]))
    return _generated(params_for(config, side), sizes, int(config["data_seed"]))
