"""``attnbench bench``: the variants' forward/backward time, peak memory and FLOPs over a sweep of L.

Every figure comes with its ratio to ``sdpa`` measured in the same run, and every
variant with the log-log slope of its costs over L and its efficiency length.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from attnbench import plugins
from attnbench.bench.measure import DTYPES
from attnbench.bench.output import write_csv, write_json, write_markdown
from attnbench.bench.plot import write_plot
from attnbench.bench.sweep import (
    BASELINE,
    DEFAULT_LENGTHS,
    NOT_RUN,
    Measurement,
    SweepPlan,
    SweepResult,
    run_sweep,
    why_not,
    with_baseline,
)
from attnbench.bench.table import fmt_value, measurement_table, summary_table, to_rich
from attnbench.cli import console, err_console, warn_plugin_errors
from attnbench.errors import UnknownNameError
from attnbench.runner.device import DEVICE_CHOICES, resolve_device
from attnbench.specs import AttentionSpec

EPILOG = """\
examples:
  attnbench bench                                   every variant, default lengths, this machine
  attnbench bench --variants 'local,linformer,perf*' --lengths 1k,2k,4k,8k
  attnbench bench --no-backward --repeats 3 --time-budget 5 --out results --name cpu-sweep
  attnbench bench --device cuda --dtype bfloat16 --lengths 4k,16k,64k --causal
  attnbench bench --variants local --option window=256 --fit-range 1k:16k
  attnbench bench --decode --variants sdpa,gqa,local,linear,retention,s4d --lengths 1k,2k,4k,8k

