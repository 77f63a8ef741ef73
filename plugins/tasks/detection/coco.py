"""``--data-dir``: a COCO detection folder, as COCO 2017 ships it.

Layout::

    DATA_DIR/annotations/instances_train*.json   e.g. instances_train2017.json
    DATA_DIR/annotations/instances_val*.json     e.g. instances_val2017.json
    DATA_DIR/train*/<file_name>                  images of the train json (train2017/)
    DATA_DIR/val*/<file_name>                    images of the val json (val2017/)

The image folder of ``instances_<name>.json`` is ``DATA_DIR/<name>/`` when it exists,
else the first folder matching ``train*`` / ``val*``. Train is the train json, test the
val json. Each json is checked in full (keys, ids, every box inside its image) and
indexed by pycocotools' ``COCO``; images are read with PIL as RGB, resized to the
profile's square canvas (aspect ratio not kept) and their boxes scaled to match.
Classes are the json's categories in id order. Crowd annotations (``iscrowd`` 1) are
left out, and so are boxes of zero width or height (as DETR's loader drops them); boxes
are clipped to the image after a tolerance of one pixel. At most ``n_train`` / ``n_test``
images are used, the lowest image ids first (train images without any box are skipped).
Every problem is a one-line :class:`DataError` naming the file, raised before training.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from attnbench.datafiles import find_file, read_text, require_dir
from attnbench.errors import DataError

from .data import Split, Splits

LAYOUT = "COCO's annotations/instances_{train,val}*.json with image folders train*/ and val*/"
#: How far (pixels) a box may reach past its image's border before it is an error.
TOLERANCE = 1.0
_KEYS = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_json(path: Path) -> dict[str, Any]:
    """The parsed json, checked for COCO's keys; DataError names the file and what is wrong."""
    text = read_text(path, "a COCO instances json")
    try:
        dataset = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected a COCO instances json") from None
    if not isinstance(dataset, dict):
        raise DataError(
            f"{path}: holds a JSON {type(dataset).__name__}; expected a COCO object with images, annotations, categories"
        )
    for key, fields in _KEYS.items():
        entries = dataset.get(key)
        if not isinstance(entries, list):
            raise DataError(f"{path}: lacks the list {key!r}; expected a COCO instances json (images, annotations, categories)")
        for n, entry in enumerate(entries):
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise DataError(f"{path}: {key}[{n}] lacks {', '.join(missing)}; expected COCO's {', '.join(fields)}")
    for n, image in enumerate(dataset["images"]):
        if not (_number(image["width"]) and _number(image["height"]) and image["width"] > 0 and image["height"] > 0):
            size = f"{image['width']!r}×{image['height']!r}"
            raise DataError(f"{path}: images[{n}] (id {image['id']}) has size {size}; expected positive numbers")
    if not dataset["categories"]:
        raise DataError(f"{path}: 'categories' is empty; expected at least one category")
    return dataset


def check_boxes(path: Path, dataset: Mapping[str, Any]) -> None:
    """DataError unless every annotation names a known image and category and its box lies in its image."""
    images = {image["id"]: image for image in dataset["images"]}
    categories = {category["id"] for category in dataset["categories"]}
    for ann in dataset["annotations"]:
        image = images.get(ann["image_id"])
        if image is None:
            raise DataError(f"{path}: annotation {ann['id']} refers to image id {ann['image_id']!r}, which 'images' lacks")
        if ann["category_id"] not in categories:
            raise DataError(f"{path}: annotation {ann['id']} has category_id {ann['category_id']!r}, which 'categories' lacks")
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)) or box[2] < 0 or box[3] < 0:
            raise DataError(
                f"{path}: annotation {ann['id']} has bbox {box!r}; expected [x, y, width, height] with width, height >= 0"
            )
        x, y, w, h = box
        width, height = image["width"], image["height"]
        if x < -TOLERANCE or y < -TOLERANCE or x + w > width + TOLERANCE or y + h > height + TOLERANCE:
            raise DataError(
                f"{path}: annotation {ann['id']} has bbox [x, y, w, h] = {box} outside image {image['id']} "
                f"({image['file_name']}, {width}×{height}); expected a box inside the image"
            )


def index(path: Path) -> COCO:
    """The checked json of ``path`` indexed by pycocotools' ``COCO``."""
    dataset = read_json(path)
    check_boxes(path, dataset)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress lines
        coco.createIndex()
    return coco


