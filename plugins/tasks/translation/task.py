"""The translation task: its profiles and ``run(ctx)``, which trains one encoder–decoder and scores it with BLEU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sacrebleu
import torch
import torch.nn.functional as F

from attnbench.specs import Metric, RunContext
from attnbench.training import TrainConfig, batched_eval, seed_everything, train_steps

from . import corpus, data
from .model import Seq2SeqTransformer, beam_search, greedy

#: The embedded mix: every Django and CLDR pair of at most ``max_chars`` characters a side,
#: plus ``num2words_pairs`` number phrases, split 80/5/15 per source with ``data_seed``.
_DEFAULT_DATA = {
    "data_seed": 1, "num2words_pairs": 4000, "max_chars": 80, "valid_fraction": 0.05, "test_fraction": 0.15,
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_DEFAULT_DATA, "n_train": 400, "n_test": 48, "vocab_size": 400, "max_len": 48,
        "dim": 32, "encoder_depth": 1, "decoder_depth": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0,
        "steps": 15, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.01, "warmup_steps": 3, "clip_norm": 1.0,
        "label_smoothing": 0.1, "beam": 1, "length_penalty": 1.0, "eval_batch_size": 64,
    },
    "quick": {
        **_DEFAULT_DATA, "n_train": 0, "n_test": 0, "vocab_size": 1000, "max_len": 64,
        "dim": 64, "encoder_depth": 2, "decoder_depth": 2, "heads": 4, "ff_dim": 256, "dropout": 0.0,
        "steps": 300, "batch_size": 64, "lr": 5e-3, "weight_decay": 0.01, "warmup_steps": 30, "clip_norm": 1.0,
        "label_smoothing": 0.1, "beam": 1, "length_penalty": 1.0, "eval_batch_size": 128,
    },
    "standard": {
        **_DEFAULT_DATA, "n_train": 0, "n_test": 0, "vocab_size": 4000, "max_len": 128,
        "dim": 256, "encoder_depth": 3, "decoder_depth": 3, "heads": 4, "ff_dim": 1024, "dropout": 0.2,
        "steps": 6000, "batch_size": 64, "lr": 7e-4, "weight_decay": 0.01, "warmup_steps": 400, "clip_norm": 1.0,
        "label_smoothing": 0.1, "beam": 4, "length_penalty": 1.0, "eval_batch_size": 64,
    },
    # Vaswani et al.'s base Transformer (6 + 6 layers, d = 512, 8 heads), meant for IWSLT/WMT from --data-dir.
    "full": {
        **_DEFAULT_DATA, "n_train": 0, "n_test": 0, "vocab_size": 10000, "max_len": 256,
        "dim": 512, "encoder_depth": 6, "decoder_depth": 6, "heads": 8, "ff_dim": 2048, "dropout": 0.1,
        "steps": 100000, "batch_size": 128, "lr": 5e-4, "weight_decay": 0.0001, "warmup_steps": 4000,
        "clip_norm": 1.0, "label_smoothing": 0.1, "beam": 5, "length_penalty": 1.0, "eval_batch_size": 64,
    },
}


def _sizes(profile: str) -> str:
    c = PROFILES[profile]
    train = f"{c['n_train']} training pairs" if c["n_train"] else "all training pairs"
    test = f"{c['n_test']} test pairs" if c["n_test"] else "the whole test split"
    decoding = "greedy" if c["beam"] == 1 else f"beam {c['beam']}"
    return (f"{profile}: {train}, {test}, {c['encoder_depth']}+{c['decoder_depth']} layers, d={c['dim']}, "
            f"{c['vocab_size']} BPE, {c['steps']} steps, {decoding}")


DESCRIPTION = (
    "Machine translation English→French with an encoder–decoder Transformer whose encoder self-attention, "
    "causal decoder self-attention and cross-attention are all the variant under test; teacher forcing with "
    "label smoothing, a joint byte-level BPE vocabulary trained on the training split. Metric: BLEU by "
    "sacrebleu on the test split (chrF secondary; copy_bleu = BLEU of copying the source). Default data, real "
    "human translations read offline from installed packages: Django's French gettext catalogs (~800 UI and "
    "validation messages), Unicode CLDR display names through Babel (~1,400 territories, languages, currencies, "
    "scripts), and 1,500 number phrases from num2words' English and French grammars (generated: cardinals, "
    "ordinals, years, euro amounts); deduplicated, split 80/5/15 per source with a fixed seed, BLEU reported per "
    "source too. Sizes: " + "; ".join(_sizes(p) for p in PROFILES) + ". --data-dir reads Moses-style parallel "
    "text as IWSLT/WMT ship it: train, valid (or dev) and test as .src/.tgt or .<lang> files."
)


class TranslationTask:
    """English→French translation scored by BLEU (see :data:`DESCRIPTION`)."""

    name = "translation"
    domain = "nlp"
    description = DESCRIPTION
    metric = Metric(name="bleu", higher_is_better=True, unit="BLEU", lower=0.0, upper=100.0)
    requires = frozenset({"causal", "cross", "padding_mask"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split; report test BLEU (primary), chrF, the copy baseline, BLEU per
        source, the validation loss and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)  # also when run() is called outside the harness
        pairs = data.load_dir(ctx.data_dir, cfg) if ctx.data_dir is not None else data.default_from_config(cfg)
        max_len = int(cfg["max_len"])
        tokenizer = data.train_tokenizer(pairs.src["train"], pairs.tgt["train"], int(cfg["vocab_size"]))
        train = data.encode(tokenizer, pairs.src["train"], pairs.tgt["train"], max_len, drop_long=True)
        if not len(train):
            raise ValueError(f"no training pair fits max_len={max_len} subword tokens")
        valid = data.encode(tokenizer, pairs.src["valid"], pairs.tgt["valid"], max_len, drop_long=False)
        test = data.encode(tokenizer, pairs.src["test"], pairs.tgt["test"], max_len, drop_long=False)

        model = Seq2SeqTransformer(
            ctx.attention, vocab_size=tokenizer.get_vocab_size(), max_len=max_len + 2, dim=int(cfg["dim"]),
            encoder_depth=int(cfg["encoder_depth"]), decoder_depth=int(cfg["decoder_depth"]), heads=int(cfg["heads"]),
            ff_dim=int(cfg["ff_dim"]), dropout=float(cfg["dropout"]),
        ).to(ctx.device)
        batch_size = min(int(cfg["batch_size"]), len(train))
        losses = fit(model, train, ctx, batch_size, float(cfg["label_smoothing"]))

        eval_size = int(cfg["eval_batch_size"])
        hypotheses = translate(model, tokenizer, test, ctx.device, eval_size, int(cfg["beam"]), float(cfg["length_penalty"]))
        references, sources = pairs.tgt["test"], pairs.src["test"]
        metrics = {
            "bleu": bleu(hypotheses, references),
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
            "copy_bleu": bleu(sources, references),
            "copy_chrf": sacrebleu.corpus_chrf(sources, [references]).score,
            "val_loss": validation_loss(model, valid, ctx.device, eval_size),
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        }
        origins = pairs.origin["test"]
        if ctx.data_dir is None:
            for name in corpus.SOURCES:
                rows = [i for i, origin in enumerate(origins) if origin == name]
                if rows:
                    metrics[f"bleu_{name}"] = bleu([hypotheses[i] for i in rows], [references[i] for i in rows])
        # The harness times a teacher-forced forward pass on one training batch's worth of test pairs.
        src, src_mask, tgt_in, tgt_mask, _ = test.batch(range(min(batch_size, len(test))), ctx.device)
        ctx.meter.model(model, src, src_mask, tgt_in, tgt_mask)
        return metrics


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU by sacrebleu (13a tokenisation, one reference)."""
    return sacrebleu.corpus_bleu(hypotheses, [references]).score


