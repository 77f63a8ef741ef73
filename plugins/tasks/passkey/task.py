"""The passkey task: its profiles and ``run(ctx)``, which trains one byte-level causal model and tests it at L, 2L, 4L."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnbench.specs import Metric
from attnbench.training.next_token import TokenSplit, sequence_accuracy, target_accuracy
from attnbench.training.probes import Probe, ProbeTask

from . import data

_MODEL = {"dropout": 0.0, "positions": "shift", "weight_decay": 0.1, "clip_norm": 1.0, "digits": 5}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_MODEL, "length": 128, "data_seed": 1, "n_train": 256, "n_test": 64, "ff_dim": 0,
        "dim": 32, "depth": 2, "heads": 1, "attention_options": {"window": 32},
        "steps": 20, "batch_size": 32, "eval_batch_size": 64, "lr": 3e-3, "warmup_steps": 2,
    },
    "quick": {
        **_MODEL, "length": 256, "data_seed": 1, "n_train": 20000, "n_test": 500, "ff_dim": 0,
        "dim": 64, "depth": 2, "heads": 1, "attention_options": {"window": 64},
        "steps": 500, "batch_size": 32, "eval_batch_size": 100, "lr": 3e-3, "warmup_steps": 50,
    },
    "standard": {
        **_MODEL, "length": 1024, "data_seed": 1, "n_train": 50000, "n_test": 1000, "ff_dim": 512,
        "dim": 128, "depth": 2, "heads": 2, "attention_options": {"window": 256},
        "steps": 10000, "batch_size": 64, "eval_batch_size": 50, "lr": 1e-3, "warmup_steps": 500,
    },
    "full": {
        **_MODEL, "length": 4096, "data_seed": 1, "n_train": 50000, "n_test": 1000, "ff_dim": 1024,
        "dim": 256, "depth": 4, "heads": 4, "attention_options": {"window": 1024},
        "steps": 20000, "batch_size": 32, "eval_batch_size": 8, "lr": 5e-4, "warmup_steps": 1000,
    },
}


def _make(cfg: Mapping[str, Any], n: int, factor: int, seed: int) -> TokenSplit:
    return data.passkey(n, int(cfg["length"]) * factor, int(cfg["digits"]), seed)


def _baselines(cfg: Mapping[str, Any], test: TokenSplit) -> dict[str, float]:
    """chance: guessing every digit (10^-digits for the whole key); digit_chance: one digit (0.1)."""
    return {"chance": 10.0 ** -int(cfg["digits"]), "digit_chance": 0.1}


PROBE = Probe(task="passkey", source="Landmark Attention's passkey prompt, seeded", vocab_size=lambda cfg: data.VOCAB_SIZE,
              make=_make, metric="accuracy", score=sequence_accuracy, baselines=_baselines,
              secondary={"digit_accuracy": target_accuracy})

DESCRIPTION = (
    "Passkey retrieval (Mohtashami & Jaggi 2023): a random 5-digit number in a sentence hidden at a random place in "
    "repeated filler text, then 'What is the pass key? The pass key is' and the number; byte-level. Metric: "
    "accuracy = the share of prompts whose every digit is predicted (= greedy decoding recovers the number); "
    "digit_accuracy beside it. Data: generated and seeded from the paper's prompt (its preamble for pretrained "
    "models left out). Model: a 2-layer causal Transformer without position embeddings "
    "(a token shift adds the previous byte to each position), the variant in its "
    "self-attention. Trained at L bytes, tested at L, 2L, 4L with more filler (accuracy@2x, accuracy@4x). "
    "Baselines: chance (10^-5) and digit_chance (0.1). Sizes: "
    + "; ".join(f"{p}: L {c['length']}, width {c['dim']}, {c['depth']} layers, {c['steps']} steps"
                for p, c in PROFILES.items())
    + ". local attention gets window = L/4. Generated: --data-dir is refused."
)


class PasskeyTask(ProbeTask):
    """Passkey retrieval: recall a number hidden in filler text (see :data:`DESCRIPTION`); digit accuracy beside it."""

    name = "passkey"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="chance")
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    probe = PROBE


TASK = PasskeyTask()
