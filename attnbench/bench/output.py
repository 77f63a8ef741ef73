"""Writing a sweep to disk: json (everything), csv (one row per measurement), markdown."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attnbench.bench.sweep import BASELINE, METRICS, SweepResult, measurement_dict
from attnbench.bench.table import measurement_table, summary_table, to_markdown

CSV_FIELDS = (
    ["variant", "length", "status", "error"]
    + [name for metric in METRICS for name in (metric, f"{metric}_vs_{BASELINE}")]
    + ["fwd_ms_all", "fwdbwd_ms_all", "params", "threads", "wall_s"]
)


def summary_dicts(result: SweepResult) -> list[dict[str, Any]]:
    """Per-variant scaling figures as plain data."""
    out = []
    for s in result.summaries:
        slopes = {
            metric: None if fit is None else {"slope": fit.slope, "lo": fit.lo, "hi": fit.hi, "points": fit.points}
            for metric, fit in s.slopes.items()
        }
        out.append({"variant": s.variant, "complexity": s.complexity, "status": s.status, "reason": s.reason,
                    "slopes": slopes, "efficiency_length": dict(s.efficiency)})
    return out


def write_json(result: SweepResult, path: Path) -> Path:
    """Every measurement, the per-variant summaries and the environment, as one json file."""
    payload = {
        "meta": result.meta,
        "baseline": BASELINE,
        "measurements": [measurement_dict(m) for m in result.measurements],
        "summary": summary_dicts(result),
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def write_csv(result: SweepResult, path: Path) -> Path:
    """One row per (variant, L) with every figure and its ratio to the baseline."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for m in result.measurements:
            row = measurement_dict(m)
            for key in ("fwd_ms_all", "fwdbwd_ms_all"):
                row[key] = ";".join(f"{t:.4f}" for t in row[key])
            writer.writerow(row)
    return path


def _loads(values: list[float] | None) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "unknown"


def write_markdown(result: SweepResult, path: Path, command: str, images: Sequence[Path] = ()) -> Path:
    """Both tables as markdown, headed by the command that produced them and its environment."""
    meta = result.meta
    shape = meta["shape"]
    lines = [
        f"# attnbench bench on {meta['device']}",
        "",
        "```",
        command,
        "```",
        "",
        f"- attnbench {meta['attnbench_version']}, torch {meta['torch_version']}, Python {meta['python']}, "
        f"{meta['platform']}, {meta.get('threads') or '?'} torch threads",
        f"- shape: B={shape['batch']}, H={shape['heads']}, D={shape['head_dim']}, {shape['dtype']}, "
        f"{'causal' if shape['causal'] else 'not causal'}; lengths {', '.join(map(str, meta['lengths']))}",
        f"- time: {meta['timing']}",
        f"- peak memory: {meta['memory_method']}; worker memory cap: {meta['memory_limit']}",
        f"- FLOPs: {meta['flops_method']}",
        f"- isolation: {meta['isolation']}; sweep wall time {meta.get('wall_s', '?')} s",
        f"- host load average (1/5/15 min) at start {_loads(meta.get('load_average_start'))}, "
        f"at end {_loads(meta.get('load_average_end'))}: other work on the host slows and scatters the times",
    ]
    if meta.get("interrupted"):
        lines.append("- **interrupted**: the sweep did not finish; missing cells were not measured")
    lines += ["", to_markdown(measurement_table(result)), to_markdown(summary_table(result))]
    lines += [f"![{image.stem}]({image.name})\n" for image in images]
    path.write_text("\n".join(lines))
    return path