Each (variant, L) runs in a fresh process with --timeout seconds (start-up included);
out of memory, a timeout or an error is recorded as that cell's status and the sweep
goes on. After an oom or timeout, longer lengths of that variant are skipped unless
--keep-going. With --decode, --lengths are the contexts C (default 1k…32k) and each
(variant, B) of --batches runs in one process holding every context (--timeout then
bounds that process, default 1800 s). sdpa is always measured: every figure's ×sdpa ratio is taken in this run.
Peak memory is what the pass allocates above what was live before it (the CUDA
allocator's peak; on CPU the peak of torch.profiler's allocation events).
"""


def _interrupted(signal_name: str) -> int:
    """Say that the run stopped early and exit as the signal asks: 143 for SIGTERM, 130 for Ctrl-C."""
    what = "terminated (SIGTERM)" if signal_name == "SIGTERM" else "interrupted"
    err_console.print(f"{what}: the tables and files above hold the measurements finished so far")
    return 143 if signal_name == "SIGTERM" else 130


def _length(text: str) -> int:
    text = text.strip().lower()
    scale = 1024 if text.endswith("k") else 1
    try:
        value = int(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a length (an integer such as 4096 or 4k)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"length {value} must be positive")
    return value


def _lengths(text: str) -> list[int]:
    values = sorted({_length(part) for part in text.split(",") if part.strip()})
    if not values:
        raise argparse.ArgumentTypeError("give at least one length, e.g. --lengths 1k,2k,4k")
    return values


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _non_negative(text: str) -> int:
    return _integer(text, 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"timeout {value:g} s must be positive")
    return value


def _memory_limit(text: str) -> str:
    text = text.strip().lower()
    if text in ("auto", "none"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MiB, auto or none") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"memory limit {value:g} MiB must be positive")
    return f"{value:g}"


def _option(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. window=256)")
    value: object = raw
    for parse in (int, float):
        try:
            value = parse(raw)
            break
        except ValueError:
            continue
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return key.strip(), value


def _fit_range(text: str) -> tuple[int | None, int | None]:
    lo, sep, hi = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO:HI (e.g. 1k:16k; either side may be empty)")
    return (_length(lo) if lo.strip() else None, _length(hi) if hi.strip() else None)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``bench`` sub-parser."""
    p = sub.add_parser(
        "bench", help="micro-benchmark the variants' time, memory and FLOPs over sequence lengths",
        description="Measure each attention variant's forward and forward+backward time, peak memory and "
        "FLOPs over a sweep of sequence lengths, each as a ratio to sdpa measured in the same run, with "
        "the fitted log-log slope of each cost and the length where the variant starts to beat sdpa.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--variants", default="", metavar="NAMES",
                   help="comma-separated names or globs (default: every registered variant); sdpa is always added")
    p.add_argument("--lengths", type=_lengths, metavar="L,L,…",
                   help="sequence lengths, e.g. 1k,2k,4k (default: 256…16k on CPU, 256…64k on CUDA)")
    p.add_argument("--batch", type=_positive, default=1, help="batch size B (default: 1)")
    p.add_argument("--heads", type=_positive, default=4, help="number of heads H (default: 4)")
    p.add_argument("--head-dim", type=_positive, default=64, help="head dimension D (default: 64)")
    p.add_argument("--causal", action="store_true",
                   help="causal self-attention (variants without causal support are listed as unsupported)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="tensor dtype (default: float32)")
    p.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    p.add_argument("--repeats", type=_positive, default=5, help="timed calls per figure; the median is kept (5)")
    p.add_argument("--warmup", type=_non_negative, default=1, help="untimed calls before timing (default: 1)")
    p.add_argument("--timeout", type=_seconds, default=None,
                   help="seconds per measurement, process start-up included (default: 180; with --decode, "
                   "per variant and batch size: 1800)")
    p.add_argument("--time-budget", type=_seconds, default=float("inf"), metavar="S",
                   help="stop timing a pass once its timed calls took S seconds (at least one call; "
                   "default: always --repeats)")
    p.add_argument("--memory-limit", type=_memory_limit, default="auto", metavar="MB|auto|none",
                   help="CPU: cap each worker's heap so an L that does not fit is recorded as oom instead of "
                   "waking the OOM killer (default auto: 90%% of the memory available at worker start)")
    p.add_argument("--no-backward", dest="backward", action="store_false",
                   help="measure the forward pass only (faster; no fwd+bwd columns)")
    p.add_argument("--keep-going", action="store_true",
                   help="still measure longer lengths of a variant after it ran out of memory or time")
    p.add_argument("--option", dest="options", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="variant option passed to every variant's AttentionConfig.options (repeatable)")
    p.add_argument("--fit-range", type=_fit_range, default=(None, None), metavar="LO:HI",
                   help="fit the slopes over lengths in [LO, HI] only, e.g. 1k:16k (default: every finished L)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write NAME.json, NAME.csv, NAME.png and NAME.md into DIR (created if missing)")
    p.add_argument("--name", default="bench", help="file stem for --out (default: bench)")
    p.add_argument("--decode", action="store_true",
                   help="measure incremental decoding instead: prefill time and throughput at each context C "
                   "(--lengths), per-token decode latency, tokens/s and state bytes, for each batch size of "
                   "--batches, each as a ratio to sdpa (non-incremental variants are listed with their reason)")
    p.add_argument("--batches", type=_lengths, default=None, metavar="B,B,…",
                   help="with --decode: the batch sizes (default: 1,8)")
    p.add_argument("--decode-steps", type=_positive, default=32, metavar="N",
                   help="with --decode: timed one-token steps per context (default: 32)")
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="with --decode: torch intra-op threads per worker (default: torch's; 1 keeps one-token "
                   "steps from stalling on a busy shared CPU)")
    return p


def select_specs(patterns: str) -> list[AttentionSpec]:
    """The selected variants with the baseline first; unknown names raise with suggestions."""
    loaded = plugins.load()
    if BASELINE not in loaded.attention:
        raise UnknownNameError(
            f"the baseline attention {BASELINE!r} is not registered (is the built-in plugin disabled "
            "with ATTNBENCH_DISABLE_PLUGINS?); bench measures every ratio against it")
    chosen = loaded.attention.select([p for p in patterns.split(",") if p.strip()])
    return with_baseline(chosen, loaded.attention.get(BASELINE))


