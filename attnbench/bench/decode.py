"""``attnbench bench --decode``: what serving costs per variant — prefill, per-token decoding, state size.

For each incremental variant (spec ``incremental``; the others are listed as unsupported with
their reason) and each batch size B, one fresh worker process measures, at every context C:

* **prefill** – one ``step`` of C positions on an empty state (the prompt): median time over
  up to ``repeats`` calls (fewer once ``budget`` seconds were spent), and throughput B·C / time;
* **decode** – with the state the prefill left, ``warmup`` untimed then ``steps`` timed
  one-token steps: the median per-token latency, and tokens/s = B / latency;
* **state bytes** – ``state_nbytes`` right after the prefill: the KV cache (linear in C, GQA/MQA
  smaller by the group factor), the window (bounded), or the recurrent state (constant).

Every figure has its ratio to ``sdpa`` at the same (B, C) in the same run, and every variant
the *crossover context*: the smallest C from which on its per-token time stays below sdpa's
(:func:`attnbench.bench.fit.efficiency_length`). Variants are built through
``attnbench.nn.build_attention`` (the checked ``step`` users call) with causal configs; a
grouped variant gets k, v with its own number of key/value heads, so its cache holds only those.
Outputs mirror ``bench``: rich tables, and NAME.json/.csv/.md/.png with ``--out``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnbench.bench.fit import efficiency_length, ratio
from attnbench.bench.measure import DTYPES, time_call
from attnbench.bench.sweep import BASELINE, environment
from attnbench.bench.table import DASH, TableData, fmt_ratio, fmt_value
from attnbench.bench.worker import run_isolated
from attnbench.errors import Terminated
from attnbench.runner.device import resolve_device, synchronize
from attnbench.specs import AttentionConfig, AttentionSpec

DEFAULT_CONTEXTS: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384, 32768)
DEFAULT_BATCHES: tuple[int, ...] = (1, 8)
MB = 2**20

#: The figures of one (variant, B, C) cell: field -> label, and whether lower is better.
FIGURES: dict[str, str] = {
    "prefill_ms": "prefill ms",
    "prefill_tok_s": "prefill tok/s",
    "decode_ms": "ms/token",
    "decode_tok_s": "tokens/s",
    "state_mb": "state MB",
}


@dataclass(frozen=True, kw_only=True)
class DecodeJob:
    """One worker's measurements: one variant at one batch size, every context in order."""

    variant: str
    contexts: tuple[int, ...]
    batch: int
    heads: int
    head_dim: int
    dtype: str
    device: str
    repeats: int
    warmup: int
    steps: int
    budget: float = float("inf")
    memory_limit: str = "none"
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    threads: int | None = None


def _config(spec: AttentionSpec, job: DecodeJob) -> AttentionConfig:
    config = AttentionConfig(num_heads=job.heads, head_dim=job.head_dim, max_len=max(job.contexts) + job.steps
                             + job.warmup + 1, causal=True, options=dict(job.options))
    if spec.kv_heads is not None:
        config = dataclasses.replace(config, num_kv_heads=int(spec.kv_heads(config)))
    return config