def image_folder(data_dir: Path, json_path: Path, prefix: str) -> Path:
    """The folder holding the images of ``instances_<name>.json``: ``<name>/`` or the first ``<prefix>*/``."""
    named = data_dir / json_path.stem.removeprefix("instances_")
    if named.is_dir():
        return named
    folders = sorted(p for p in data_dir.glob(f"{prefix}*") if p.is_dir())
    if not folders:
        raise DataError(f"{data_dir} lacks the image folder for {json_path.name}; expected {named.name}/ or a folder {prefix}*/")
    return folders[0]


def load_image(path: Path, json_path: Path, image: Mapping[str, Any], canvas: int) -> np.ndarray:
    """The image as uint8 (3, canvas, canvas); DataError when missing, unreadable or not the json's size."""
    if not path.is_file():
        raise DataError(f"{json_path}: image {image['id']} is {image['file_name']}, but {path} does not exist")
    try:
        with Image.open(path) as raw:
            size = raw.size
            pixels = raw.convert("RGB").resize((canvas, canvas), Image.BILINEAR)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc}); expected an image file PIL opens") from None
    if size != (image["width"], image["height"]):
        raise DataError(
            f"{path}: image is {size[0]}×{size[1]} but {json_path.name} says {image['width']}×{image['height']} "
            f"(image {image['id']}); expected the json's size"
        )
    return np.asarray(pixels).transpose(2, 0, 1)


def load_split(
    coco: COCO, json_path: Path, folder: Path, category_index: Mapping[int, int], canvas: int, limit: int, *, need_boxes: bool
) -> Split:
    """Up to ``limit`` images of ``coco`` (read from ``json_path``; lowest ids first) with their boxes on the canvas."""
    for image in coco.dataset["images"]:
        if not (folder / image["file_name"]).is_file():
            path = folder / image["file_name"]
            raise DataError(f"{json_path}: image {image['id']} is {image['file_name']}, but {path} does not exist")
    images, boxes, labels = [], [], []
    for image_id in sorted(coco.getImgIds()):
        image = coco.imgs[image_id]
        kept = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd", 0)]
        kept = [a for a in kept if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        if need_boxes and not kept:
            continue
        sx, sy = canvas / image["width"], canvas / image["height"]
        corners = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in kept)]
        xyxy = torch.tensor(corners, dtype=torch.float32).reshape(-1, 4)
        xyxy = (xyxy * torch.tensor([sx, sy, sx, sy])).clamp(0, canvas)
        images.append(load_image(folder / image["file_name"], json_path, image, canvas))
        boxes.append(xyxy)
        labels.append(torch.tensor([category_index[a["category_id"]] for a in kept], dtype=torch.long))
        if len(images) == limit:
            break
    if not images:
        raise DataError(f"{json_path}: no image with a box; expected annotated images")
    return Split(images=torch.from_numpy(np.stack(images)), boxes=tuple(boxes), labels=tuple(labels))


def load_dir(data_dir: Path, config: Mapping[str, Any]) -> Splits:
    """The train and val splits of a COCO folder (see the module docstring)."""
    data_dir = require_dir(data_dir, LAYOUT)
    train_json = find_file(data_dir, ["annotations/instances_train*.json"], f"a train annotation file ({LAYOUT})")
    val_json = find_file(data_dir, ["annotations/instances_val*.json"], f"a val annotation file ({LAYOUT})")
    train_coco, val_coco = index(train_json), index(val_json)
    categories = sorted(train_coco.dataset["categories"], key=lambda c: c["id"])
    category_index = {c["id"]: n for n, c in enumerate(categories)}
    unknown = {a["category_id"] for a in val_coco.dataset["annotations"]} - set(category_index)
    if unknown:
        raise DataError(
            f"{val_json}: category ids {sorted(unknown)} are not in {train_json.name}; expected the train json's categories"
        )
    canvas = int(config["canvas"])
    train = load_split(train_coco, train_json, image_folder(data_dir, train_json, "train"), category_index, canvas,
                       int(config["n_train"]), need_boxes=True)
    test = load_split(val_coco, val_json, image_folder(data_dir, val_json, "val"), category_index, canvas,
                      int(config["n_test"]), need_boxes=False)
    return Splits(train=train, test=test, classes=tuple(str(c["name"]) for c in categories))
