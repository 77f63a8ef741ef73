"""The induction-heads task: its profiles and ``run(ctx)``, which trains one causal model and tests it at L, 2L, 4L."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnbench.specs import Metric
from attnbench.training.next_token import TokenSplit, target_accuracy
from attnbench.training.probes import Probe, ProbeTask

from . import data

_MODEL = {"ff_dim": 0, "dropout": 0.0, "positions": "shift", "weight_decay": 0.1, "clip_norm": 1.0}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_MODEL, "vocab_size": 16, "length": 32, "data_seed": 1, "n_train": 256, "n_test": 64,
        "dim": 32, "depth": 2, "heads": 1, "attention_options": {"window": 8},
        "steps": 20, "batch_size": 32, "eval_batch_size": 64, "lr": 3e-3, "warmup_steps": 2,
    },
    "quick": {
        **_MODEL, "vocab_size": 20, "length": 64, "data_seed": 1, "n_train": 30000, "n_test": 1000,
        "dim": 64, "depth": 2, "heads": 1, "attention_options": {"window": 16},
        "steps": 1000, "batch_size": 64, "eval_batch_size": 250, "lr": 3e-3, "warmup_steps": 50,
    },
    # H3's induction-head setting (vocabulary 20) at a longer length, with a wider model.
    "standard": {
        **_MODEL, "vocab_size": 20, "length": 256, "data_seed": 1, "n_train": 100000, "n_test": 3000,
        "dim": 128, "depth": 2, "heads": 2, "attention_options": {"window": 64},
        "steps": 10000, "batch_size": 128, "eval_batch_size": 250, "lr": 1e-3, "warmup_steps": 500,
    },
    "full": {
        **_MODEL, "vocab_size": 20, "length": 1024, "data_seed": 1, "n_train": 200000, "n_test": 3000,
        "dim": 256, "depth": 2, "heads": 4, "attention_options": {"window": 256},
        "steps": 20000, "batch_size": 128, "eval_batch_size": 50, "lr": 5e-4, "warmup_steps": 1000,
    },
}


def _make(cfg: Mapping[str, Any], n: int, factor: int, seed: int) -> TokenSplit:
    return data.induction_head(n, int(cfg["length"]) * factor, int(cfg["vocab_size"]), seed)


def _baselines(cfg: Mapping[str, Any], test: TokenSplit) -> dict[str, float]:
    """chance: a uniform guess among the V − 1 ordinary tokens; frequency_baseline: the sequence's commonest token."""
    vocab = int(cfg["vocab_size"])
    return {"chance": 1.0 / (vocab - 1), "frequency_baseline": data.most_frequent_accuracy(test, vocab)}


PROBE = Probe(task="induction-heads", source="H3's induction-head generator, seeded",
              vocab_size=lambda cfg: int(cfg["vocab_size"]), make=_make, metric="accuracy", score=target_accuracy,
              baselines=_baselines)

DESCRIPTION = (
    "Induction heads (Olsson et al. 2022; H3's synthetic, Fu et al. 2023): random tokens; a trigger token "
    "appears once at a random place and again at the end, and the model must predict the token that followed "
    "its first occurrence (A B ... A -> B). Metric: accuracy at the last position. Data: generated and seeded. "
    "Model: a 2-layer causal Transformer without MLPs or position embeddings "
    "(a token shift adds the previous token to each position), the variant in its "
    "self-attention. Trained at L, tested at L, 2L, 4L (accuracy@2x, accuracy@4x). Baselines: chance "
    "(1/(V-1)) and frequency_baseline (the sequence's commonest token). Sizes: "
    + "; ".join(f"{p}: V {c['vocab_size']}, L {c['length']}, width {c['dim']}, {c['steps']} steps"
                for p, c in PROFILES.items())
    + ". local attention gets window = L/4. Generated: --data-dir is refused."
)


class InductionHeadsTask(ProbeTask):
    """Induction heads: recall the token after a trigger's earlier occurrence (see :data:`DESCRIPTION`)."""

    name = "induction-heads"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0,
                    baseline="frequency_baseline")
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    probe = PROBE


TASK = InductionHeadsTask()