def run_decode_job(job: DecodeJob, emit: Callable[[dict[str, Any]], None]) -> None:
    """Measure ``job`` in this (worker) process; ``emit`` gets ``{"C": {figures}}`` after each context."""
    from attnbench import plugins
    from attnbench.nn.attention import build_attention

    if job.threads:
        torch.set_num_threads(job.threads)
    device, dtype = resolve_device(job.device), DTYPES[job.dtype]
    spec = plugins.get_attention(job.variant)
    torch.manual_seed(job.seed)
    config = _config(spec, job)
    module = build_attention(spec, config).to(device=device, dtype=dtype).eval()
    kv_heads = config.num_kv_heads or config.num_heads
    emit({"threads": torch.get_num_threads(), "kv_heads": kv_heads})
    g = torch.Generator(device="cpu").manual_seed(job.seed)

    def inputs(length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shapes = ((job.batch, job.heads, length, job.head_dim), (job.batch, kv_heads, length, job.head_dim),
                  (job.batch, kv_heads, length, job.head_dim))
        return tuple(torch.randn(s, generator=g).to(device=device, dtype=dtype) for s in shapes)

    with torch.no_grad():
        # Kernel selection, lazy tables, allocator caches: one short prefill and a few steps, untimed.
        q, k, v = inputs(min(256, min(job.contexts)))
        state = module.init_state(job.batch, device=device, dtype=dtype)
        for _ in range(job.warmup):
            _, state = module.step(q, k, v, module.init_state(job.batch, device=device, dtype=dtype))
            _, state = module.step(q[..., :1, :], k[..., :1, :], v[..., :1, :], state)
        for context in job.contexts:
            q, k, v = inputs(context)
            holder: dict[str, Any] = {}

            def prefill(q=q, k=k, v=v, holder=holder) -> None:
                holder["state"] = None  # let the previous state go before the next is built
                holder["state"] = module.step(q, k, v, module.init_state(job.batch, device=device, dtype=dtype))[1]

            prefill_times = time_call(prefill, device, repeats=job.repeats, budget=job.budget)
            state = holder.pop("state")
            state_bytes = int(module.state_nbytes(state))
            del q, k, v
            nq, nk, nv = inputs(job.warmup + job.steps + 1)
            for i in range(job.warmup + 1):  # +1: a KV cache grows its buffer at the first step after a prefill
                _, state = module.step(nq[..., i:i + 1, :], nk[..., i:i + 1, :], nv[..., i:i + 1, :], state)
            times = []
            for i in range(job.warmup + 1, job.warmup + 1 + job.steps):
                synchronize(device)
                start = time.perf_counter()
                _, state = module.step(nq[..., i:i + 1, :], nk[..., i:i + 1, :], nv[..., i:i + 1, :], state)
                synchronize(device)
                times.append(time.perf_counter() - start)
            del state
            emit({str(context): {
                "prefill_ms": statistics.median(prefill_times) * 1000,
                "prefill_ms_all": [t * 1000 for t in prefill_times],
                "decode_ms": statistics.median(times) * 1000,
                "decode_ms_all": [t * 1000 for t in times],
                "state_bytes": state_bytes,
            }})


@dataclass(frozen=True, kw_only=True)
class DecodePlan:
    """What ``bench --decode`` measures."""

    specs: Sequence[AttentionSpec]
    contexts: Sequence[int] = DEFAULT_CONTEXTS
    batches: Sequence[int] = DEFAULT_BATCHES
    heads: int = 4
    head_dim: int = 64
    dtype: str = "float32"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    repeats: int = 3
    warmup: int = 2
    steps: int = 32
    timeout: float = 1800.0
    budget: float = float("inf")
    memory_limit: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)
    threads: int | None = None

    def job(self, spec: AttentionSpec, batch: int) -> DecodeJob:
        """The worker's job for ``spec`` at batch size ``batch``."""
        return DecodeJob(variant=spec.name, contexts=tuple(sorted(self.contexts)), batch=batch, heads=self.heads,
                         head_dim=self.head_dim, dtype=self.dtype, device=str(self.device), repeats=self.repeats,
                         warmup=self.warmup, steps=self.steps, budget=self.budget, memory_limit=self.memory_limit,
                         options=dict(self.options), threads=self.threads)


@dataclass(kw_only=True)
class DecodeMeasurement:
    """One (variant, B, C) cell with its ratios to sdpa at the same (B, C)."""

    variant: str
    batch: int
    context: int
    status: str
    error: str = ""
    prefill_ms: float | None = None
    prefill_tok_s: float | None = None
    decode_ms: float | None = None
    decode_tok_s: float | None = None
    state_mb: float | None = None
    state_bytes: int | None = None
    kv_heads: int | None = None
    prefill_ms_all: list[float] = field(default_factory=list)
    decode_ms_all: list[float] = field(default_factory=list)
    ratios: dict[str, float | None] = field(default_factory=dict)

    def value(self, figure: str) -> float | None:
        """The figure named ``figure`` (a key of :data:`FIGURES`)."""
        return getattr(self, figure)


@dataclass(kw_only=True)
class DecodeResult:
    """Every cell of one run, its environment, and each variant's crossover context per batch size."""

    plan: DecodePlan
    measurements: list[DecodeMeasurement]
    meta: dict[str, Any]
    crossover: dict[str, dict[int, int | None]] = field(default_factory=dict)

    def of(self, variant: str, batch: int) -> list[DecodeMeasurement]:
        """The cells of ``variant`` at ``batch``, shortest context first."""
        return sorted((m for m in self.measurements if m.variant == variant and m.batch == batch),
                      key=lambda m: m.context)


