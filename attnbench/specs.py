"""The contracts that cross a plugin boundary, as frozen keyword-only dataclasses.

A variant plugin registers an :class:`AttentionSpec`; a task plugin registers an object
that satisfies the :class:`Task` protocol. The runner hands each task a
:class:`RunContext` and stores one :class:`ResultRow` per finished pairing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn

#: The capabilities a variant may declare and a task may require.
CAPABILITIES: tuple[str, ...] = ("causal", "padding_mask", "arbitrary_mask", "cross", "weights")

#: The run profiles, from cheapest to most expensive (see DESIGN.md).
PROFILES: tuple[str, ...] = ("smoke", "quick", "standard", "full")

#: Every status a result row can carry.
STATUSES: tuple[str, ...] = ("ok", "failed", "timeout", "unsupported", "diverged")

#: Length extrapolation's test lengths, as multiples of the training length (ALiBi's protocol).
EXTRAPOLATION_FACTORS: tuple[int, ...] = (1, 2, 4)


def extrapolated_metric(metric: str, factor: int) -> str:
    """The row's name for ``metric`` at ``factor`` × the training length: ``accuracy`` at 1×, ``accuracy@2x`` at 2×."""
    return metric if factor == 1 else f"{metric}@{factor}x"


@dataclass(frozen=True, kw_only=True)
class AttentionConfig:
    """How one attention module is built: the model's side of the contract.

    ``options`` holds variant-specific knobs (``window``, ``num_features``,
    ``landmarks``…); a variant reads the ones it knows and ignores the rest.

    ``num_kv_heads`` is how many key/value heads the model hands the variant: k, v of
    shape (B, num_kv_heads, Lk, D) while q keeps ``num_heads`` heads, query head h
    reading key/value head ``h // (num_heads // num_kv_heads)`` (grouped-query
    attention). None means ``num_heads`` (k, v have one head per query head, the usual
    case); otherwise it must divide ``num_heads``. A model sets it only for variants
    whose spec asks for fewer key/value heads (:attr:`AttentionSpec.kv_heads`).
    """

    num_heads: int
    head_dim: int
    max_len: int | None = None
    causal: bool = False
    cross: bool = False
    dropout: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)
    num_kv_heads: int | None = None

    def __post_init__(self) -> None:
        kv = self.num_kv_heads
        if kv is not None and (kv < 1 or self.num_heads % kv):
            raise ValueError(
                f"AttentionConfig: num_kv_heads={kv} does not divide num_heads={self.num_heads}; "
                "pass a divisor of num_heads (1 = multi-query) or None (one key/value head per query head)"
            )

    def option(self, name: str, default: Any) -> Any:
        """Return ``options[name]``, or ``default`` when the model did not set it."""
        return self.options.get(name, default)


@dataclass(frozen=True, kw_only=True)
class AttentionSpec:
    """One attention variant: how to build it and what it can honestly do.

    ``build(config)`` returns a module whose forward follows
    ``torch.nn.functional.scaled_dot_product_attention``::

        forward(q, k, v, attn_mask=None, is_causal=False, need_weights=False)
        q: (B, H, Lq, D)   k, v: (B, H, Lk, D)
        attn_mask: bool, broadcastable to (B, H, Lq, Lk), True = may attend
        returns out (B, H, Lq, D), or (out, weights (B, H, Lq, Lk)) when need_weights

    Capabilities:
      * ``causal`` – honours ``is_causal=True``.
      * ``padding_mask`` – honours a key-padding mask of shape (B, 1, 1, Lk).
      * ``arbitrary_mask`` – honours a full (…, Lq, Lk) boolean mask.
      * ``cross`` – query and key lengths may differ.
      * ``weights`` – can return attention maps with ``need_weights=True``.
      * ``needs_max_len`` – ``config.max_len`` must be set at build time.

    ``exact`` means the output equals ``softmax(q kᵀ/√D + mask) v`` to float tolerance.
    ``tolerance`` is, for approximations, the largest mean absolute difference from
    exact softmax attention on the conformance kit's smooth input that the variant
    promises when built with ``tolerance_options`` (e.g. many random features); None
    means no agreement is claimed (positional variants, elu+1 linear attention).
    ``available(device)`` returns None when the variant can run there, else the reason.
    ``options`` declares the knobs the variant reads from ``AttentionConfig.options``,
    with their defaults (``{"window": 64}``); ``attnbench run --variant-option
    NAME.KEY=VALUE`` accepts exactly these keys, converted to the default's type.

    ``kv_heads`` is set only by grouped-query variants (``gqa``, ``mqa``):
    ``kv_heads(config)`` returns how many key/value heads the variant wants for
    ``config`` (a divisor of ``config.num_heads``, read from its options). A model that
    honours it (``attnbench.nn.MultiheadAttention``) projects keys and values to that
    many heads, builds the variant with ``AttentionConfig(num_kv_heads=...)`` and hands
    it k, v of shape (B, H_kv, Lk, D). None (every other variant): k, v have
    ``num_heads`` heads.

    ``attention_free`` marks a baseline that mixes ``v`` along the sequence without
    scores from ``q`` and ``k`` (a state-space or convolution layer, e.g. ``s4d``): it
    takes the same call, so it runs on every task beside the attention variants, and the
    conformance kit then expects gradients for ``v`` and the parameters only.

    ``incremental`` says the built module can decode one position (or one chunk) at a
    time (DESIGN.md, "Incremental decoding"): it has ``init_state(batch_size, *, device,
    dtype)``, ``step(q, k, v, state) -> (out, state)`` and ``state_nbytes(state)``, and
    stepping over consecutive chunks equals ``forward(..., is_causal=True)`` over the whole
    sequence. ``not_incremental`` is, for a causal variant without such a form, the reason
    (``"the low-rank projection E spans the whole sequence"``).
    """

    name: str
    build: Callable[[AttentionConfig], nn.Module]
    summary: str
    complexity: str
    exact: bool = False
    causal: bool = True
    padding_mask: bool = True
    arbitrary_mask: bool = False
    cross: bool = True
    weights: bool = False
    needs_max_len: bool = False
    tolerance: float | None = None
    tolerance_options: Mapping[str, Any] = field(default_factory=dict)
    citation: str = ""
    available: Callable[[torch.device], str | None] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    kv_heads: Callable[[AttentionConfig], int] | None = None
    attention_free: bool = False
    incremental: bool = False
    not_incremental: str = ""

    def capabilities(self) -> dict[str, bool]:
        """The declared capabilities by name (see :data:`CAPABILITIES`)."""
        return {cap: bool(getattr(self, cap)) for cap in CAPABILITIES}

    def missing(self, requires: frozenset[str] | set[str]) -> str | None:
        """Why this variant cannot serve a task needing ``requires``; None if it can."""
        lacking = sorted(cap for cap in requires if not getattr(self, cap, False))
        if lacking:
            return f"attention {self.name!r} does not support {', '.join(lacking)}"
        return None


