"""Scaling curves for the HTML report, from the json that ``attnbench bench --out`` writes.

``attnbench report --html DIR --bench PATH.json`` adds a section per file. A decode json
(``attnbench bench --decode --out``) gets per-token latency, state size and prefill
throughput against the context, with the crossover table (:func:`decode_section`); any
other bench json gets time and peak
memory against L on log-log axes (the bench's own :func:`attnbench.bench.plot.write_plot`),
each variant's fitted log-log slopes and efficiency lengths (:func:`attnbench.bench.sweep.summarize`,
hence :mod:`attnbench.bench.fit`) and every measurement with its ratio to ``sdpa``.

The json holds measurements, not the variants' specs; a sweep is rebuilt with stand-ins
carrying each variant's name and complexity, so a file from a machine whose plugins are
not installed here still renders.
"""

from __future__ import annotations

import html
import json
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from attnbench.bench.plot import write_plot
from attnbench.bench.sweep import BASELINE, Measurement, SweepPlan, SweepResult, summarize
from attnbench.bench.table import TableData, measurement_table, summary_table
from attnbench.errors import DataError


@dataclass(frozen=True, kw_only=True)
class BenchVariant:
    """What a bench json records of a variant: its name and stated complexity."""

    name: str
    complexity: str = ""


_FIELDS = {f.name for f in fields(Measurement)} - {"ratios"}


def _measurement(data: dict[str, Any]) -> Measurement:
    ratios = {k.removesuffix(f"_vs_{BASELINE}"): v for k, v in data.items() if k.endswith(f"_vs_{BASELINE}")}
    return Measurement(**{k: v for k, v in data.items() if k in _FIELDS}, ratios=ratios)


def load_sweep(path: str | Path) -> SweepResult:
    """Read a json written by ``attnbench bench --out`` back into a :class:`SweepResult`.

    The slopes are fitted again from the measurements over the lengths the file's own
    fits used, so they equal the ones ``attnbench bench`` printed. A file that is missing
    or is not such a json is a :class:`DataError` naming it.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        meta, records = payload["meta"], payload["measurements"]
        shape = meta["shape"]
        measurements = [_measurement(m) for m in records]
    except FileNotFoundError:
        raise DataError(f"--bench {path}: no such file; pass the json that `attnbench bench --out DIR` wrote "
                        "(e.g. benchmarks/variant-cost-cpu.json)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"--bench {path} is not an `attnbench bench` json (expected 'meta' with 'shape' and a "
                        f"'measurements' list): {type(exc).__name__}: {exc}") from None
    summary = payload.get("summary") or []
    complexity = {s.get("variant"): s.get("complexity", "") for s in summary}
    names = [s["variant"] for s in summary if "variant" in s]
    names += [m.variant for m in measurements if m.variant not in names]
    names = [BASELINE] * (BASELINE in names) + [n for n in names if n != BASELINE]
    plan = SweepPlan(specs=[BenchVariant(name=n, complexity=complexity.get(n) or "") for n in names],
                     lengths=meta.get("lengths") or sorted({m.length for m in measurements}),
                     batch=shape["batch"], heads=shape["heads"], head_dim=shape["head_dim"],
                     causal=bool(shape.get("causal")), dtype=shape.get("dtype", "float32"),
                     backward=bool(meta.get("backward", True)))
    result = SweepResult(plan=plan, measurements=measurements, meta=meta)
    result.summaries = summarize(result, _fit_range(summary))
    return result


def load_bench(path: str | Path) -> SweepResult | Any:
    """Either kind of bench json: a decode run (``"kind": "decode"``, read back by
    :func:`attnbench.bench.decode.read_json`) or a length sweep (:func:`load_sweep`)."""
    path = Path(path)
    try:
        kind = json.loads(path.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None  # load_sweep names the problem
    if kind != "decode":
        return load_sweep(path)
    from attnbench.bench import decode

    try:
        return decode.read_json(path)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"--bench {path} is not a whole `attnbench bench --decode` json: {type(exc).__name__}: {exc}; "
                        "pass the json that `attnbench bench --decode --out DIR` wrote") from None


def is_decode(result: Any) -> bool:
    """Whether a loaded bench result is a decode run (else a length sweep)."""
    return not isinstance(result, SweepResult)


def _fit_range(summary: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """The widest range the stored fits covered: every stored fit lies inside the range
    the bench was given, and the outermost ones touch its measured ends."""
    fits = [f for s in summary for f in (s.get("slopes") or {}).values() if isinstance(f, dict)]
    if not fits:
        return (None, None)
    return (min(f["lo"] for f in fits), max(f["hi"] for f in fits))


def _table(data: TableData) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in data.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in data.rows)
    caption = f"<caption>{html.escape(data.title)}</caption>"
    note = f"<p class='env'>{html.escape(data.caption)}</p>" if data.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def plot_png(result: SweepResult) -> bytes:
    """The bench's log-log figure (time and memory vs L) as PNG bytes."""
    with tempfile.TemporaryDirectory(prefix="attnbench-scaling-") as folder:
        return write_plot(result, Path(folder) / "scaling.png").read_bytes()


def decode_plot_png(result: Any) -> bytes:
    """The decode run's figure (ms/token, state MB, prefill tokens/s vs context) as PNG bytes."""
    from attnbench.bench.decode import write_plot as write_decode_plot

    with tempfile.TemporaryDirectory(prefix="attnbench-decode-") as folder:
        return write_decode_plot(result, Path(folder) / "decode.png").read_bytes()


def decode_section(result: Any, source: str, image: str) -> str:
    """The report's HTML for one ``bench --decode`` file: environment, figure, the summary
    (state growth, crossover context) and every cell with its ratio to sdpa."""
    from attnbench.bench import decode

    meta, plan = result.meta, result.plan
    where = (f"{source} · {meta.get('device', '?')} · torch {meta.get('torch_version', '?')} · H={plan.heads}, "
             f"D={plan.head_dim}, {plan.dtype} · B = {', '.join(map(str, plan.batches))} · contexts "
             f"{', '.join(map(str, meta.get('contexts', [])))} · {meta.get('timing', '')}")
    return (f"<h2>decoding cost versus context ({html.escape(Path(source).name)})</h2>"
            f"<p class='env'>{html.escape(where)}</p><div class='figs scaling'>{image}</div>"
            + _table(decode.summary_table(result))
            + "<details><summary>every cell, with its ratio to sdpa</summary>"
            + _table(decode.measurement_table(result)) + "</details>")


def section(result: SweepResult, source: str, image: str) -> str:
    """The report's HTML for one bench file: heading, environment, figure, slopes, every cell.

    ``image`` is the ``<img>`` element of :func:`plot_png`'s figure (the page embeds it).
    """
    meta, shape = result.meta, result.meta["shape"]
    where = (f"{source} · {meta.get('device', '?')} · torch {meta.get('torch_version', '?')} · "
             f"B={shape['batch']}, H={shape['heads']}, D={shape['head_dim']}, {shape.get('dtype', '')}"
             f"{', causal' if shape.get('causal') else ''} · lengths {', '.join(map(str, result.plan.lengths))} · "
             f"{meta.get('timing', '')} · peak memory: {meta.get('memory_method', '')}")
    return (f"<h2>scaling with sequence length ({html.escape(Path(source).name)})</h2>"
            f"<p class='env'>{html.escape(where)}</p><div class='figs scaling'>{image}</div>"
            + _table(summary_table(result))
            + "<details><summary>every measurement, with its ratio to sdpa</summary>"
            + _table(measurement_table(result)) + "</details>")