def why_not(spec: AttentionSpec, device: torch.device) -> tuple[str, str] | None:
    """``(status, reason)`` when ``spec`` cannot be decoded here; None when it can."""
    if spec.available is not None and (reason := spec.available(device)):
        return "unavailable", reason
    if not spec.incremental:
        return "unsupported", spec.not_incremental or "its spec does not declare incremental=True"
    return None


def _cells(spec: AttentionSpec, batch: int, contexts: Sequence[int], figures: Mapping[str, Any],
           status: str, error: str) -> list[DecodeMeasurement]:
    """The cells a finished (or failed) worker produced: the first context it did not finish carries its
    status (oom, timeout, error), the longer ones are ``skipped``."""
    cells: list[DecodeMeasurement] = []
    failed_at: int | None = None
    for context in sorted(contexts):
        got = figures.get(str(context))
        if got is None:
            if failed_at is None:
                failed_at = context
                failed = DecodeMeasurement(variant=spec.name, batch=batch, context=context,
                                           status="error" if status == "ok" else status,
                                           error=error or "the worker sent no figures for this context")
                cells.append(failed)
            else:
                cells.append(DecodeMeasurement(variant=spec.name, batch=batch, context=context, status="skipped",
                                               error=f"not tried after {failed.status} at C={failed_at}"))
            continue
        cells.append(DecodeMeasurement(
            variant=spec.name, batch=batch, context=context, status="ok",
            prefill_ms=got["prefill_ms"], prefill_tok_s=batch * context / (got["prefill_ms"] / 1000),
            decode_ms=got["decode_ms"], decode_tok_s=batch / (got["decode_ms"] / 1000),
            state_bytes=got["state_bytes"], state_mb=got["state_bytes"] / MB, kv_heads=figures.get("kv_heads"),
            prefill_ms_all=got["prefill_ms_all"], decode_ms_all=got["decode_ms_all"],
        ))
    return cells


def run_decode(plan: DecodePlan, on_done: Callable[[list[DecodeMeasurement]], None] | None = None,
               on_start: Callable[[AttentionSpec, int], None] | None = None) -> DecodeResult:
    """Measure every (variant, B), each in a fresh worker; sdpa first, so every ratio is from this run."""
    if not plan.specs or plan.specs[0].name != BASELINE:
        raise ValueError(f"the decode benchmark needs the baseline {BASELINE!r} first in its variants")
    meta = environment(_sweep_view(plan))
    meta.update({"contexts": sorted(plan.contexts), "batches": list(plan.batches), "decode_steps": plan.steps,
                 "threads": plan.threads or f"torch's default ({torch.get_num_threads()})",
                 "timing": f"prefill: median of up to {plan.repeats} one-step prefills; decode: median of "
                           f"{plan.steps} one-token steps after {plan.warmup + 1} untimed ones; between device "
                           "synchronisations",
                 "isolation": f"one fresh spawned process per (variant, B), every context in it, timeout "
                              f"{plan.timeout:g} s"})
    result = DecodeResult(plan=plan, measurements=[], meta=meta)
    started = time.perf_counter()
    try:
        for batch in plan.batches:
            for spec in plan.specs:
                refusal = why_not(spec, plan.device)
                if refusal:
                    cells = [DecodeMeasurement(variant=spec.name, batch=batch, context=c, status=refusal[0],
                                               error=refusal[1]) for c in sorted(plan.contexts)]
                else:
                    if on_start:
                        on_start(spec, batch)
                    outcome = run_isolated(plan.job(spec, batch), plan.timeout, runner=run_decode_job)
                    cells = _cells(spec, batch, plan.contexts, outcome.figures, outcome.status, outcome.error)
                result.measurements += cells
                if on_done:
                    on_done(cells)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (attnbench.errors.Terminated)
        result.meta["interrupted"] = "SIGTERM" if isinstance(stop, Terminated) else "SIGINT"
    result.meta["wall_s"] = round(time.perf_counter() - started, 1)
    add_ratios(result)
    return result


def _sweep_view(plan: DecodePlan) -> Any:
    """The fields :func:`attnbench.bench.sweep.environment` reads, from a decode plan."""
    from attnbench.bench.sweep import SweepPlan

    return SweepPlan(specs=plan.specs, lengths=sorted(plan.contexts), batch=plan.batches[0], heads=plan.heads,
                     head_dim=plan.head_dim, causal=True, dtype=plan.dtype, device=plan.device, repeats=plan.repeats,
                     warmup=plan.warmup, timeout=plan.timeout, budget=plan.budget, memory_limit=plan.memory_limit,
                     backward=False, options=plan.options)


