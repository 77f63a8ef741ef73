"""Leaderboard pictures (matplotlib, Agg): quality vs cost with the Pareto front and 95 %
error bars, training curves, quality/cost versus a swept setting, the metric versus the test
length (length extrapolation), and the critical-difference diagram of the cross-task ranking
(Demšar 2006). Each returns PNG bytes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

from attnbench.leaderboard.extrapolation import Extrapolation
from attnbench.leaderboard.stats import Friedman
from attnbench.leaderboard.sweeps import Sweep
from attnbench.leaderboard.tables import REFERENCE, TaskTable
from attnbench.specs import ResultRow


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return buf.getvalue()


def quality_vs_cost(table: TaskTable, cost: str = "train_s", label: str = "training time (s)") -> bytes | None:
    """Primary metric against a cost for every variant that ran ok; the Pareto front joined."""
    ok = [e for e in table.ranked() if cost in e.cost]
    if not ok:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    front = table.pareto() if cost == "train_s" else set()
    for e in ok:
        on_front = e.variant in front
        colour = "black" if e.variant == REFERENCE else ("tab:red" if on_front else "tab:blue")
        ax.scatter(e.cost[cost], e.metrics[table.metric], s=46 if on_front else 28, color=colour, zorder=3,
                   marker="X" if table.fairness(e) else "o")
        half = e.metric_ci.get(table.metric)
        if half is not None:  # the 95 % interval over seeds
            ax.errorbar(e.cost[cost], e.metrics[table.metric], yerr=half, color=colour, capsize=3, linewidth=1,
                        zorder=2)
        ax.annotate(e.variant, (e.cost[cost], e.metrics[table.metric]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    line = sorted((e.cost[cost], e.metrics[table.metric]) for e in ok if e.variant in front)
    if len(line) > 1:
        ax.plot(*zip(*line, strict=True), color="tab:red", linewidth=1, linestyle="--", label="Pareto front")
        ax.legend(fontsize=8, loc="best")
    if table.baseline:
        base = next((e.metrics[table.baseline] for e in ok if table.baseline in e.metrics), None)
        if base is not None:
            ax.axhline(base, color="grey", linewidth=1, linestyle=":")
            ax.annotate(f"baseline ({table.baseline})", (ax.get_xlim()[0], base), fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel(f"{table.metric} ({'higher' if table.higher_is_better else 'lower'} is better)")
    seeds = "1 seed, no interval" if table.one_seed else "bars: 95 % interval over seeds"
    ax.set_title(f"{table.task}: quality vs cost ({seeds}; × = fairness flag)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def loss_curves(rows: Iterable[ResultRow]) -> bytes | None:
    """Training loss per step for each variant (its lowest seed), read from the rows' loss_curve files."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for r in sorted(rows, key=lambda r: r.seed):
        path = r.artifacts.get("loss_curve")
        if r.variant in curves or not path or not Path(path).is_file():
            continue
        try:
            data = json.loads(Path(path).read_text())
            curves[r.variant] = (data["step"], data["loss"])
        except (OSError, ValueError, KeyError):
            continue
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = plt.get_cmap("tab20")
    for index, (variant, (steps, losses)) in enumerate(sorted(curves.items())):
        ax.plot(steps, losses, linewidth=1.8 if variant == REFERENCE else 1.0, label=variant,
                color="black" if variant == REFERENCE else colours(index % 20))
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title("training loss", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _png(fig)


def sweep_plot(sweep: Sweep) -> bytes | None:
    """Quality and training time against the swept value, one line per variant."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    colours = plt.get_cmap("tab20")
    drawn = False
    for index, (variant, by_value) in enumerate(sorted(sweep.points.items())):
        points = [(v, p) for v, p in by_value.items() if isinstance(p, dict) and isinstance(v, (int, float))]
        if not points:
            continue
        points.sort(key=lambda vp: vp[0])
        xs = [v for v, _ in points]
        style = {"color": "black" if variant == REFERENCE else colours(index % 20), "marker": "o", "label": variant}
        axes[0].errorbar(xs, [p[sweep.metric] for _, p in points], capsize=3,
                         yerr=[p.get(f"{sweep.metric}_ci", 0.0) for _, p in points], **style)
        times = [(v, p["train_s"]) for v, p in points if "train_s" in p]
        if times:
            axes[1].plot(*zip(*times, strict=True), **style)
        drawn = True
    if not drawn:
        _pyplot().close(fig)
        return None
    axes[0].set_ylabel(f"{sweep.metric} (bars: 95 % interval over seeds)")
    axes[1].set_ylabel("training time (s)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel(sweep.key)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{sweep.task}: quality and cost vs {sweep.key}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def extrapolation_plot(ex: Extrapolation) -> bytes | None:
    """The metric against the test length (log2 axis, the lengths as ticks), one line per variant with
    95 % error bars, the training length marked; the legend sits beside the axes, in columns, so that
    35 variants stay readable. None when no cell holds a figure."""
    plt = _pyplot()
    drawn = {v: [(f, c) for f, c in sorted(cells.items()) if c.mean is not None and ex.lengths.get(f)]
             for v, cells in sorted(ex.cells.items())}
    drawn = {v: points for v, points in drawn.items() if points}
    if not drawn:
        return None
    columns = 1 + (len(drawn) - 1) // 18
    fig, ax = plt.subplots(figsize=(6.4 + 1.7 * columns, 4.6))
    colours = plt.get_cmap("tab20")
    markers, dashes = "os^Dv<>", ("-", "--", ":")
    for index, (variant, points) in enumerate(drawn.items()):
        reference = variant == REFERENCE
        ax.errorbar([ex.lengths[f] for f, _ in points], [c.mean for _, c in points],
                    yerr=[c.half_width or 0.0 for _, c in points], capsize=3, label=variant,
                    color="black" if reference else colours(index % 20), linewidth=2.0 if reference else 1.0,
                    marker=markers[index % len(markers)], markersize=4,
                    linestyle="-" if reference else dashes[(index // 20) % len(dashes)], zorder=3 if reference else 2)
    ticks = [ex.lengths[f] for f in ex.factors if ex.lengths.get(f)]
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{length}\n({f}×)" for f in ex.factors if (length := ex.lengths.get(f))])
    ax.minorticks_off()
    if ex.train_length:
        ax.axvline(ex.train_length, color="grey", linewidth=1, linestyle=":")
        ax.annotate("trained here", (ex.train_length, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
                    textcoords="offset points", fontsize=7, color="grey")
    ax.set_xlabel("test length")
    ax.set_ylabel(f"{ex.metric} ({'higher' if ex.higher_is_better else 'lower'} is better)")
    ax.set_title(f"{ex.task}: {ex.metric} vs test length (bars: 95 % interval over seeds)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, ncol=columns, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              frameon=False)
    fig.tight_layout()
    return _png(fig)


def critical_difference(test: Friedman) -> bytes:
    """Demšar's diagram: the average-rank axis (1 = best, left), each variant at its rank, the
    critical difference as a bar over the axis, and a thick line joining each group of variants
    whose ranks differ by less than it (not significantly different)."""
    plt = _pyplot()
    k = len(test.variants)
    order = sorted(test.variants, key=lambda v: test.average_rank[v])
    half = (k + 1) // 2
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.28 * half + 0.2 * len(test.cliques())))
    ax.set_xlim(0.5, k + 0.5)
    depth = half + 1.5
    ax.set_ylim(depth, -1.5)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, -0.12, 0, color="black", linewidth=1)
        ax.text(r, -0.25, str(r), ha="center", va="bottom", fontsize=8)
    ax.hlines(-1.1, 1, 1 + test.critical_difference, color="tab:red", linewidth=2)
    ax.text(1 + test.critical_difference / 2, -1.2, f"CD = {test.critical_difference:.2f}", ha="center",
            va="bottom", fontsize=8, color="tab:red")
    for i, variant in enumerate(order):
        rank = test.average_rank[variant]
        left = i < half
        row = (i if left else k - 1 - i) + 1
        edge = 0.5 if left else k + 0.5
        ax.plot([rank, rank, edge], [0, row, row], color="black", linewidth=0.8)
        ax.text(edge + (-0.05 if left else 0.05), row, f"{variant} ({rank:.2f})", ha="right" if left else "left",
                va="center", fontsize=8)
    for j, clique in enumerate(test.cliques()):
        low, high = test.average_rank[clique[0]], test.average_rank[clique[-1]]
        y = 0.25 + 0.2 * j
        ax.hlines(y, low - 0.03, high + 0.03, color="tab:blue", linewidth=3)
    verdict = "differ" if test.significant() else "do not differ significantly"
    ax.set_title(f"average rank over {len(test.datasets)} tasks (Friedman p = {test.p_value:.2g}: the variants "
                 f"{verdict}); bars join variants within the Nemenyi critical difference", fontsize=8)
    fig.tight_layout()
    return _png(fig)
