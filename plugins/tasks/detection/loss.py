"""DETR's set loss: Hungarian matching, then cross-entropy with a no-object class, L1 and GIoU.

Each image's predictions are matched one-to-one to its ground-truth boxes by
``scipy.optimize.linear_sum_assignment`` on DETR's cost (``-p(class)`` ×1, L1 ×5,
``-GIoU`` ×2). Matched predictions learn their box's class, box (L1 ×5) and GIoU
(×2); every unmatched prediction learns "no object", whose cross-entropy weight is 0.1
(DETR's ``eos_coef``). Box terms are averaged over the ground-truth boxes of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou_loss

COST_CLASS, COST_L1, COST_GIOU = 1.0, 5.0, 2.0
WEIGHT_L1, WEIGHT_GIOU = 5.0, 2.0
NO_OBJECT_WEIGHT = 0.1


def _xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


@torch.no_grad()
def match(
    logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, (prediction indices, target indices) of the cheapest one-to-one assignment.

    The costs of every image's predictions against its own targets are computed in one
    batched pass (targets padded to the largest count), then each image is assigned alone.
    """
    sizes = [int(t["labels"].numel()) for t in targets]
    empty = torch.zeros(0, dtype=torch.long)
    most = max(sizes, default=0)
    if most == 0:
        return [(empty, empty) for _ in targets]
    batch, queries = logits.shape[:2]
    labels = torch.zeros(batch, most, dtype=torch.long, device=logits.device)
    wanted = torch.full((batch, most, 4), 0.5, device=boxes.device)
    for b, target in enumerate(targets):
        labels[b, : sizes[b]] = target["labels"]
        wanted[b, : sizes[b]] = target["boxes"]
    probs = logits.softmax(-1).gather(2, labels[:, None, :].expand(batch, queries, most))
    pairs_of = (boxes[:, :, None, :].expand(-1, -1, most, -1), wanted[:, None, :, :].expand(-1, queries, -1, -1))
    giou = 1 - generalized_box_iou_loss(_xyxy(pairs_of[0].reshape(-1, 4)), _xyxy(pairs_of[1].reshape(-1, 4)), reduction="none")
    cost = (
        -COST_CLASS * probs + COST_L1 * torch.cdist(boxes, wanted, p=1) - COST_GIOU * giou.view(batch, queries, most)
    ).cpu()
    pairs = []
    for b, size in enumerate(sizes):
        if size == 0:
            pairs.append((empty, empty))
            continue
        rows, cols = linear_sum_assignment(cost[b, :, :size].numpy())
        pairs.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
    return pairs


def set_loss(logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """DETR's loss of ``logits`` (B, Q, K + 1) and ``boxes`` (B, Q, 4, cxcywh) against ``targets``."""
    pairs = match(logits, boxes, targets)
    no_object = logits.shape[-1] - 1
    classes = torch.full(logits.shape[:2], no_object, dtype=torch.long, device=logits.device)
    batch_index = torch.cat([torch.full_like(rows, b) for b, (rows, _) in enumerate(pairs)]).to(logits.device)
    pred_index = torch.cat([rows for rows, _ in pairs]).to(logits.device)
    classes[batch_index, pred_index] = torch.cat(
        [t["labels"][cols.to(t["labels"].device)] for t, (_, cols) in zip(targets, pairs, strict=True)]
    ).to(logits.device)
    weight = torch.ones(logits.shape[-1], device=logits.device)
    weight[no_object] = NO_OBJECT_WEIGHT
    loss = F.cross_entropy(logits.flatten(0, 1), classes.flatten(), weight=weight)

    matched = boxes[batch_index, pred_index]
    wanted = torch.cat([t["boxes"][cols.to(t["boxes"].device)] for t, (_, cols) in zip(targets, pairs, strict=True)])
    count = max(1, wanted.shape[0])
    if wanted.shape[0]:
        loss = loss + WEIGHT_L1 * F.l1_loss(matched, wanted, reduction="sum") / count
        loss = loss + WEIGHT_GIOU * generalized_box_iou_loss(_xyxy(matched), _xyxy(wanted), reduction="sum") / count
    return loss


def detection_loss(outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """The set loss of the decoder's predictions plus that of the encoder's dense head (two-stage DETR)."""
    return set_loss(outputs["logits"], outputs["boxes"], targets) + set_loss(
        outputs["dense_logits"], outputs["dense_boxes"], targets
    )
