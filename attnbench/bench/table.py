"""The sweep as tables: one for every (variant, L) cell, one for each variant's scaling.

Tables are built once as plain strings (:class:`TableData`) and rendered either with
rich for the terminal or as GitHub markdown for a committed benchmark page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

from attnbench.bench.fit import SlopeFit
from attnbench.bench.sweep import BASELINE, METRICS, Measurement, SweepResult, VariantSummary

DASH = "—"


@dataclass(kw_only=True)
class TableData:
    """A titled table of strings; ``breaks`` are row indices after which a section ends."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    breaks: set[int] = field(default_factory=set)
    right: set[int] = field(default_factory=set)  # right-aligned (numeric) columns
    caption: str = ""


def fmt_value(value: float | None) -> str:
    """A cost with about three significant digits, without exponents."""
    if value is None:
        return DASH
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}" if size >= 0.001 else f"{value:.1e}" if size else "0"


def fmt_ratio(value: float | None) -> str:
    """A ratio to the baseline, e.g. ``0.42×``."""
    if value is None:
        return DASH
    return f"{value:.2f}×" if value < 100 else f"{value:,.0f}×"


def fmt_slope(fit: SlopeFit | None, reference: SlopeFit | None = None) -> str:
    """A slope, with its own fit range when that differs from ``reference``'s."""
    if fit is None:
        return DASH
    text = f"{fit.slope:.2f}"
    if reference is not None and (fit.lo, fit.hi, fit.points) != (reference.lo, reference.hi, reference.points):
        text += f" [{fit.fit_range}]"
    return text


def shown_metrics(result: SweepResult) -> list[str]:
    """The metrics worth a column: backward ones only when the sweep measured backward."""
    return [m for m in METRICS if result.plan.backward or "fwdbwd" not in m]


def measurement_table(result: SweepResult) -> TableData:
    """Every (variant, L) cell: each cost and its ratio to the baseline at the same L."""
    metrics = shown_metrics(result)
    headers = ["variant", "L", "status"] + [f"{METRICS[metric]} (×{BASELINE})" for metric in metrics]
    table = TableData(
        title=f"Cost per variant and length, with the ratio to {BASELINE} at the same L in this run",
        headers=headers, right=set(range(1, len(headers))) - {2},
    )
    for variant in result.variants():
        rows = result.of(variant)
        if rows and all(m.status in ("unavailable", "unsupported") for m in rows):
            table.rows.append([variant, "all", f"{rows[0].status}: {rows[0].error}"] + [DASH] * len(metrics))
        else:
            for m in rows:
                table.rows.append(_measurement_row(m, metrics))
        table.breaks.add(len(table.rows) - 1)
    return table


def _measurement_row(m: Measurement, metrics: list[str]) -> list[str]:
    status = m.status if m.status == "ok" else f"{m.status}: {m.error}" if m.error else m.status
    row = [m.variant, str(m.length), _shorten(status, 60)]
    for metric in metrics:
        value = m.value(metric)
        row.append(DASH if value is None else f"{fmt_value(value)} ({fmt_ratio(m.ratios.get(metric))})")
    return row


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_table(result: SweepResult) -> TableData:
    """Per variant: log-log slopes of its costs over L and where it starts to beat the baseline."""
    backward = result.plan.backward
    headers = ["variant", "complexity", "slope fwd ms"]
    headers += ["slope fwd+bwd ms"] if backward else []
    headers += ["slope fwd peak MB"] + (["slope fwd+bwd peak MB"] if backward else [])
    headers += ["fit range (L)", "eff. L fwd time"] + (["eff. L fwd+bwd time"] if backward else [])
    headers += ["eff. L fwd memory"] + (["eff. L fwd+bwd memory"] if backward else [])
    table = TableData(
        title="Scaling: log-log slope of each cost vs L, and efficiency length",
        headers=headers, right=set(range(2, len(headers))),
        caption=(f"Slope p means cost ∝ L^p over the fit range (lengths where the variant finished). "
                 f"Efficiency length: smallest L from which on the variant costs less than {BASELINE} "
                 f"at every longer measured L in this run ({DASH} if never)."),
    )
    for summary in result.summaries:
        table.rows.append(_summary_row(summary, backward))
    return table


def _summary_row(s: VariantSummary, backward: bool) -> list[str]:
    if s.status != "ok":
        note = _shorten(f"{s.status}: {s.reason}" if s.reason else s.status, 60)
        width = 7 + 4 * backward
        return [s.variant, s.complexity, note] + [DASH] * (width - 3)
    ref = s.slopes["fwd_ms"]
    row = [s.variant, s.complexity, fmt_slope(ref)]
    row += [fmt_slope(s.slopes["fwdbwd_ms"], ref)] if backward else []
    row += [fmt_slope(s.slopes["peak_fwd_mb"], ref)]
    row += [fmt_slope(s.slopes["peak_fwdbwd_mb"], ref)] if backward else []
    row += [ref.fit_range if ref else DASH, _length(s.efficiency["fwd_ms"])]
    row += [_length(s.efficiency["fwdbwd_ms"])] if backward else []
    row += [_length(s.efficiency["peak_fwd_mb"])]
    row += [_length(s.efficiency["peak_fwdbwd_mb"])] if backward else []
    return row


def _length(value: int | None) -> str:
    return DASH if value is None else str(value)


def to_rich(data: TableData) -> Table:
    """``data`` as a rich table for the terminal."""
    table = Table(title=data.title, caption=data.caption or None, caption_justify="left")
    for i, header in enumerate(data.headers):
        table.add_column(header, justify="right" if i in data.right else "left",
                         no_wrap=i < 2, overflow="fold")
    for i, row in enumerate(data.rows):
        table.add_row(*row, end_section=i in data.breaks and i != len(data.rows) - 1)
    return table


def to_markdown(data: TableData) -> str:
    """``data`` as a GitHub-flavoured markdown table with its title and caption."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---:" if i in data.right else "---" for i in range(len(data.headers))]
    parts = [f"**{data.title}**", "", line(data.headers), "| " + " | ".join(align) + " |"]
    parts += [line(row) for row in data.rows]
    if data.caption:
        parts += ["", data.caption]
    return "\n".join(parts) + "\n"
