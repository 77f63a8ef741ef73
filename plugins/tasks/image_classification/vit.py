"""What the vision classification tasks share: image splits, a timm ViT on the variant, its
training loop, its predictions, and the attention map of a fixed test image.

Used by ``image-classification`` and ``medical-imaging``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attnbench.errors import DataError
from attnbench.nn.attention_maps import record_attention_map
from attnbench.nn.timm import vision_transformer
from attnbench.specs import RunContext
from attnbench.training import TrainConfig, batched_eval, shuffled_batches, train_steps


@dataclass(frozen=True)
class ImageSplit:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray) -> ImageSplit:
        """From uint8 images (N, H, W) or (N, C, H, W) and integer labels (N,)."""
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[:, None]
        return cls(images=torch.from_numpy(np.require(array, np.uint8, ["C", "W"])),
                   labels=torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1)))

    def subset(self, index: np.ndarray | torch.Tensor) -> ImageSplit:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageSplit(images=self.images[index], labels=self.labels[index])

    def majority_fraction(self, num_classes: int) -> float:
        """The share of the most common label: the accuracy of always guessing it."""
        return float(torch.bincount(self.labels, minlength=num_classes).max()) / max(len(self), 1)


@dataclass(frozen=True)
class ImageData:
    """Train, validation and test splits with the class names (index = label)."""

    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(int(s) for s in self.train.images.shape[1:])  # type: ignore[return-value]


def seeded_take(n: int, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` indices of ``n`` (all when None), a seeded random choice in sorted order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def split_off(split: ImageSplit, count: int, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """``(rest, held_out)``: ``count`` seeded random examples held out of ``split`` (e.g. validation)."""
    if count >= len(split):
        raise DataError(f"cannot hold out {count} validation images from {len(split)} training images")
    order = np.random.default_rng(seed).permutation(len(split))
    return split.subset(np.sort(order[count:])), split.subset(np.sort(order[:count]))


def limit_splits(data: ImageData, cfg: Mapping[str, Any]) -> ImageData:
    """Cap each split at the profile's ``n_train``/``n_val``/``n_test`` (None = all), seeded."""
    seed = int(cfg.get("data_seed", 0))
    parts = {}
    for offset, name in enumerate(("train", "val", "test")):
        split = getattr(data, name)
        limit = cfg.get(f"n_{name}")
        parts[name] = split.subset(seeded_take(len(split), None if limit is None else int(limit), seed + offset))
    return ImageData(**parts, classes=data.classes)


def check_labels(data: ImageData, where: str) -> None:
    """DataError unless every label indexes ``data.classes`` and every split holds images."""
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if len(split) == 0:
            raise DataError(f"{where}: the {name} split holds no images")
        bad = (split.labels < 0) | (split.labels >= data.num_classes)
        if bool(bad.any()):
            raise DataError(f"{where}: {name} label {int(split.labels[bad][0])} is outside 0..{data.num_classes - 1}")


def patch_size(side: int, cfg: Mapping[str, Any]) -> int:
    """The profile's ``patch_size``, grown so the grid is at most ``max_grid`` patches a side."""
    return max(int(cfg["patch_size"]), math.ceil(side / int(cfg.get("max_grid", side))))


class Normalise(nn.Module):
    """uint8 images to floats standardised with the training split's per-channel mean and std."""

    def __init__(self, train_images: torch.Tensor) -> None:
        super().__init__()
        x = train_images.float().div_(255.0)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        self.register_buffer("mean", mean[None, :, None, None])
        self.register_buffer("std", std[None, :, None, None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255.0 - self.mean) / self.std


#: The documented ``cfg["pool"]`` values of :class:`ViTClassifier` (a task's ``pool`` setting takes one of these).
POOLS: tuple[str, ...] = ("avg", "max", "avgmax", "token")


class ViTClassifier(nn.Module):
    """Normalisation, then a timm ``VisionTransformer`` whose attention is the variant.

    ``cfg["pool"]``: ``"avg"`` (mean of the patch tokens, no class token; it learns
    faster on small data), ``"max"`` (max over patch tokens: "is it anywhere", for
    detecting a small finding), ``"avgmax"`` (timm's half-sum of the two) or ``"token"`` (a class
    token, read out).

    ``forward(images)`` takes uint8 (or float 0-255) images (B, C, H, W) and returns logits.
    """

    def __init__(self, ctx: RunContext, data: ImageData, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        channels, height, width = data.shape
        patch = patch_size(max(height, width), cfg)
        #: Bottom/right zero padding (after normalisation) up to a multiple of the patch.
        self.pad = (0, -width % patch, 0, -height % patch)
        self.pool = str(cfg.get("pool", "avg"))
        self.normalise = Normalise(data.train.images)
        self.vit = vision_transformer(
            ctx.attention, options=cfg.get("attention_options", {}),
            img_size=(height + self.pad[3], width + self.pad[1]), patch_size=patch, in_chans=channels,
            num_classes=data.num_classes,
            embed_dim=int(cfg["dim"]), depth=int(cfg["depth"]), num_heads=int(cfg["heads"]),
            mlp_ratio=float(cfg["mlp_ratio"]), global_pool=self.pool, class_token=self.pool == "token",
            drop_rate=float(cfg.get("dropout", 0.0)), proj_drop_rate=float(cfg.get("dropout", 0.0)),
            attn_drop_rate=float(cfg.get("attn_dropout", 0.0)), drop_path_rate=float(cfg.get("drop_path", 0.0)),
        )

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (rows, columns) the ViT's tokens cover."""
        return tuple(int(g) for g in self.vit.patch_embed.grid_size)  # type: ignore[return-value]

    def padded(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, C, H, W) padded bottom/right to the patch grid (zeros: the mean after normalising)."""
        return F.pad(images, self.pad) if any(self.pad) else images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit(self.padded(self.normalise(images)))


def train(model: nn.Module, split: ImageSplit, ctx: RunContext, cfg: Mapping[str, Any]) -> list[float]:
    """The profile's AdamW steps on ``split`` (cross-entropy) through the harness's shared loop."""
    batch_size = min(int(cfg["batch_size"]), len(split))
    label_smoothing = float(cfg.get("label_smoothing", 0.0))

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        images = split.images[index].to(ctx.device)
        labels = split.labels[index].to(ctx.device)
        return F.cross_entropy(model(images), labels, label_smoothing=label_smoothing), len(index)

    batches = shuffled_batches(len(split), batch_size, torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(cfg), batches, loss)


def logits(model: nn.Module, split: ImageSplit, batch_size: int, device: torch.device) -> torch.Tensor:
    """The model's logits (N, classes) for every image of ``split``, on the CPU."""
    parts = batched_eval(model, len(split), batch_size, lambda index: model(split.images[index].to(device)).float().cpu())
    return torch.cat(list(parts))


def finish(model: ViTClassifier, data: ImageData, ctx: RunContext, cfg: Mapping[str, Any]) -> None:
    """Hand the harness a batch to time, and save the attention map of test image 0 when the variant gives weights."""
    batch = data.test.images[: min(int(cfg["batch_size"]), len(data.test))].to(ctx.device)
    first = data.test.images[:1].to(ctx.device)
    label = data.classes[int(data.test.labels[0])]
    query, who = ("cls", "class token") if model.pool == "token" else ("mean", "mean over patch queries")
    record_attention_map(
        ctx, model, lambda: model(first), model.padded(data.test.images[:1].float())[0], model.grid, query_index=query,
        title=f"{ctx.attention.name}: last layer, {who} (test image 0, class {label})",
    )
    ctx.meter.model(model, batch)