def run(args: argparse.Namespace) -> int:
    """Run the sweep, print both tables, and write the files when --out is given."""
    warn_plugin_errors()
    device = resolve_device(args.device)
    specs = select_specs(args.variants)
    if args.decode:
        return _run_decode(args, device, specs)
    if args.timeout is None:
        args.timeout = 180.0
    lengths = args.lengths or list(DEFAULT_LENGTHS.get(device.type, DEFAULT_LENGTHS["cpu"]))
    plan = SweepPlan(
        specs=specs, lengths=lengths, batch=args.batch, heads=args.heads, head_dim=args.head_dim,
        causal=args.causal, dtype=args.dtype, device=device, repeats=args.repeats, warmup=args.warmup,
        timeout=args.timeout, budget=args.time_budget, memory_limit=args.memory_limit,
        backward=args.backward, keep_going=args.keep_going, options=dict(args.options),
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    result = _run_with_progress(plan, args.fit_range)
    console.print(to_rich(measurement_table(result)))
    console.print(to_rich(summary_table(result)))
    console.print(f"[dim]peak memory: {result.meta['memory_method']}[/]", highlight=False)
    if args.out:
        stem = args.out / args.name
        png = write_plot(result, stem.with_suffix(".png"))
        files = [write_json(result, stem.with_suffix(".json")), write_csv(result, stem.with_suffix(".csv")), png,
                 write_markdown(result, stem.with_suffix(".md"), _command_line(), images=[png])]
        console.print("wrote " + ", ".join(str(f) for f in files), highlight=False)
    if result.meta.get("interrupted"):
        return _interrupted(result.meta["interrupted"])
    return 0


def _run_with_progress(plan: SweepPlan, fit_range: tuple[int | None, int | None]) -> SweepResult:
    total = sum(len(plan.lengths) for spec in plan.specs if why_not(spec, plan) is None)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=False) as progress:
        task = progress.add_task("bench", total=total)

        def on_start(spec: AttentionSpec, length: int) -> None:
            progress.update(task, description=f"{spec.name} L={length}")

        def on_done(m: Measurement) -> None:
            progress.console.print(_progress_line(m), highlight=False)
            progress.advance(task)

        result = run_sweep(plan, on_start=on_start, on_done=on_done, fit_range=fit_range)
        progress.update(task, description="done")
    return result


def _progress_line(m: Measurement) -> str:
    head = f"{m.variant} L={m.length}"
    if m.status in NOT_RUN:
        return f"[dim]· {head}: {m.status} ({m.error})[/]"
    figures = f"fwd {fmt_value(m.fwd_ms)} ms, peak {fmt_value(m.peak_fwd_mb)} MB"
    if m.fwdbwd_ms is not None:
        figures += f", fwd+bwd {fmt_value(m.fwdbwd_ms)} ms"
    if m.status == "ok":
        return f"[green]✓[/] {head}: {figures} ({m.wall_s:.1f} s)"
    return f"[red]✗[/] {head}: {m.status}: {m.error}"


def _run_decode(args: argparse.Namespace, device, specs: list[AttentionSpec]) -> int:
    """``bench --decode``: the decode benchmark of :mod:`attnbench.bench.decode`, its tables and files."""
    from attnbench.bench import decode

    plan = decode.DecodePlan(
        specs=specs, contexts=args.lengths or list(decode.DEFAULT_CONTEXTS),
        batches=args.batches or list(decode.DEFAULT_BATCHES), heads=args.heads, head_dim=args.head_dim,
        dtype=args.dtype, device=device, repeats=args.repeats, warmup=args.warmup, steps=args.decode_steps,
        timeout=args.timeout or 1800.0, budget=args.time_budget, memory_limit=args.memory_limit,
        options=dict(args.options), threads=args.threads,
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)

    def on_start(spec: AttentionSpec, batch: int) -> None:
        err_console.print(f"[dim]{spec.name} B={batch} …[/]", highlight=False)

    def on_done(cells: list) -> None:
        for m in cells:
            head = f"{m.variant} B={m.batch} C={m.context}"
            if m.status == "ok":
                err_console.print(f"[green]✓[/] {head}: prefill {fmt_value(m.prefill_ms)} ms, "
                                  f"{fmt_value(m.decode_ms)} ms/token, state {fmt_value(m.state_mb)} MB",
                                  highlight=False)
            else:
                err_console.print(f"[dim]· {head}: {m.status} ({m.error})[/]", highlight=False)

    result = decode.run_decode(plan, on_done=on_done, on_start=on_start)
    console.print(to_rich(decode.measurement_table(result)))
    console.print(to_rich(decode.summary_table(result)))
    if args.out:
        stem = args.out / args.name
        png = decode.write_plot(result, stem.with_suffix(".png"))
        files = [decode.write_json(result, stem.with_suffix(".json")), decode.write_csv(result, stem.with_suffix(".csv")),
                 png, decode.write_markdown(result, stem.with_suffix(".md"), _command_line(), images=[png])]
        console.print("wrote " + ", ".join(str(f) for f in files), highlight=False)
    if result.meta.get("interrupted"):
        return _interrupted(result.meta["interrupted"])
    return 0


def _command_line() -> str:
    return shlex.join(["attnbench", *sys.argv[1:]])
