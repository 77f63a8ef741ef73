"""The medical-imaging task: its profiles and ``run(ctx)``, which trains and tests a timm ViT on 2-D slices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from attnbench_plugins.tasks.image_classification import vit

from attnbench.specs import Metric, RunContext
from attnbench.training import seed_everything

from . import data


def classification():
    """torchmetrics' functional classification metrics, imported when scoring (importing torchmetrics
    takes seconds, and listing tasks must not pay for it)."""
    from torchmetrics.functional import classification as metrics

    return metrics

#: Variant knobs scaled to 64-token sequences (see image-classification).
ATTENTION_OPTIONS = {"window": 15, "k": 16, "landmarks": 8}

_COMMON = {
    "weight_decay": 0.05, "clip_norm": 1.0, "label_smoothing": 0.0, "dropout": 0.0, "pool": "max",
    "image_size": 32, "angles": 40, "photons": 1e4, "attention_options": ATTENTION_OPTIONS,
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_COMMON, "data_seed": 1, "n_train": 128, "n_val": 32, "n_test": 64,
        "patch_size": 8, "max_grid": 8, "dim": 32, "depth": 1, "heads": 2, "mlp_ratio": 2.0,
        "steps": 10, "batch_size": 32, "eval_batch_size": 128, "lr": 3e-3, "warmup_steps": 2,
    },
    "quick": {
        **_COMMON, "data_seed": 1, "n_train": 1000, "n_val": 200, "n_test": 400,
        "patch_size": 4, "max_grid": 8, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0,
        "steps": 500, "batch_size": 32, "eval_batch_size": 200, "lr": 3e-3, "warmup_steps": 50,
    },
    "standard": {
        **_COMMON, "data_seed": 1, "n_train": 8000, "n_val": 1000, "n_test": 2000,
        "patch_size": 4, "max_grid": 8, "dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 2.0,
        "steps": 4000, "batch_size": 64, "eval_batch_size": 500, "lr": 1e-3, "warmup_steps": 200, "dropout": 0.1,
    },
    # MedMNIST+ scale (e.g. a 64x64 or 128x128 set from --data-dir): every image, ViT-S.
    "full": {
        **_COMMON, "data_seed": 1, "image_size": 64, "angles": 90, "n_train": None, "n_val": None, "n_test": None,
        "patch_size": 4, "max_grid": 16, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0,
        "steps": 50000, "batch_size": 128, "eval_batch_size": 500, "lr": 5e-4, "warmup_steps": 2500,
        "dropout": 0.1, "drop_path": 0.1,
    },
}


def _sizes(profile: str) -> str:
    c = PROFILES[profile]
    n = "/".join("all" if c[k] is None else str(c[k]) for k in ("n_train", "n_val", "n_test"))
    return (f"{profile}: {n} train/val/test {c['image_size']}x{c['image_size']} slices, ViT d={c['dim']} "
            f"x{c['depth']} layers, patch {c['patch_size']}, {c['steps']} steps")


DESCRIPTION = (
    "Lesion detection on 2-D CT slices with a timm VisionTransformer (max-pooled patch tokens: is there a "
    "lesion anywhere) whose "
    "attention is the variant. Default data is SIMULATED, not patient data: random-ellipse anatomical "
    "phantoms (Shepp-Logan style body, 2-3 organs, vertebra), half with a hypo- or hyper-dense mass "
    "(radius 2.5-4.5 px at 32x32, contrast 20-40% of soft tissue), scanned by skimage's radon transform "
    "over few views with Poisson "
    "photon noise and reconstructed by filtered back projection (iradon), so the slices carry real "
    "low-dose CT streaks and grain; seeded, generated at run time and held in MedMNIST .npz layout. "
    "--data-dir: a directory with one MedMNIST .npz (train/val/test_images and _labels; any 2-D set, "
    "grayscale or RGB, binary or multi-class). Sizes (n_* cap --data-dir splits): "
    + "; ".join(_sizes(p) for p in PROFILES)
    + ". Metrics as MedMNIST reports them: test AUC (primary; torchmetrics binary AUROC, or macro one-vs-rest "
    "AUROC for multi-class) and accuracy; baselines: auc_baseline 0.5, chance and majority-class accuracy. "
    f"Variant options: {ATTENTION_OPTIONS}. Variants that return weights save the last layer's attention map "
    "of test slice 0 (attention_map.png)."
)


def auroc(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """MedMNIST's AUC: binary AUROC of the positive class, or macro one-vs-rest AUROC."""
    probs = scores.float().softmax(-1)
    if num_classes == 2:
        return float(classification().binary_auroc(probs[:, 1], labels))
    return float(classification().multiclass_auroc(probs, labels, num_classes=num_classes, average="macro"))


class MedicalImagingTask:
    """Classify 2-D medical slices with a small timm ViT on the variant (see :data:`DESCRIPTION`)."""

    name = "medical-imaging"
    domain = "medical"
    description = DESCRIPTION
    metric = Metric(name="auc", higher_is_better=True, unit="AUROC", lower=0.0, upper=1.0, baseline="auc_baseline")
    requires: frozenset[str] = frozenset()
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``--set`` takes only these values of an enumerated setting (anything else is refused before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"pool": vit.POOLS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split; report test AUC (primary) and accuracy, validation AUC,
        the baselines, and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        slices = data.load(ctx.data_dir, cfg)
        k = slices.num_classes
        model = vit.ViTClassifier(ctx, slices, cfg).to(ctx.device)
        losses = vit.train(model, slices.train, ctx, cfg)
        batch = int(cfg["eval_batch_size"])
        test = vit.logits(model, slices.test, batch, ctx.device)
        val = vit.logits(model, slices.val, batch, ctx.device)
        metrics = {
            "auc": auroc(test, slices.test.labels, k),
            "accuracy": float(classification().multiclass_accuracy(test, slices.test.labels, num_classes=k, average="micro")),
            "val_auc": auroc(val, slices.val.labels, k),
            "auc_baseline": 0.5,
            "chance": 1.0 / k,
            "majority_baseline": slices.test.majority_fraction(k),
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        }
        vit.finish(model, slices, ctx, cfg)
        return metrics


TASK = MedicalImagingTask()