def add_ratios(result: DecodeResult) -> None:
    """Each cell's ratio to sdpa's at the same (B, C), and each variant's crossover context per B."""
    base = {(m.batch, m.context): m for m in result.measurements if m.variant == BASELINE}
    for m in result.measurements:
        ref = base.get((m.batch, m.context))
        m.ratios = {f: ratio(m.value(f), ref.value(f) if ref else None) for f in FIGURES}
    for spec in result.plan.specs:
        result.crossover[spec.name] = {}
        for batch in result.plan.batches:
            rows = result.of(spec.name, batch)
            baseline = [base[(batch, m.context)].decode_ms if (batch, m.context) in base else None for m in rows]
            result.crossover[spec.name][batch] = efficiency_length(
                [m.context for m in rows], [m.decode_ms for m in rows], baseline)


# --- tables and files ---------------------------------------------------------------------------------


def measurement_table(result: DecodeResult) -> TableData:
    """Every (variant, B, C) cell with each figure and its ratio to sdpa."""
    headers = ["variant", "B", "C", "status"] + [f"{label} (×{BASELINE})" for label in FIGURES.values()]
    table = TableData(
        title=f"Decoding cost per variant, batch size B and context C, with the ratio to {BASELINE} in this run",
        headers=headers, right=set(range(1, len(headers))) - {3},
        caption="prefill: one step over the C-token prompt; ms/token: one decoding step at context C; "
                "state MB: KV cache, window or recurrent state after the prefill (state_nbytes).",
    )
    for batch in result.plan.batches:
        for spec in result.plan.specs:
            rows = result.of(spec.name, batch)
            if rows and all(m.status in ("unavailable", "unsupported") for m in rows):
                table.rows.append([spec.name, str(batch), "all", _short(f"{rows[0].status}: {rows[0].error}")]
                                  + [DASH] * len(FIGURES))
            else:
                for m in rows:
                    status = m.status if m.status == "ok" else _short(f"{m.status}: {m.error}")
                    cells = [DASH if m.value(f) is None else f"{fmt_value(m.value(f))} ({_ratio(m.ratios.get(f))})"
                             for f in FIGURES]
                    table.rows.append([m.variant, str(batch), str(m.context), status, *cells])
            table.breaks.add(len(table.rows) - 1)
    return table


def summary_table(result: DecodeResult) -> TableData:
    """Per variant: state growth, and the context from which its per-token time stays below sdpa's."""
    batches = list(result.plan.batches)
    headers = ["variant", "complexity", "state MB at smallest/largest C (B=1)"]
    headers += [f"crossover C (B={b})" for b in batches]
    table = TableData(
        title=f"Decoding summary: state growth and where the per-token time falls below {BASELINE}'s",
        headers=headers, right=set(range(2, len(headers))),
        caption=f"Crossover C: the smallest measured context from which on the variant's ms/token stays below "
                f"{BASELINE}'s at every longer measured context in this run ({DASH} if never).",
    )
    for spec in result.plan.specs:
        rows = [m for m in result.of(spec.name, batches[0]) if m.state_mb is not None]
        growth = f"{fmt_value(rows[0].state_mb)} → {fmt_value(rows[-1].state_mb)}" if rows else DASH
        crossings = [DASH if result.crossover[spec.name].get(b) is None else str(result.crossover[spec.name][b])
                     for b in batches]
        table.rows.append([spec.name, spec.complexity, growth, *crossings])
    return table


def _ratio(value: float | None) -> str:
    """A ratio to sdpa; below 0.01 with two significant digits (a window's 0.005× is not 0.00×)."""
    if value is not None and 0 < value < 0.01:
        return f"{value:.2g}×"
    return fmt_ratio(value)