@dataclass(frozen=True, kw_only=True)
class Metric:
    """A task's primary quality metric.

    ``baseline`` names the key of ``run()``'s metrics that holds a trivial predictor's
    score on the same data (majority class, chance, copying the source…); the overall
    leaderboard normalizes each task as (score − baseline) / (sdpa − baseline).
    """

    name: str
    higher_is_better: bool = True
    unit: str = ""
    lower: float | None = None
    upper: float | None = None
    baseline: str = ""

    def in_range(self, value: float) -> bool:
        """Whether ``value`` lies within the metric's declared bounds."""
        if value != value:  # NaN
            return False
        return (self.lower is None or value >= self.lower) and (
            self.upper is None or value <= self.upper
        )


class Progress(Protocol):
    """Where a task reports progress; the runner shows it as a progress bar."""

    def start(self, total: int, description: str = "") -> None:
        """Begin a phase of ``total`` steps."""

    def advance(self, steps: int = 1, **info: float) -> None:
        """Mark ``steps`` steps done; ``info`` (e.g. ``loss=0.3``) is shown beside the bar."""


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """Everything a task needs to train and evaluate one model with one variant.

    ``make_attention(config)`` builds the variant's module (checked for the forward
    contract); ``meter`` is where the task marks its training phase and hands over its
    trained model so the harness measures cost the same way for every variant.
    """

    attention: AttentionSpec
    make_attention: Callable[[AttentionConfig], nn.Module]
    device: torch.device
    seed: int
    profile: str
    config: Mapping[str, Any]
    data_dir: Path | None
    progress: Progress
    workdir: Path
    meter: Any  # attnbench.runner.meter.Meter; typed loosely to keep specs import-light


@runtime_checkable
class Task(Protocol):
    """A task plugin: one benchmark that trains and evaluates a model per variant.

    ``profiles`` maps each profile name to that profile's resolved configuration (a
    JSON-serialisable dict); its hash goes into every result row, so rows from
    different setups never merge. ``run(ctx)`` returns the metrics, the primary one
    (``metric.name``) included.

    Optionally, ``neutral_settings`` maps a profile key added after results were recorded to
    the value at which the task behaves exactly as before (``{"pack": 1}``): at that value
    the key is left out of the resolved configuration and its hash, so earlier rows and
    reference tables keep matching; ``--set`` still accepts it, and ``run()`` reads it with
    that default (``ctx.config.get("pack", 1)``).

    Optionally, ``setting_choices`` maps a profile key that takes one of a few values to those
    values (``{"positions": ("none", "shift", "sinusoidal", "learned")}``): ``--set`` and
    ``--sweep`` refuse any other value in one line before any work runs, naming the key, the
    value and the choices. It describes the settings and is not part of the configuration or its hash.
    """

    name: str
    domain: str
    description: str
    metric: Metric
    requires: frozenset[str]
    profiles: Mapping[str, Mapping[str, Any]]

    def run(self, ctx: RunContext) -> Mapping[str, float]:
        """Train and evaluate one model with ``ctx.attention``; return its metrics."""
        ...


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One finished pairing, as stored in the results store.

    ``config`` is the resolved setup: the task's profile configuration after any
    ``--set`` overrides, and the variant's ``--variant-option`` values under
    ``"variant_options"``; ``config_hash`` is its hash. ``artifacts`` names files the
    pairing wrote (an attention map, …) by kind.
    """

    task: str
    variant: str
    profile: str
    seed: int
    environment: str
    config_hash: str
    status: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    efficiency: Mapping[str, float] = field(default_factory=dict)
    error: str = ""
    attnbench_version: str = ""
    plugin: str = ""
    distribution: str = ""
    distribution_version: str = ""
    torch_version: str = ""
    device: str = ""
    finished_at: float = 0.0
    duration_s: float = 0.0
    config: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, int, str, str]:
        """The identity of a row: two rows with one key describe the same measurement."""
        return (self.task, self.variant, self.profile, self.seed, self.environment, self.config_hash)
