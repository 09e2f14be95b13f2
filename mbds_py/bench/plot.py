"""The `mbds bench --plot` chart: throughput, cost and latency against load, one panel per load axis.

Drawn from the report dict alone (no measuring here), with matplotlib's Agg
backend so it works without a display.  Each series is its medians with an
IQR error bar; targets are dashed lines; a series a later module has not
registered yet (e.g. PBFT throughput) is named on its panel as not measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .registry import PANELS
from .stats import Target


def _target(report: Mapping[str, Any], key: str) -> float | None:
    target = report["measurements"].get(key, {}).get("target")
    return Target.parse(target).bound if target else None


def _measured(report: Mapping[str, Any], key: str) -> float | None:
    return report["measurements"].get(key, {}).get("median")


def write_plot(report: Mapping[str, Any], path: Path) -> None:
    """Write the PNG chart of ``report`` (see :func:`mbds_py.bench.runner.build_report`) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    curves = report.get("curves") or {}
    names = list(PANELS)
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        panel = PANELS[name]
        missing, plotted_x = [], []
        for c in curves.values():
            if c["panel"] != name:
                continue
            if c["status"] != "measured" or not c["points"]:
                missing.append(f"{c['label']}: {c['status']}")
                continue
            xs = [p["x"] for p in c["points"]]
            plotted_x += xs
            ys = [p["median"] for p in c["points"]]
            err = [[p["median"] - p["q1"] for p in c["points"]], [p["q3"] - p["median"] for p in c["points"]]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=c["label"])
        _references(ax, name, report, plotted_x or list(panel.x_full))
        if missing:
            ax.text(0.02, 0.02, "\n".join(missing), transform=ax.transAxes, fontsize=8, color="dimgray",
                    va="bottom")
        ax.set_title(panel.title)
        ax.set_xlabel(panel.x_label)
        ax.set_ylabel(panel.y_label)
        if panel.log_x:
            ax.set_xscale("log")
            ticks = sorted(set(plotted_x)) or list(panel.x_full)
            ax.set_xticks(ticks, [f"{x:,}" for x in ticks])
            ax.xaxis.set_minor_locator(NullLocator())
        if panel.log_y:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(f"mbds bench ({report['mode']}, {report['started_at']}) — {m['cpu_model']}, "
                 f"{m['usable_cores']} usable cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _references(ax: Any, panel: str, report: Mapping[str, Any], xs: list[int]) -> None:
    """Targets and baselines as horizontal (or proportional) reference lines."""
    if panel == "anchor_gas":
        target = _target(report, "gas_per_slip")
        if target is not None:
            ax.axhline(target, linestyle="--", color="tab:green", label=f"target ≤ {target:g} gas/slip")
        naive = _measured(report, "naive_gas_per_slip")
        if naive is not None:
            ax.axhline(naive, linestyle=":", color="tab:red", label=f"naive: one tx per slip ({naive:,.0f})")
    elif panel == "throughput":
        target = _target(report, "pbft_slips_per_s")
        if target is not None:
            ax.axhline(target, linestyle="--", color="tab:green", label=f"PBFT target ≥ {target:,.0f} slips/s")
    elif panel == "peks_search":
        target = _target(report, "peks_test_ms")
        cores = report["machine"].get("usable_cores") or 1
        lo, hi = min(xs), max(xs)
        if target is not None:
            ax.plot([lo, hi], [lo * target / cores, hi * target / cores], linestyle="--",
                    color="tab:green", label=f"target {target:g} ms/item/core × {cores} cores")
