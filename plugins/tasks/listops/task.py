"""The ListOps task: its profiles and ``run(ctx)``, which trains and tests one classifier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnbench.nn import SequenceClassifier
from attnbench.specs import Metric, RunContext
from attnbench.training import seed_everything
from attnbench.training.classification import classification_metrics, train_classifier

from . import data, packed

#: LRA's generator settings: trees up to depth 10, operators with 2-10 arguments; one expression a
#: sequence (``--set pack=N`` packs N, their document ids handed to the attention: packed.py).
_LRA_TREES = {"max_depth": 10, "max_args": 10, "pack": 1}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_LRA_TREES, "data_seed": 1, "min_length": 8, "max_length": 64,
        "n_train": 256, "n_val": 64, "n_test": 64,
        "dim": 32, "depth": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0,
        "steps": 20, "batch_size": 32, "eval_batch_size": 64,
        "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 4, "clip_norm": 1.0,
    },
    "quick": {
        **_LRA_TREES, "data_seed": 1, "min_length": 32, "max_length": 128,
        "n_train": 3000, "n_val": 500, "n_test": 1000,
        "dim": 64, "depth": 2, "heads": 4, "ff_dim": 128, "dropout": 0.0,
        "steps": 200, "batch_size": 32, "eval_batch_size": 250,
        "lr": 3e-3, "weight_decay": 0.01, "warmup_steps": 20, "clip_norm": 1.0,
    },
    "standard": {
        **_LRA_TREES, "data_seed": 1, "min_length": 100, "max_length": 512,
        "n_train": 40000, "n_val": 2000, "n_test": 2000,
        "dim": 128, "depth": 4, "heads": 4, "ff_dim": 512, "dropout": 0.1,
        "steps": 10000, "batch_size": 32, "eval_batch_size": 100,
        "lr": 5e-4, "weight_decay": 0.05, "warmup_steps": 500, "clip_norm": 1.0,
    },
    # LRA's ListOps: lengths 500-2000, 96k/2k/2k examples, its base Transformer's sizes.
    "full": {
        **_LRA_TREES, "data_seed": 1, "min_length": 500, "max_length": 2000,
        "n_train": 96000, "n_val": 2000, "n_test": 2000,
        "dim": 512, "depth": 6, "heads": 8, "ff_dim": 2048, "dropout": 0.1,
        "steps": 5000, "batch_size": 32, "eval_batch_size": 32,
        "lr": 5e-4, "weight_decay": 0.1, "warmup_steps": 1000, "clip_norm": 1.0,
    },
}

DESCRIPTION = (
    "LRA ListOps (Tay et al. 2021; Nangia & Bowman 2018): the value 0-9 of a nested "
    "MIN/MAX/MED/SM expression, 10-way classification of long sequences. Default data: drawn "
    "with LRA's ListOps generator (depth <= 10, 2-10 arguments an operator), reimplemented and "
    "seeded, with lengths strictly between "
    + ", ".join(f"{c['min_length']} and {c['max_length']} ({p})" for p, c in PROFILES.items())
    + " tokens (LRA's 500-2000 at full). --data-dir reads LRA's basic_{train,val,test}.tsv. --set pack=N packs N "
    "expressions end to end per sequence, each classified, with document_ids for attnbench.flex variants."
)


class ListOpsTask:
    """LRA ListOps: classify the value of a long nested list expression (see :data:`DESCRIPTION`)."""

    name = "listops"
    domain = "long-range"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires = frozenset({"padding_mask"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``pack`` came after the reference runs; at 1 the task is what it was, so it stays out of the hash
    neutral_settings: Mapping[str, Any] = {"pack": 1}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split, report test accuracy (primary), validation accuracy,
        the test set's majority-class share, and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)  # also when run() is called outside the harness
        max_length = int(cfg["max_length"])
        splits = data.load_dir(ctx.data_dir, max_length) if ctx.data_dir is not None else data.generated(cfg)
        if int(cfg.get("pack", 1)) > 1:
            return packed.run(ctx, splits)
        model = SequenceClassifier(
            ctx.attention, vocab_size=len(data.VOCAB), num_classes=data.NUM_CLASSES, max_len=max_length,
            dim=int(cfg["dim"]), depth=int(cfg["depth"]), heads=int(cfg["heads"]),
            ff_dim=int(cfg["ff_dim"]), dropout=float(cfg["dropout"]),
        ).to(ctx.device)
        batch_size = min(int(cfg["batch_size"]), len(splits.train))
        losses = train_classifier(model, splits.train, ctx, batch_size)
        return classification_metrics(model, splits.val, splits.test, losses, ctx, batch_size)


TASK = ListOpsTask()