def read_json(path: Path) -> DecodeResult:
    """A :class:`DecodeResult` back from the json :func:`write_json` wrote (to redraw its tables and plot)."""
    from attnbench import plugins

    payload = json.loads(Path(path).read_text())
    if payload.get("kind") != "decode":
        raise ValueError(f"{path}: not a json written by `attnbench bench --decode --out`")
    meta = payload["meta"]
    names = list(dict.fromkeys(m["variant"] for m in payload["measurements"]))
    plan = DecodePlan(specs=[plugins.get_attention(n) for n in names], contexts=meta["contexts"],
                      batches=meta["batches"], heads=meta["shape"]["heads"], head_dim=meta["shape"]["head_dim"],
                      dtype=meta["shape"]["dtype"], steps=meta["decode_steps"])
    fields = {f.name for f in dataclasses.fields(DecodeMeasurement)} - {"ratios"}
    rows = [DecodeMeasurement(**{k: v for k, v in m.items() if k in fields}) for m in payload["measurements"]]
    result = DecodeResult(plan=plan, measurements=rows, meta=meta)
    add_ratios(result)
    return result


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def measurement_dict(m: DecodeMeasurement) -> dict[str, Any]:
    """A cell as plain data, ratios flattened to ``<figure>_vs_sdpa``."""
    data = dataclasses.asdict(m)
    data.update({f"{f}_vs_{BASELINE}": v for f, v in data.pop("ratios").items()})
    return data


def write_json(result: DecodeResult, path: Path) -> Path:
    """Every cell, the crossover contexts and the environment, as one json file."""
    payload = {"kind": "decode", "meta": result.meta, "baseline": BASELINE,
               "measurements": [measurement_dict(m) for m in result.measurements],
               "crossover": {v: {str(b): c for b, c in per.items()} for v, per in result.crossover.items()}}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def write_csv(result: DecodeResult, path: Path) -> Path:
    """One row per (variant, B, C) with every figure and its ratio to sdpa."""
    fields = ["variant", "batch", "context", "status", "error", "kv_heads", "state_bytes"]
    fields += [name for f in FIGURES for name in (f, f"{f}_vs_{BASELINE}")]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for m in result.measurements:
            writer.writerow(measurement_dict(m))
    return path


def write_markdown(result: DecodeResult, path: Path, command: str, images: Sequence[Path] = ()) -> Path:
    """Both tables as markdown, headed by the command and its environment."""
    from attnbench.bench.table import to_markdown

    meta = result.meta
    loads = "/".join(f"{x:.2f}" for x in meta.get("load_average_start") or []) or "unknown"
    lines = [
        f"# attnbench bench --decode on {meta['device']}", "", "```", command, "```", "",
        f"- attnbench {meta['attnbench_version']}, torch {meta['torch_version']}, Python {meta['python']}, "
        f"{meta['platform']}",
        f"- shape: H={result.plan.heads}, D={result.plan.head_dim}, {result.plan.dtype}, causal; "
        f"B = {', '.join(map(str, result.plan.batches))}; contexts {', '.join(map(str, meta['contexts']))}; "
        f"torch threads per worker: {meta['threads']}",
        f"- time: {meta['timing']}",
        f"- isolation: {meta['isolation']}; run wall time {meta.get('wall_s', '?')} s",
        f"- host load average (1/5/15 min) at start {loads}: other work on the host slows and scatters the times",
    ]
    if meta.get("interrupted"):
        lines.append("- **interrupted**: the run did not finish; missing cells were not measured")
    lines += ["", to_markdown(measurement_table(result)), to_markdown(summary_table(result))]
    lines += [f"![{image.stem}]({image.name})\n" for image in images]
    path.write_text("\n".join(lines))
    return path


def write_plot(result: DecodeResult, path: Path) -> Path:
    """Per-token latency, state size and prefill throughput against the context (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnbench.bench.plot import MARKERS

    panels = (("decode_ms", "ms per token"), ("state_mb", "state MB"), ("prefill_tok_s", "prefill tokens/s"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (figure, label) in zip(axes[0], panels, strict=True):
        for index, spec in enumerate(result.plan.specs):
            for batch, style in zip(result.plan.batches, ("-", "--", ":", "-."), strict=False):
                points = [(m.context, m.value(figure)) for m in result.of(spec.name, batch) if m.value(figure)]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, linestyle=style, marker=MARKERS[index % len(MARKERS)], markersize=4,
                        color="black" if spec.name == BASELINE else colours(index % 10),
                        label=f"{spec.name} B={batch}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context C")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs C")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize="small", frameon=False)
    fig.suptitle(f"attnbench bench --decode on {result.meta['device']}: H={result.plan.heads}, "
                 f"D={result.plan.head_dim}, {result.plan.dtype}")
    fig.tight_layout(rect=(0, 0, 0.85, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
