"""Detection examples as tensors: scenes composed from real MNIST digits, or a COCO folder.

A :class:`Split` holds images (N, C, S, S) uint8 on a square canvas of side S and, per
image, its boxes (n, 4) as ``x1, y1, x2, y2`` in canvas pixels and its class indices (n,).
Both the composed default (:mod:`.scenes`) and ``--data-dir`` (:mod:`.coco`) produce one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """One split of images with their ground-truth boxes (xyxy, pixels) and class indices."""

    images: torch.Tensor
    boxes: tuple[torch.Tensor, ...]
    labels: tuple[torch.Tensor, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def canvas(self) -> int:
        """The side of the square canvas in pixels."""
        return int(self.images.shape[-1])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Images ``index`` as floats in [0, 1] on ``device``, and their targets.

        Targets are dicts with ``boxes`` normalised to [0, 1] as ``cx, cy, w, h`` (what the
        model predicts) and ``labels``.
        """
        images = self.images[index].to(device=device, dtype=torch.float32) / 255.0
        scale = float(self.canvas)
        targets = []
        for i in index.tolist():
            xyxy = self.boxes[i] / scale
            cxcywh = torch.stack(
                [(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]],
                dim=-1,
            )
            targets.append({"boxes": cxcywh.to(device), "labels": self.labels[i].to(device)})
        return images, targets

    def objects(self) -> int:
        """How many ground-truth boxes the split holds."""
        return sum(int(b.shape[0]) for b in self.boxes)


@dataclass(frozen=True)
class Splits:
    """Train and test splits and the class names (index = class id the model predicts)."""

    train: Split
    test: Split
    classes: tuple[str, ...]

    @property
    def channels(self) -> int:
        """Image channels: 1 for the digit scenes, 3 for COCO images."""
        return int(self.train.images.shape[1])
