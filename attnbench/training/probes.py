"""One run of a generated probe (MQAR, induction heads, selective copying, passkey retrieval).

Every probe is the same experiment around a different generator: draw a training set at
length L, train a :class:`~attnbench.nn.causal_lm.CausalLM` with the variant in causal
self-attention through the shared loop, then score fresh test sets at L, 2L and 4L
(:mod:`attnbench.training.extrapolation`), report the task's baselines on the 1× test set and
the per-sequence state size (:mod:`attnbench.training.state_size`). A task package keeps its
generator, its metric and its profiles, and hands them over as a :class:`Probe`; its task
class is a :class:`ProbeTask` (what every probe task is alike: domain, requirement, settings, run).

A probe's profile holds the model and optimiser settings read here: ``length``, ``n_train``,
``n_test``, ``data_seed``, ``dim``, ``depth``, ``heads``, ``ff_dim`` (0 = no MLP),
``dropout``, ``positions`` (``none`` or ``learned``), ``attention_options``, ``batch_size``,
``eval_batch_size`` and the :class:`~attnbench.training.loop.TrainConfig` keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attnbench.errors import DataError
from attnbench.nn.causal_lm import POSITIONS, CausalLM
from attnbench.specs import Metric, RunContext
from attnbench.training.extrapolation import length_metrics
from attnbench.training.next_token import TokenSplit, train_next_token
from attnbench.training.seeding import seed_everything
from attnbench.training.state_size import state_figures

#: ``make(config, n, factor, seed)``: ``n`` examples at ``factor`` times the training length.
Generator = Callable[[Mapping[str, Any], int, int, int], TokenSplit]
#: ``score(model, split, batch_size, device)``: a metric of the trained model on a split.
Scorer = Callable[[nn.Module, TokenSplit, int, torch.device], float]


@dataclass(frozen=True, kw_only=True)
class Probe:
    """What a probe task contributes: its generator, vocabulary, metrics and baselines.

    ``secondary`` are further scores, reported at 1× only (e.g. per-digit accuracy beside
    whole-passkey accuracy). ``baselines(config, test)`` returns the trivial predictors'
    scores on the 1× test split (``chance``, and a heuristic where one means something).
    """

    task: str
    source: str
    vocab_size: Callable[[Mapping[str, Any]], int]
    make: Generator
    metric: str
    score: Scorer
    baselines: Callable[[Mapping[str, Any], TokenSplit], dict[str, float]]
    secondary: Mapping[str, Scorer] | None = None


def refuse_data_dir(task: str, source: str, data_dir: Any) -> None:
    """A generated probe reads no files: a ``--data-dir`` is a one-line DataError saying why."""
    if data_dir is not None:
        raise DataError(
            f"task {task!r} generates its data ({source}) and reads no --data-dir, but got {data_dir}; "
            "expected no --data-dir: drop it, and size the data with --set length=N (or --sweep)"
        )


def test_seed(data_seed: int, factor: int) -> int:
    """The generator seed of the test set at ``factor``× (the training set uses ``data_seed`` itself);
    far apart, so a sweep over ``data_seed`` never tests on another setting's training data."""
    return data_seed + 1_000_003 * factor


def build_model(ctx: RunContext, vocab_size: int, length: int) -> CausalLM:
    """The profile's causal model for ``ctx``'s variant, trained at ``length``."""
    cfg = ctx.config
    return CausalLM(
        ctx.attention, vocab_size=vocab_size, dim=int(cfg["dim"]), depth=int(cfg["depth"]), heads=int(cfg["heads"]),
        ff_dim=int(cfg.get("ff_dim", 0)), dropout=float(cfg.get("dropout", 0.0)),
        positions=str(cfg.get("positions", "none")), max_len=length, options=dict(cfg.get("attention_options") or {}),
    ).to(ctx.device)


def run_probe(ctx: RunContext, probe: Probe) -> dict[str, float]:
    """Train on ``probe``'s generated data and return its metrics at 1×/2×/4×, its baselines,
    its secondary scores, the final training loss and the state-size figures."""
    refuse_data_dir(probe.task, probe.source, ctx.data_dir)
    cfg = ctx.config
    seed_everything(ctx.seed)  # also when run() is called outside the harness
    length, data_seed = int(cfg["length"]), int(cfg["data_seed"])
    n_test, eval_size = int(cfg["n_test"]), int(cfg["eval_batch_size"])
    train = probe.make(cfg, int(cfg["n_train"]), 1, data_seed)
    tests = {1: probe.make(cfg, n_test, 1, test_seed(data_seed, 1))}

    def test_split(factor: int) -> TokenSplit:
        if factor not in tests:  # longer test sets only for the lengths the model can run
            tests[factor] = probe.make(cfg, n_test, factor, test_seed(data_seed, factor))
        return tests[factor]

    model = build_model(ctx, probe.vocab_size(cfg), length)
    batch_size = min(int(cfg["batch_size"]), len(train))
    losses = train_next_token(model, train, ctx, batch_size)
    metrics = length_metrics(model, ctx, probe.metric, length,
                             lambda factor: probe.score(model, test_split(factor), eval_size, ctx.device))
    for name, score in (probe.secondary or {}).items():
        metrics[name] = score(model, tests[1], eval_size, ctx.device)
    metrics.update(probe.baselines(cfg, tests[1]))
    metrics["final_loss"] = sum(losses[-10:]) / len(losses[-10:])
    metrics.update(state_figures(model.attention_layers(), length, ctx.device))
    inputs, _ = tests[1].batch(torch.arange(min(batch_size, len(tests[1]))), ctx.device)
    ctx.meter.model(model, inputs)
    return metrics


class ProbeTask:
    """A probe task: a synthetic causal task whose ``run(ctx)`` is :func:`run_probe` with its :attr:`probe`.

    A task package subclasses it and sets ``name``, ``description``, ``metric``, ``profiles`` and
    ``probe``; the rest is the same for every probe.
    """

    name: str
    description: str
    metric: Metric
    profiles: Mapping[str, Mapping[str, Any]]
    #: The task's generator, vocabulary, scores and baselines.
    probe: Probe
    domain = "synthetic"
    requires = frozenset({"causal"})
    #: ``--set positions=…`` takes one of the causal model's position schemes (refused otherwise, before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"positions": POSITIONS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train at the profile's length; report the probe's metric at 1×/2×/4×, its secondary scores,
        baselines, the final loss and the state size (:func:`run_probe`)."""
        return run_probe(ctx, self.probe)