def fit(model: Seq2SeqTransformer, split: data.Encoded, ctx: RunContext, batch_size: int,
        label_smoothing: float) -> list[float]:
    """The profile's AdamW steps of teacher forcing through the harness's shared loop; returns the losses."""

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        src, src_mask, tgt_in, tgt_mask, tgt_out = split.batch(index, ctx.device)
        logits = model(src, src_mask, tgt_in, tgt_mask)
        value = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=data.PAD,
                                label_smoothing=label_smoothing)
        return value, len(index)

    lengths = [len(s) + len(t) for s, t in zip(split.src, split.tgt, strict=True)]
    batches = data.bucketed_batches(lengths, batch_size, torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(ctx.config), batches, loss)


def validation_loss(model: Seq2SeqTransformer, split: data.Encoded, device: torch.device, batch_size: int) -> float:
    """Mean per-token cross-entropy of the reference translations under teacher forcing."""

    def summed(index: torch.Tensor) -> tuple[float, int]:
        src, src_mask, tgt_in, tgt_mask, tgt_out = split.batch(index, device)
        logits = model(src, src_mask, tgt_in, tgt_mask)
        total = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=data.PAD, reduction="sum")
        return float(total), int((tgt_out != data.PAD).sum())

    parts = list(batched_eval(model, len(split), batch_size, summed))
    return sum(t for t, _ in parts) / max(1, sum(n for _, n in parts))


def translate(model: Seq2SeqTransformer, tokenizer, split: data.Encoded, device: torch.device, batch_size: int,
              beam: int, length_penalty: float) -> list[str]:
    """Translations of every source in ``split``, in order: greedy when ``beam`` is 1, else beam search.

    Sources are decoded in batches of similar length, so a batch of short ones stops early.
    """
    order = sorted(range(len(split)), key=lambda i: (len(split.src[i]), i))
    output: list[list[int]] = [[] for _ in order]

    def run(index: torch.Tensor) -> None:
        rows = [order[i] for i in index.tolist()]
        src = data.pad([split.src[i] for i in rows]).to(device)
        mask = src != data.PAD
        ids = greedy(model, src, mask) if beam <= 1 else beam_search(model, src, mask, beam, length_penalty)
        for row, hypothesis in zip(rows, ids, strict=True):
            output[row] = hypothesis

    for _ in batched_eval(model, len(order), batch_size, run):
        pass
    return data.decode(tokenizer, output)


TASK = TranslationTask()
