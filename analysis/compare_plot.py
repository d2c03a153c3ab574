"""The comparison figure: both ladders' frontiers L_opt(C), and the multiplier of B over A.

Drawn only from the comparison (`analysis.compare.CompareReport`) and the runs each side
fitted; nothing is refitted here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis import style as st
from analysis.compare import CompareReport

# Okabe-Ito blue and vermillion: the two recipes, told apart in colour-blind vision and in grey.
RECIPE_COLORS = {"A": "#0072B2", "B": "#D55E00"}
RECIPE_MARKERS = {"A": "o", "B": "s"}


def _finite(values: list[float]) -> np.ndarray:
    v = np.asarray(values, float)
    return np.where(np.isfinite(v), v, np.nan)


def plot_compare(
    report: CompareReport,
    runs: list[pd.DataFrame],
    stem: Path,
    fmt: tuple[str, ...] = ("pdf", "png"),
) -> list[Path]:
    """Left: each recipe's runs and frontier; right: M(C) of B over A with its band."""
    curve = report.multiplier
    c = np.asarray(curve.C, float)
    with st.paper_style():
        fig = Figure(figsize=(st.width_inches("double"), 2.6))
        ax_l, ax_m = fig.subplots(1, 2)
        for name, lad, fitted, loss in (
            ("A", report.a, runs[0], curve.loss_a),
            ("B", report.b, runs[1], curve.loss_b),
        ):
            color = RECIPE_COLORS[name]
            ax_l.scatter(
                fitted["C"], fitted["loss"], s=9, marker=RECIPE_MARKERS[name], facecolors="none",
                edgecolors=color, linewidths=0.6, alpha=0.7,
            )  # fmt: skip
            ax_l.plot(
                c, _finite(loss), color=color, lw=1.2, label=f"{name}: {Path(lad.source).name}"
            )
        ax_l.set(xscale="log", yscale="log", xlabel="compute $C$ (FLOPs)", ylabel="loss")
        ax_l.set_title(r"compute-optimal frontiers $L_\mathrm{opt}(C)$")
        ax_l.legend(loc="upper right")
        m = _finite(curve.value)
        if curve.ci is not None:
            lo, hi = (_finite(x) for x in curve.ci)
            pct = round(100 * report.bootstrap.ci)
            ax_m.fill_between(c, lo, hi, color="0.75", lw=0, label=f"{pct}% interval")
        ax_m.plot(c, m, color="k", lw=1.2, label="B over A")
        ax_m.axhline(1.0, color="0.4", lw=0.6, ls="--")
        for x in report.crossover.C:
            ax_m.axvline(x, color=RECIPE_COLORS["B"], lw=0.8, ls=":", label="crossover")
        for t in report.targets:
            if np.isfinite(t.multiplier.value):
                ax_m.plot([t.C], [t.multiplier.value], "D", color="k", ms=3.5)
        lo_fit = min(report.a.C_range[0], report.b.C_range[0])
        hi_fit = max(report.a.C_range[1], report.b.C_range[1])
        if hi_fit < c[-1]:  # extrapolation beyond the runs
            ax_m.axvspan(hi_fit, c[-1], color="0.93", lw=0, zorder=0, label="beyond the runs")
        ax_m.set(xscale="log", yscale="log", xlabel="compute $C$ of B (FLOPs)")
        ax_m.set_ylabel("effective compute multiplier")
        ax_m.set_xlim(min(lo_fit, c[0]), c[-1])
        ax_m.set_title("compute A needs for B's loss, / C")
        handles, labels = ax_m.get_legend_handles_labels()
        keep = dict(zip(labels, handles))
        ax_m.legend(keep.values(), keep.keys(), loc="best")
        plain = FuncFormatter(lambda y, _: f"{y:g}")  # 3, 4 rather than 3 x 10^0
        for ax in (ax_l, ax_m):
            ax.yaxis.set_major_formatter(plain)
        ax_l.yaxis.set_minor_formatter(plain)  # a loss axis spans less than a decade
        st.declutter(fig)
        return st.save(fig, stem, fmt)
