"""The sweep as a PNG: each cost against L on log-log axes, one line per variant."""

from __future__ import annotations

from pathlib import Path

from attnbench.bench.sweep import BASELINE, METRICS, SweepResult

#: Marker shapes cycle with the colours, so neighbouring lines differ in two ways.
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*")


def write_plot(result: SweepResult, path: Path) -> Path:
    """Plot time and peak memory vs L (log-log) for every variant that finished somewhere."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if m != "gflops_fwd" and (result.plan.backward or "fwdbwd" not in m)]
    variants = result.variants()
    colours = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for index, variant in enumerate(variants):
            points = [(m.length, m.value(metric)) for m in result.of(variant) if m.value(metric)]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            is_base = variant == BASELINE
            ax.plot(xs, ys, marker=MARKERS[index % len(MARKERS)], markersize=4, label=variant,
                    color="black" if is_base else colours(index % 20),
                    linewidth=2.4 if is_base else 1.3, linestyle="--" if is_base else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(METRICS[metric])
        ax.set_title(f"{METRICS[metric]} vs L")
        ax.grid(True, which="both", alpha=0.3)
    legend: dict[str, object] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    order = [v for v in variants if v in legend]
    shape = result.meta["shape"]
    fig.suptitle(f"attnbench bench on {result.meta['device']}: B={shape['batch']}, H={shape['heads']}, "
                 f"D={shape['head_dim']}, {shape['dtype']}{', causal' if shape['causal'] else ''}")
    fig.legend([legend[v] for v in order], order, loc="center right", fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
