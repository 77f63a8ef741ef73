"""The MQAR task: its profiles and ``run(ctx)``, which trains one causal model and tests recall at L, 2L and 4L."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnbench.specs import Metric
from attnbench.training.next_token import TokenSplit, target_accuracy
from attnbench.training.probes import Probe, ProbeTask

from . import data

#: Zoology's generator settings and optimiser; the model is attention-only (no MLP), as Zoology's MQAR models.
_ZOOLOGY = {"power_a": 0.01, "ff_dim": 0, "dropout": 0.0, "positions": "shift", "weight_decay": 0.1, "clip_norm": 1.0}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_ZOOLOGY, "vocab_size": 64, "num_kv_pairs": 2, "length": 32, "data_seed": 1, "n_train": 256, "n_test": 64,
        "dim": 32, "depth": 1, "heads": 1, "attention_options": {"window": 8},
        "steps": 20, "batch_size": 32, "eval_batch_size": 64, "lr": 3e-3, "warmup_steps": 2,
    },
    # The measured CPU recipe of issue 19: V 256, 4 pairs, L 64, 2 layers of width 64, 1 head, batch 64, lr 3e-3.
    "quick": {
        **_ZOOLOGY, "vocab_size": 256, "num_kv_pairs": 4, "length": 64, "data_seed": 1, "n_train": 20000,
        "n_test": 1000, "dim": 64, "depth": 2, "heads": 1, "attention_options": {"window": 16},
        "steps": 1000, "batch_size": 64, "eval_batch_size": 250, "lr": 3e-3, "warmup_steps": 50,
    },
    # Zoology's Figure 2 hardest column (L 256, 16 pairs, V 8192, 100k training examples), width 128;
    # --sweep length=64,128 with num_kv_pairs=4,8 gives its other columns.
    "standard": {
        **_ZOOLOGY, "vocab_size": 8192, "num_kv_pairs": 16, "length": 256, "data_seed": 1, "n_train": 100000,
        "n_test": 3000, "dim": 128, "depth": 2, "heads": 1, "attention_options": {"window": 64},
        "steps": 25000, "batch_size": 256, "eval_batch_size": 250, "lr": 1e-3, "warmup_steps": 1000,
    },
    "full": {
        **_ZOOLOGY, "vocab_size": 8192, "num_kv_pairs": 64, "length": 512, "data_seed": 1, "n_train": 250000,
        "n_test": 3000, "dim": 256, "depth": 2, "heads": 2, "attention_options": {"window": 128},
        "steps": 50000, "batch_size": 256, "eval_batch_size": 100, "lr": 5e-4, "warmup_steps": 2000,
    },
}


def _make(cfg: Mapping[str, Any], n: int, factor: int, seed: int) -> TokenSplit:
    """``n`` examples at ``factor``× the length, with ``factor``× the key-value pairs (Zoology's (L, kv) scale together)."""
    return data.multiquery_ar(n, int(cfg["length"]) * factor, int(cfg["num_kv_pairs"]) * factor,
                              int(cfg["vocab_size"]), float(cfg["power_a"]), seed)


def _baselines(cfg: Mapping[str, Any], test: TokenSplit) -> dict[str, float]:
    """chance: a uniform guess among the V/2 value tokens; context_baseline: a uniform guess among
    the example's own kv values (what a model that knows "a value from the context" but not which gets)."""
    vocab = int(cfg["vocab_size"])
    return {"chance": 1.0 / (vocab - vocab // 2), "context_baseline": 1.0 / int(cfg["num_kv_pairs"])}


PROBE = Probe(task="mqar", source="Zoology's MQAR generator, seeded", vocab_size=lambda cfg: int(cfg["vocab_size"]),
              make=_make, metric="accuracy", score=target_accuracy, baselines=_baselines)


def _sizes(profile: str) -> str:
    c = PROFILES[profile]
    return (f"{profile}: V {c['vocab_size']}, {c['num_kv_pairs']} pairs at L {c['length']}, {c['depth']} layers "
            f"of width {c['dim']}, {c['steps']} steps of {c['batch_size']}")


DESCRIPTION = (
    "Multi-query associative recall (Zoology, Arora et al. 2024): key-value pairs, then each key queried once "
    "at a power-law gap (a = 0.01) among random tokens; the model must emit the key's value at each query. "
    "Metric: accuracy over the queries. Data: Zoology's generator, reimplemented and seeded (keys from [1, V/2), "
    "values from [V/2, V), without replacement). Model: a causal Transformer without MLPs and without position "
    "embeddings (a token shift adds the previous token to each position; positional variants bring their own), "
    "the variant in its self-attention. Length "
    "extrapolation: trained at L, tested at L, 2L and 4L with the pairs scaled alike (accuracy@2x, accuracy@4x). "
    "Baselines: chance (2/V) and context_baseline (1/kv: some value of the context). Sizes: "
    + "; ".join(_sizes(p) for p in PROFILES)
    + ". local attention gets window = L/4. Generated: --data-dir is refused."
)


class MqarTask(ProbeTask):
    """Multi-query associative recall (see :data:`DESCRIPTION`): query accuracy at 1×/2×/4×."""

    name = "mqar"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0,
                    baseline="context_baseline")
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    probe = PROBE


TASK = MqarTask()
