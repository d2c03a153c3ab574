"""Paper figures drawn only from a results dir: runs.csv, curves.csv and fit.json (docs/formats.md).

Nothing here trains, fits or re-derives what the fit decided: approach 1's envelope, approach
2's budget groups and every fitted line come from fit.json (`analysis.results.FitReport`), and
losses are predicted by the law's own registry entry. Every figure is a pure function of the
stored tables, so `scaling-plot <results-dir>` regenerates the same bytes every time. What cannot
be drawn (a curve without a model size, an approach without a usable power law) is skipped
with a note on the figure and a line on the terminal. Figures are built on bare `Figure`
objects (no pyplot), so no GUI backend or global figure state is involved.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator, PercentFormatter

from analysis import style as st
from analysis.optimal import flops_factor
from analysis.results import (
    Approach1Result,
    Approach2Result,
    Approach3Result,
    FitReport,
    IsoflopBudget,
    Target,
    Verification,
)

FIGURES = ("learning_curves", "isoflop", "compute_optimal", "surface", "parity")
APPROACHES = ("approach1", "approach2", "approach3")  # FitReport fields, figure gids

# Fixed colours (Okabe-Ito) for the three approaches and for held-out / excluded runs.
APPROACH_COLORS = {"approach1": "#0072B2", "approach2": "#D55E00", "approach3": "#009E73"}
HELDOUT_COLOR = "#D55E00"
VERIFY_COLOR = "#CC79A7"
EXCLUDED_COLOR = "0.6"
MAX_LEGEND_SIZES = 8  # more sizes (or budgets) than this get a colour bar instead of a legend
MAX_MARKED_POINTS = 30  # more approach-1 minima than this are drawn as a line
RUN_AXES = ("N", "D", "C")  # a run is drawn only where all three are finite and positive

# Published compute-optimal exponents drawn as reference slopes: (label, a, b, line style).
REFERENCES = (
    ("Chinchilla", 0.50, 0.50, (0, (1, 1.2))),
    ("Chinchilla approach 3", 0.46, 0.54, (0, (4, 1.5, 1, 1.5))),
    ("Kaplan", 0.73, 0.27, (0, (3, 1.5))),
)

LOSS_LABEL = "validation loss (nats/token)"
N_LABEL = r"parameters $N$"
D_LABEL = r"tokens $D$"
C_LABEL = r"compute $C$ (FLOPs)"

Approach = Approach1Result | Approach2Result | Approach3Result


@dataclass(frozen=True)
class Results:
    """The stored inputs of every figure: the collected tables and the fit result."""

    path: Path
    """The results dir."""
    runs: pd.DataFrame
    """runs.csv, the runs that can be drawn, with boolean ``heldout`` and ``excluded`` columns."""
    curves: pd.DataFrame
    """curves.csv (empty without it), rows with a finite loss at finite, positive tokens and C."""
    fit: FitReport
    """fit.json."""
    notes: tuple[str, ...] = field(default=())
    """What the tables held that no figure can draw (runs without finite N, D, C)."""


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV table; ValueError naming the file when it is not one."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' parse errors are ValueErrors
        raise ValueError(f"{path} is not a readable CSV table: {err}") from None


def _numeric(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The table with ``columns`` as floats (text that is not a number becomes NaN)."""
    return table.assign(**{c: pd.to_numeric(table[c], errors="coerce") for c in columns})


def _drawable_runs(runs: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The runs with finite, positive N, D and C, and a note naming those without."""
    axes = runs[list(RUN_AXES)]
    ok = (np.isfinite(axes) & (axes > 0)).all(axis=1)
    if not ok.any():
        raise ValueError(f"{path} has no run with finite, positive N, D and C to draw")
    if ok.all():
        return runs, []
    names = ", ".join(str(r) for r in runs.loc[~ok, "run"][:5]) + ", ..." * (int((~ok).sum()) > 5)
    return runs[ok], [f"{int((~ok).sum())} runs without finite N, D, C not drawn ({names})"]


def load_results(results_dir: Path) -> Results:
    """Read runs.csv, curves.csv (optional: final points only without it) and fit.json."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results dir {str(results_dir)!r} does not exist")
    for name in ("runs.csv", "fit.json"):
        if not (results_dir / name).is_file():
            raise FileNotFoundError(
                f"{results_dir / name} is missing: figures are drawn from runs.csv and fit.json "
                f"written by `scaling-fit ... --out {results_dir}`"
            )
    fit = FitReport.load(results_dir / "fit.json")
    runs = _read_csv(results_dir / "runs.csv")
    missing = {"N", "D", "C", "loss"} - set(runs.columns)
    if missing:
        raise ValueError(f"{results_dir / 'runs.csv'} lacks columns {sorted(missing)}")
    runs = _numeric(runs, [*RUN_AXES, "loss"])
    if "run" not in runs:
        runs["run"] = [f"run{i}" for i in range(len(runs))]
    runs, notes = _drawable_runs(runs, results_dir / "runs.csv")
    if "heldout" in runs:
        runs["heldout"] = runs["heldout"].astype(str).str.lower().isin(["true", "1"])
    else:
        runs["heldout"] = runs["run"].isin(set(fit.heldout_runs))
    excluded = {e.run for e in fit.excluded}
    runs["excluded"] = runs["run"].isin(excluded) | ~np.isfinite(runs["loss"])
    curves_path = results_dir / "curves.csv"
    curves = _read_csv(curves_path) if curves_path.is_file() else pd.DataFrame()
    if not curves.empty:
        missing = {"run", "N", "tokens", "C", "loss"} - set(curves.columns)
        if missing:
            raise ValueError(f"{curves_path} lacks columns {sorted(missing)}")
        curves = _numeric(curves, ["N", "tokens", "C", "loss"])
        axes = curves[["tokens", "C"]]
        ok = (np.isfinite(axes) & (axes > 0)).all(axis=1)  # tokens and C: both log axes
        curves = curves[np.isfinite(curves["loss"]) & ok]
    return Results(results_dir, runs, curves, fit, tuple(notes))


# --- helpers -----------------------------------------------------------------------------------


def _approach(fit: FitReport, key: str) -> tuple[Approach | None, str | None]:
    """The approach's result if computed, else None and a one-line note saying why not."""
    result = getattr(fit, key)
    label = key.replace("approach", "approach ")
    if result is None:
        return None, f"{label} skipped: not in fit.json"
    if result.error is not None:
        return None, f"{label} skipped: {result.error}"
    if isinstance(result, Approach3Result) and result.fit is None:
        return None, f"{label} skipped: no law fit in fit.json"
    return result, None


def _no_power_law(key: str, result: Approach) -> str | None:
    """A note when the approach's N_opt(C), D_opt(C) cannot be drawn (non-finite numbers)."""
    if result.allocation is not None and result.allocation.finite:
        return None
    label = key.replace("approach", "approach ")
    why = result.implausible() if isinstance(result, Approach3Result) else None
    return f"{label}: N_opt(C) not drawn: {why or 'no finite power law in fit.json'}"


class NotedFigure(Figure):
    """A figure that keeps the notes written on it (what it skipped), one line each."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []


def _note(ax: Axes, notes: Sequence[str | None]) -> None:
    """Write the notes (skipped layers) in the axes' lower-left corner and keep them on the
    figure for the terminal (`figure_notes`)."""
    notes = [n for n in notes if n]
    text = "\n".join(textwrap.fill(n, 60) for n in notes)
    if text:
        ax.text(
            0.02,
            0.02,
            text,
            transform=ax.transAxes,
            ha="left",
            va="bottom",
            fontsize=6,
            color="0.25",
            gid="note",
            bbox={"boxstyle": "square,pad=0.25", "fc": "white", "ec": "0.8", "alpha": 0.9},
            zorder=10,
        )
        if isinstance(ax.figure, NotedFigure):
            ax.figure.notes += notes


def figure_notes(fig: Figure) -> list[str]:
    """The notes written on a figure, one per skipped layer."""
    return list(fig.notes) if isinstance(fig, NotedFigure) else []


def _predict(a3: Approach3Result, N, D) -> np.ndarray:
    """Approach 3's loss L(N, D), by the law's own prediction from its natural parameters."""
    N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return a3.fit.predict({"N": N.ravel(), "D": D.ravel()}).reshape(N.shape)


def _finite(*values) -> bool:
    """Whether every value is a finite number (fit.json writes NaN as null)."""
    return all(v is not None and np.isfinite(v) for v in values)


def _targets(fit: FitReport) -> list[Target]:
    """Approach 3's target predictions with a finite N_opt (none without approach 3)."""
    a3, _ = _approach(fit, "approach3")
    return [t for t in a3.targets if t.N_opt.finite and t.N_opt.value > 0] if a3 else []


def _sci(x: float) -> str:
    """x as mathtext: 1e18 -> $10^{18}$, 6e18 -> $6\\times10^{18}$."""
    exp = int(np.floor(np.log10(x) + 1e-9))
    mant = x / 10**exp
    if abs(mant - round(mant)) < 0.05:
        mant = round(mant)
        return f"$10^{{{exp}}}$" if mant == 1 else rf"${mant}\times10^{{{exp}}}$"
    return rf"${mant:.1f}\times10^{{{exp}}}$"


def _size_name(n: float) -> str:
    """A parameter count as a size name: 1.6e8 -> '160M'."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def _sizes(runs: pd.DataFrame) -> tuple[list[float], dict[float, str]]:
    """The distinct model sizes (sorted by N) and a display name for each."""
    sizes = sorted(float(n) for n in runs["N"].dropna().unique())
    names = {}
    for n in sizes:
        given = runs.loc[runs["N"] == n, "size"] if "size" in runs else pd.Series(dtype=str)
        given = given.dropna()
        names[n] = str(given.iloc[0]) if len(given) else _size_name(n)
    return sizes, names


def _figure(n_panels: int, width: str | None, aspect: float = 0.78) -> tuple[Figure, list[Axes]]:
    """A figure of n_panels: side by side at double width, stacked at single width."""
    w = st.width_inches(width or ("double" if n_panels > 1 else "single"))
    fig = NotedFigure(layout="constrained")
    if n_panels == 1:
        fig.set_size_inches(w, w * aspect)
        return fig, [fig.subplots()]
    if w < st.WIDTHS["double"]:
        fig.set_size_inches(w, w * aspect * n_panels * 0.85)
        return fig, list(fig.subplots(n_panels, 1))
    fig.set_size_inches(w, w * aspect / n_panels * 1.05)
    return fig, list(fig.subplots(1, n_panels))


def _loglog(*axes: Axes, plain_y: bool = False) -> None:
    """Log both axes; plain_y labels the y ticks as plain numbers (losses: 3, 4, 6 not 6e0)."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        if plain_y:
            ax.yaxis.set_major_formatter(LogFormatter())
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))


def _size_key(fig: Figure, axes: list[Axes], runs: pd.DataFrame) -> dict[float, tuple]:
    """Colour by size: a legend of size names for a few sizes, a log colour bar for many."""
    sizes, names = _sizes(runs)
    colors = st.size_colors(sizes)
    if len(sizes) <= MAX_LEGEND_SIZES:
        handles = [Line2D([], [], color=colors[n], marker="o", ms=3, lw=1) for n in sizes]
        fig.legend(
            handles,
            [names[n] for n in sizes],
            title="size $N$",
            loc="outside right upper",
        )
    else:
        sm = ScalarMappable(norm=st.log_norm(sizes), cmap=st.cmap(st.SIZE_CMAP))
        fig.colorbar(sm, ax=axes, label=N_LABEL, fraction=0.05, pad=0.02, aspect=30)
    return colors


def _mid_c(runs: pd.DataFrame) -> float:
    """The geometric middle of the runs' compute range."""
    c = runs["C"][runs["C"] > 0]
    return float(np.sqrt(c.min() * c.max()))


# --- figures -----------------------------------------------------------------------------------


def _drawable_curves(curves: pd.DataFrame, colors: dict) -> tuple[pd.DataFrame, str | None]:
    """The curve rows whose run has a known model size (a colour), and a note on the rest."""
    known = curves["N"].isin(list(colors))
    if known.all():
        return curves, None
    skipped = sorted(str(r) for r in curves.loc[~known, "run"].unique())
    names = ", ".join(skipped[:5]) + ", ..." * (len(skipped) > 5)
    return curves[known], f"{len(skipped)} curves without a model size N not drawn ({names})"


def plot_learning_curves(res: Results, width: str | None = None) -> Figure:
    """Loss against tokens and against FLOPs, coloured by size, with approach 1's envelope."""
    fig, (ax_d, ax_c) = _figure(2, width)
    colors = _size_key(fig, [ax_d, ax_c], res.runs)
    notes = []
    curves, note = _drawable_curves(res.curves, colors) if not res.curves.empty else (None, None)
    notes.append(note)
    if curves is None or curves.empty:
        runs = res.runs[~res.runs["excluded"]]
        for ax, x in ((ax_d, "D"), (ax_c, "C")):
            ax.scatter(
                runs[x],
                runs["loss"],
                c=[colors[float(n)] for n in runs["N"]],
                s=6,
                linewidths=0,
                gid="final",
            )
        notes.append("final losses only (no learning curves stored)")
        ax_d.set_title("final loss against tokens")
        ax_c.set_title("final loss against compute")
    else:
        for run, g in curves.groupby("run", sort=True):
            g = g.sort_values("tokens")
            color = colors[float(g["N"].iloc[0])]
            ax_d.plot(g["tokens"], g["loss"], color=color, lw=0.8, gid=f"curve:{run}")
            ax_c.plot(g["C"], g["loss"], color=color, lw=0.8, gid=f"curve:{run}")
        ax_d.set_title("loss against tokens")
        ax_c.set_title("loss against compute")
    a1, note = _approach(res.fit, "approach1")
    notes.append(note)
    if a1 is not None and a1.envelope is not None and curves is not None and not curves.empty:
        # the envelope approach 1 fitted: its fitted runs only, from where its fit starts
        ax_c.plot(
            a1.envelope.C,
            a1.envelope.loss,
            color="k",
            ls="--",
            lw=1.0,
            label="lower envelope",
            gid="envelope",
        )
    if a1 is not None and a1.points:
        p = pd.DataFrame([(pt.C, pt.loss) for pt in a1.points], columns=["C", "loss"])
        if len(p) > MAX_MARKED_POINTS:  # a dense envelope reads better as a line
            p = p.sort_values("C")
            ax_c.plot(
                p["C"],
                p["loss"],
                color=APPROACH_COLORS["approach1"],  # apart from the darkest size colour
                lw=1.4,
                zorder=5,
                label="approach 1 minima",
                gid="approach1",
            )
        else:
            ax_c.scatter(
                p["C"],
                p["loss"],
                marker="o",
                s=14,
                facecolors="white",
                edgecolors=APPROACH_COLORS["approach1"],
                linewidths=0.7,
                zorder=5,
                label="approach 1 minima",
                gid="approach1",
            )
    _loglog(ax_d, ax_c, plain_y=True)
    ax_d.set_xlabel(D_LABEL)
    ax_c.set_xlabel(C_LABEL)
    for ax in (ax_d, ax_c):
        ax.set_ylabel(LOSS_LABEL)
    if ax_c.get_legend_handles_labels()[0]:
        ax_c.legend(loc="upper right")
    _note(ax_d, notes)
    return fig


def _budget_of(runs: pd.DataFrame, budgets: list[IsoflopBudget]) -> pd.Series:
    """Each run's IsoFLOP budget C as approach 2 grouped it (its fitted and held-out runs), NaN
    for a run in no budget."""
    of = {run: b.C for b in budgets for run in (*b.runs, *b.heldout_runs)}
    return runs["run"].map(of).astype(float)


def plot_isoflop(res: Results, width: str | None = None) -> Figure:
    """Loss against N for each budget with the fitted parabolas and their minima."""
    fig, (ax,) = _figure(1, width, aspect=0.95)
    a2, note = _approach(res.fit, "approach2")
    runs = res.runs[~res.runs["excluded"]]
    budgets = sorted(
        (b for b in (a2.budgets if a2 else []) if _finite(b.C) and b.C > 0), key=lambda b: b.C
    )
    cm = st.cmap(st.BUDGET_CMAP)
    if not budgets:
        note = note or "approach 2 skipped: no IsoFLOP budgets in fit.json"
        norm = st.log_norm(runs["C"])
        ax.scatter(runs["N"], runs["loss"], c=runs["C"], norm=norm, cmap=cm, s=8, gid="runs")
        fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=ax, label=C_LABEL)
    else:
        norm = st.log_norm([b.C for b in budgets])
        which = _budget_of(runs, budgets)
        other = runs[which.isna()]
        if len(other):
            ax.scatter(other["N"], other["loss"], s=5, color=EXCLUDED_COLOR, gid="other_runs")
        for b in budgets:
            color, edge = cm(norm(b.C)), bool(b.edge)
            pts = runs[which == b.C]
            held = pts["heldout"]
            ax.scatter(pts["N"][~held], pts["loss"][~held], s=10, color=color, zorder=3)
            ax.scatter(
                pts["N"][held],
                pts["loss"][held],
                s=20,
                marker="D",
                color=color,
                edgecolors="k",
                linewidths=0.6,
                zorder=3,
                gid="heldout",
            )
            if _finite(*b.coeffs, *b.N_range) and min(b.N_range) > 0:
                lo, hi = np.log10(b.N_range)
                x = np.linspace(lo - 0.1, hi + 0.1, 120)
                ax.plot(
                    10**x,
                    np.polyval(b.coeffs, x),
                    color=color,
                    ls="--" if edge else "-",
                    lw=1.0,
                    gid="parabola",
                )
            if not _finite(b.N_opt, b.loss_opt):
                continue  # a concave profile has no minimum to mark
            ax.plot(
                b.N_opt,
                b.loss_opt,
                marker="X" if edge else "o",
                ms=6 if edge else 5.5,
                mfc="white" if edge else color,
                mec="k",
                mew=0.7,
                ls="none",
                zorder=6,
                gid="edge_minimum" if edge else "minimum",
            )
        handles = [
            Line2D([], [], color="0.3", lw=1, label="fitted parabola"),
            Line2D([], [], color="0.3", marker="o", mec="k", ls="none", label="minimum"),
        ]
        if any(b.edge for b in budgets):
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.3",
                    ls="--",
                    marker="X",
                    mfc="white",
                    mec="k",
                    label="minimum at range edge",
                )
            )
        if runs["heldout"].any():
            handles.append(
                Line2D(
                    [], [], color="0.3", marker="D", mec="k", ms=3.5, ls="none", label="held out"
                )
            )
        if len(other):
            handles.append(
                Line2D(
                    [], [], color=EXCLUDED_COLOR, marker="o", ms=2.5, ls="none", label="other runs"
                )
            )
        if len(budgets) <= MAX_LEGEND_SIZES:
            handles += [
                Line2D(
                    [],
                    [],
                    color=cm(norm(b.C)),
                    marker="o",
                    ms=3,
                    lw=1,
                    label=f"$C$ = {_sci(b.C)}",
                )
                for b in budgets
            ]
        else:
            fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=ax, label=C_LABEL)
        fig.legend(handles=handles, loc="outside lower center", ncols=3)
    ax.set_xscale("log")
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title("IsoFLOP profiles")
    _note(ax, [note])
    return fig


def _band_title(pointwise: bool, fit: FitReport) -> str:
    """What the shaded bands are, for the legend title."""
    pct = f"{round(100 * fit.bootstrap.ci)}% " if _finite(fit.bootstrap.ci) else ""
    return f"bands: {pct}bootstrap intervals;" if pointwise else "no interval bands;"


def plot_compute_optimal(res: Results, width: str | None = None) -> Figure:
    """N_opt(C) and D_opt(C) from approaches 1-3 with interval bands and published slopes."""
    fig, (ax_n, ax_d) = _figure(2, width)
    fit = res.fit
    c_lo, c_hi = float(res.runs["C"][res.runs["C"] > 0].min()), float(res.runs["C"].max())
    targets = _targets(fit)
    c_hi = max([c_hi] + [t.C for t in targets])
    grid = np.geomspace(c_lo / 2, c_hi * 2, 200)
    c_mid = _mid_c(res.runs)
    notes, anchor = [], None
    pointwise = False  # whether an interval band was drawn (for the legend)
    # y-limits follow the fitted lines, points and targets: a wide interval band is clipped
    # rather than stretching the axis over dozens of decades
    seen: dict = {ax_n: [], ax_d: []}
    for key in APPROACHES:
        block, note = _approach(fit, key)
        note = note or (_no_power_law(key, block) if block is not None else None)
        notes.append(note)
        if note is not None:
            continue
        alloc = block.allocation
        color = APPROACH_COLORS[key]
        i = key[-1]
        label = rf"approach {i}: $a$ = {alloc.a.value:.2f}, $b$ = {alloc.b.value:.2f}"
        for ax, line, name in (
            (ax_n, alloc.n_opt(grid), "N_opt_ci"),
            (ax_d, alloc.d_opt(grid), "D_opt_ci"),
        ):
            ax.plot(grid, line, color=color, lw=1.2, label=label, gid=f"fit:{key}")
            seen[ax] += [float(line[0]), float(line[-1])]
            if block.band is None:
                continue
            # pointwise bootstrap interval of the whole power law (fit.json "band")
            bx, (lo, hi) = np.asarray(block.band.C), np.asarray(getattr(block.band, name))
            ok = np.isfinite(lo) & np.isfinite(hi)
            if not ok.any():
                continue
            where = None if ok.all() else ok
            ax.fill_between(
                bx, lo, hi, where=where, color=color, alpha=0.15, lw=0, gid=f"band:{key}"
            )
            pointwise = True
        if key == "approach3" or anchor is None:
            anchor = alloc
        if key == "approach1" and block.points:
            p = pd.DataFrame([(pt.C, pt.N_opt, pt.D_opt) for pt in block.points])
            for ax, col in ((ax_n, 1), (ax_d, 2)):
                ax.scatter(
                    p[0],
                    p[col],
                    s=4,
                    color=color,
                    alpha=0.6,
                    lw=0,
                    zorder=4,
                    gid="points:approach1",
                )
        if key == "approach2":
            for b in block.budgets:
                if not _finite(b.N_opt, b.D_opt):
                    continue
                kw = {"mfc": "white"} if b.edge else {}
                ax_n.plot(b.C, b.N_opt, "s", color=color, ms=3.5, zorder=4, **kw)
                ax_d.plot(b.C, b.D_opt, "s", color=color, ms=3.5, zorder=4, **kw)
    if anchor is not None:
        for name, a, b, ls in REFERENCES:
            label = rf"{name}: $a$ = {a:.2f}, $b$ = {b:.2f}"
            for ax, mid, e in ((ax_n, anchor.n_opt(c_mid), a), (ax_d, anchor.d_opt(c_mid), b)):
                ax.plot(
                    grid,
                    mid * (grid / c_mid) ** e,
                    color="0.35",
                    ls=ls,
                    lw=0.9,
                    label=label,
                    gid=f"reference:{name}",
                )
    for t in targets:
        for ax, est in ((ax_n, t.N_opt), (ax_d, t.D_opt)):
            seen[ax].append(est.value)
            ci = est.ci
            yerr = None if not ci else [[est.value - ci[0]], [ci[1] - est.value]]
            ax.errorbar(
                t.C,
                est.value,
                yerr=yerr,
                fmt="D",
                color="k",
                ms=3,
                mfc="white",
                zorder=6,
                label="target",
                gid="target",
            )
    _loglog(ax_n, ax_d)
    for ax, ys in seen.items():
        ys = [y for y in ys if np.isfinite(y) and y > 0]
        if ys:
            ax.set_ylim(min(ys) / 3, max(ys) * 3)
    ax_n.set_ylabel(r"compute-optimal $N_\mathrm{opt}$")
    ax_d.set_ylabel(r"compute-optimal $D_\mathrm{opt}$")
    ax_n.set_title(r"$N_\mathrm{opt} \propto C^{a}$")
    ax_d.set_title(r"$D_\mathrm{opt} \propto C^{b}$")
    for ax in (ax_n, ax_d):
        ax.set_xlabel(C_LABEL)
    handles, labels = ax_n.get_legend_handles_labels()
    if handles:
        uniq = dict(zip(labels, handles))
        fig.legend(
            uniq.values(),
            uniq.keys(),
            loc="outside lower center",
            ncols=3 if fig.get_figwidth() >= st.WIDTHS["double"] else 1,
            title=_band_title(pointwise, fit)
            + (" " if fig.get_figwidth() >= st.WIDTHS["double"] else "\n")
            + f"references anchored at the fit at mid-$C$ = {_sci(c_mid)}",
        )
    _note(ax_n, notes)
    return fig


def _run_markers(ax: Axes, runs: pd.DataFrame, x, y, colors: dict | None = None) -> None:
    """Scatter fitted, held-out and excluded runs with distinct markers."""
    fitted = ~runs["heldout"] & ~runs["excluded"]
    fc = [colors[float(n)] for n in runs.loc[fitted, "N"]] if colors else "white"
    ax.scatter(
        x[fitted],
        y[fitted],
        s=12,
        c=fc,
        edgecolors="k",
        linewidths=0.5,
        zorder=5,
        label="fitted runs",
        gid="runs:fitted",
    )
    held = runs["heldout"] & ~runs["excluded"]
    if held.any():
        ax.scatter(
            x[held],
            y[held],
            s=22,
            marker="D",
            c=HELDOUT_COLOR,
            edgecolors="k",
            linewidths=0.6,
            zorder=6,
            label="held-out runs",
            gid="runs:heldout",
        )
    excl = runs["excluded"] & np.isfinite(x) & np.isfinite(y)
    if excl.any():
        ax.scatter(
            x[excl],
            y[excl],
            s=14,
            marker="x",
            c=EXCLUDED_COLOR,
            linewidths=0.8,
            zorder=4,
            label="excluded runs",
            gid="runs:excluded",
        )


def _contour_levels(L: np.ndarray, floor: float) -> np.ndarray | None:
    """16 contour levels evenly spaced in log(L - floor), None if L cannot be contoured."""
    if not np.isfinite(L).all() or not np.isfinite(floor) or not L.min() > floor:
        return None
    return floor + np.geomspace(L.min() - floor, L.max() - floor, 16)


def plot_surface(res: Results, width: str | None = None) -> Figure:
    """The approach-3 L(N, D): contours over (N, D) with the efficient frontier, iso-FLOP lines
    and the runs (left), and the same surface over (C, N), Hoffmann et al.'s Figure 4 (left)."""
    fig, (ax, ax_c) = _figure(2, width, aspect=0.8)
    runs = res.runs
    a3, note = _approach(res.fit, "approach3")
    notes = [note]
    k = res.fit.k if _finite(res.fit.k) and res.fit.k > 0 else flops_factor(runs)
    n_lo, n_hi = runs["N"].min() / 3, runs["N"].max() * 3
    d_lo, d_hi = runs["D"].min() / 3, runs["D"].max() * 3
    # The (C, N) panel reaches out to the target computes, as Hoffmann et al.'s reaches Gopher's.
    targets = _targets(res.fit)
    c_lo, c_hi = runs["C"].min() / 3, max([runs["C"].max()] + [t.C for t in targets]) * 3
    nc_hi = max([n_hi] + [1.5 * max([t.N_opt.value, *(t.N_opt.ci or [])]) for t in targets])
    N, D = np.meshgrid(np.geomspace(n_lo, n_hi, 160), np.geomspace(d_lo, d_hi, 160))
    L = _predict(a3, N, D) if a3 is not None else None
    levels = None
    if L is not None:
        # contours evenly spaced in log(L - E)
        levels = _contour_levels(L, a3.fit.values().get("E", 0.99 * L.min()))
        if levels is None:
            notes.append("approach 3 surface not drawn: its predicted loss is not finite here")
    if levels is not None:
        cs = ax.contourf(N, D, L, levels=levels, cmap="Greys", alpha=0.6, gid="contours")
        ax.contour(N, D, L, levels=levels, colors="0.4", linewidths=0.3)
        # (C, N) plane: D = C / (k N), so the same surface seen along compute.
        Cg, Ng = np.meshgrid(np.geomspace(c_lo, c_hi, 160), np.geomspace(n_lo, nc_hi, 160))
        Lc = _predict(a3, Ng, Cg / (k * Ng))
        ax_c.contourf(
            Cg, Ng, Lc, levels=levels, cmap="Greys", alpha=0.6, extend="both", gid="contours"
        )
        ax_c.contour(Cg, Ng, Lc, levels=levels, colors="0.4", linewidths=0.3)
        cbar = fig.colorbar(cs, ax=[ax, ax_c], label=f"predicted {LOSS_LABEL}", format="%g")
        cbar.set_ticks(MaxNLocator(nbins=6).tick_values(levels[0], levels[-1]))
        cbar.ax.set_ylim(levels[0], levels[-1])
        frontier_note = _no_power_law("approach3", a3)
        notes.append(frontier_note)
        if frontier_note is None:
            alloc = a3.allocation
            c = np.geomspace(min(k * n_lo * d_lo, c_lo), max(k * n_hi * d_hi, c_hi), 200)
            frontier = {
                "color": APPROACH_COLORS["approach3"],
                "lw": 1.5,
                "label": r"efficient frontier $(N_\mathrm{opt}, D_\mathrm{opt})$",
                "gid": "frontier",
            }
            ax.plot(alloc.n_opt(c), alloc.d_opt(c), **frontier)
            ax_c.plot(c, alloc.n_opt(c), **{**frontier, "label": None})
    a2 = res.fit.approach2
    budgets = sorted({b.C for b in (a2.budgets if a2 else []) if _finite(b.C) and b.C > 0})
    if not budgets:
        lo, hi = np.log10(runs["C"].min()), np.log10(runs["C"].max())
        budgets = [10.0**e for e in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)]
    n_line = np.geomspace(n_lo, n_hi, 50)
    for i, c in enumerate(budgets):
        ax.plot(
            n_line,
            c / (k * n_line),
            color="0.15",
            ls=":",
            lw=0.8,
            gid="isoflop",
            label=f"iso-FLOP lines, $C = {k:.3g}\\,ND$" if i == 0 else None,
        )
        ax_c.axvline(c, color="0.15", ls=":", lw=0.8, gid="isoflop")
    _run_markers(ax, runs, runs["N"], runs["D"])
    _run_markers(ax_c, runs, runs["C"], runs["N"])
    for i, t in enumerate(targets):
        ci = t.N_opt.ci
        ax_c.errorbar(
            t.C,
            t.N_opt.value,
            yerr=None if not ci else [[t.N_opt.value - ci[0]], [ci[1] - t.N_opt.value]],
            fmt="D",
            color="k",
            ms=3,
            mfc="white",
            zorder=6,
            label="target $N_\\mathrm{opt}$" if i == 0 else None,
            gid="target",
        )
    _loglog(ax, ax_c)
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel(D_LABEL)
    ax.set_title(r"approach 3: $L(N, D)$")
    ax_c.set_xlim(c_lo, c_hi)
    ax_c.set_ylim(n_lo, nc_hi)
    ax_c.set_xlabel(C_LABEL)
    ax_c.set_ylabel(N_LABEL)
    ax_c.set_title(r"the same over compute: $L(N, C / kN)$")
    handles, labels = ax.get_legend_handles_labels()
    extra = [(h, lab) for h, lab in zip(*ax_c.get_legend_handles_labels()) if lab not in labels]
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    ncols = 3 if fig.get_figwidth() >= st.WIDTHS["double"] else 2
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), ncols))
    _note(ax, notes)
    return fig


def _verification_marker(ax_p: Axes, ax_r: Axes | None, v: Verification) -> list[float]:
    """The verification run (scaling-verify) as a star with its predicted interval (and the
    seeds' range) as error bars; the losses the axes must show."""
    pred, obs = v.predicted.value, v.observed
    ci = v.predicted.ci if v.predicted.ci is not None and _finite(*v.predicted.ci) else None
    yerr = None if ci is None else [[max(pred - ci[0], 0.0)], [max(ci[1] - pred, 0.0)]]
    lo_s, hi_s = v.seed_range
    xerr = [[obs - lo_s], [hi_s - obs]] if len(v.runs) > 1 and _finite(lo_s, hi_s) else None
    verdict = {True: "inside", False: "outside", None: "no interval"}[v.inside_interval]
    label = f"verification, {_sci(v.C)} FLOPs ({verdict})"
    style = dict(fmt="*", ms=9, color=VERIFY_COLOR, mec="k", mew=0.6, ecolor=VERIFY_COLOR)
    ax_p.errorbar([obs], [pred], yerr=yerr, xerr=xerr, capsize=2.5, zorder=7, label=label,
                  gid="runs:verification", **style)  # fmt: skip
    if ax_r is not None:
        rerr = None if ci is None else [[(pred - ci[0]) / obs], [(ci[1] - pred) / obs]]
        ax_r.errorbar([v.C_trained], [pred / obs - 1], yerr=rerr, capsize=2.5, zorder=7,
                      gid="runs:verification", **style)  # fmt: skip
    return [obs, pred, *(ci or []), *([lo_s, hi_s] if xerr else [])]


def plot_parity(res: Results, width: str | None = None) -> Figure:
    """Predicted (approach 3) against observed loss, held-out runs and the verification run
    marked, and the residuals."""
    fig, (ax_p, ax_r) = _figure(2, width, aspect=0.82)
    a3, note = _approach(res.fit, "approach3")
    runs = res.runs[np.isfinite(res.runs["loss"])]
    ax_p.set_xlabel(f"observed {LOSS_LABEL}")
    ax_p.set_ylabel(f"predicted {LOSS_LABEL}")
    ax_r.set_xlabel(C_LABEL)
    ax_r.set_ylabel("relative residual (pred./obs. $-$ 1)")
    ax_r.set_xscale("log")
    pred = None if a3 is None else pd.Series(_predict(a3, runs["N"], runs["D"]), index=runs.index)
    # Axis limits follow the fitted and held-out runs; excluded outliers may fall outside.
    kept = ~runs["excluded"] if (~runs["excluded"]).any() else runs["loss"].notna()
    if pred is not None and not np.isfinite(pred[kept]).any():
        pred, note = None, "approach 3 skipped: its predicted loss is not finite at the runs"
    v = res.fit.verification
    if pred is None:
        _note(ax_p, [note])
        if v is not None and _finite(v.observed, v.predicted.value):
            _verification_marker(ax_p, None, v)
            ax_p.set_title(f"{v.method} verification")
            ax_p.legend(loc="upper left")
        return fig
    colors = _size_key(fig, [ax_p, ax_r], runs)
    resid = pred / runs["loss"] - 1
    _run_markers(ax_p, runs, runs["loss"], pred, colors)
    _run_markers(ax_r, runs, runs["C"], resid, colors)
    lo = min(runs["loss"][kept].min(), pred[kept].min())
    hi = max(runs["loss"][kept].max(), pred[kept].max())
    r_lo, r_hi = resid[kept].min(), resid[kept].max()
    if v is not None and _finite(v.observed, v.predicted.value):
        shown = [x for x in _verification_marker(ax_p, ax_r, v) if np.isfinite(x)]
        lo, hi = min(lo, *shown), max(hi, *shown)
        ci = v.predicted.ci if v.predicted.ci is not None else [v.predicted.value] * 2
        r_ends = [(x / v.observed - 1) for x in (v.predicted.value, *ci) if np.isfinite(x)]
        r_lo, r_hi = min(r_lo, *r_ends), max(r_hi, *r_ends)
    pad = 0.03 * (hi - lo)
    ax_r.set_ylim(r_lo - 0.08 * (r_hi - r_lo), r_hi + 0.08 * (r_hi - r_lo))
    outside = runs["excluded"] & ((runs["loss"] > hi + pad) | (pred > hi + pad) | (pred < lo - pad))
    if outside.any():
        _note(ax_p, [f"{int(outside.sum())} excluded runs beyond the axes"])
    ax_p.plot(
        [lo - pad, hi + pad],
        [lo - pad, hi + pad],
        color="k",
        lw=0.8,
        ls="--",
        gid="parity",
        label="parity",
    )
    ax_p.set_xlim(lo - pad, hi + pad)
    ax_p.set_ylim(lo - pad, hi + pad)
    ax_p.set_aspect("equal", adjustable="box")
    ax_r.axhline(0, color="k", lw=0.8, ls="--")
    ax_r.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
    held = runs["heldout"] & ~runs["excluded"]
    if held.any():
        mare = float(resid[held].abs().mean())
        ax_r.set_title(
            f"held-out mean |rel. error| = {100 * mare:.2g}"
            + (r"\%" if matplotlib.rcParams["text.usetex"] else "%")
        )
    ax_p.set_title("approach 3 against observations")
    ax_p.legend(loc="upper left")
    return fig


PLOTTERS: dict[str, Callable[[Results, str | None], Figure]] = {
    "learning_curves": plot_learning_curves,
    "isoflop": plot_isoflop,
    "compute_optimal": plot_compute_optimal,
    "surface": plot_surface,
    "parity": plot_parity,
}


# --- a law of whole loss curves (scaling-fit --law multipower|tissue) --------------------------

# Okabe-Ito: colour-blind safe, one colour per curve (cycled past eight curves)
CURVE_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
CURVE_COLUMNS = ("curve", "kind", "step", "lr", "loss", "predicted")


def load_curve_results(results_dir: Path) -> tuple[FitReport, pd.DataFrame]:
    """fit.json (with a ``curves`` section) and curves.csv of a curve-law fit."""
    results_dir = Path(results_dir)
    fit = FitReport.load(results_dir / "fit.json")
    if fit.curves is None:
        raise ValueError(f"{results_dir / 'fit.json'} holds no curve-law fit (--law multipower)")
    table = _read_csv(results_dir / "curves.csv")
    missing = sorted(set(CURVE_COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"{results_dir / 'curves.csv'} lacks columns {missing}")
    table = _numeric(table, ["step", "lr", "loss", "predicted"])
    return fit, table.assign(curve=table["curve"].astype(str))


def plot_curve_law(fit: FitReport, table: pd.DataFrame, width: str | None = None) -> Figure:
    """Observed (points; hollow: held out) and predicted (lines; dashed: never trained) loss
    curves per schedule, with the relative residuals of the observed curves below."""
    assert fit.curves is not None
    w = st.width_inches(width or "double")
    fig = NotedFigure(layout="constrained")
    fig.set_size_inches(w, w * 0.62)
    ax, ax_r = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for i, (name, g) in enumerate(table.groupby("curve", sort=False)):
        color = CURVE_COLORS[i % len(CURVE_COLORS)]
        g = g.sort_values("step")
        kind = str(g["kind"].iloc[0])
        label = f"{name} (held out)" if kind == "held_out" else name
        if kind == "predicted":
            label = f"{name} (predicted)"
        ax.plot(g["step"], g["predicted"], color=color, lw=1.0, ls="--" if kind == "predicted"
                else "-", label=label, gid=f"predicted:{name}")  # fmt: skip
        if kind == "predicted":
            continue
        held = kind == "held_out"
        ax.scatter(g["step"], g["loss"], s=8, marker="o", linewidths=0.7, edgecolors=color,
                   facecolors="white" if held else color, zorder=3, gid=f"observed:{name}")  # fmt: skip
        ax_r.plot(g["step"], 100 * (g["predicted"] - g["loss"]) / g["loss"], color=color,
                  lw=0.8, ls=":" if held else "-", marker=".", ms=2, gid=f"residual:{name}")  # fmt: skip
    ax_r.axhline(0.0, color="0.5", lw=0.6)
    seen = table.loc[table["kind"] != "predicted", ["loss", "predicted"]].to_numpy(float)
    seen = seen[np.isfinite(seen)]
    if seen.size:  # the observed range (a prediction's early steps may reach far above it)
        lo = min(seen.min(), float(np.nanmin(table["predicted"])))
        ax.set_ylim(lo - 0.05 * (seen.max() - lo), seen.max() + 0.1 * (seen.max() - lo))
    ax.set_ylabel("loss (nats/token)")
    ax_r.set_ylabel("pred. - obs. (%)")
    ax_r.set_xlabel("optimiser step")
    ax.set_title(f"{fit.curves.law}: points observed (hollow: held out), lines predicted")
    ax.legend(loc="upper right", ncols=2, fontsize="small")
    return fig


def plot_curve_results(
    results_dir: Path,
    out_dir: Path | None = None,
    style: str | None = None,
    fmt: Sequence[str] = ("pdf", "png"),
    usetex: bool = False,
    width: str | None = None,
) -> list[Path]:
    """The curve-law figure (figures/curve_law) of a results dir, from fit.json + curves.csv."""
    fit, table = load_curve_results(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else Path(results_dir) / "figures"
    with st.paper_style(style, usetex=usetex):
        fig = plot_curve_law(fit, table, width)
        st.declutter(fig)
        return st.save(fig, out_dir / "curve_law", fmt)


def render(name: str, res: Results, width: str | None = None) -> Figure:
    """Figure ``name`` of ``res``, with any tick labels that would overlap unlabelled."""
    fig = PLOTTERS[name](res, width)
    st.declutter(fig)
    return fig


def plot_all(
    results_dir: Path,
    out_dir: Path | None = None,
    style: str | None = None,
    fmt: Sequence[str] = ("pdf", "png"),
    usetex: bool = False,
    width: str | None = None,
    only: Sequence[str] | None = None,
) -> list[Path]:
    """Regenerate every figure of a results dir into out_dir (default <results-dir>/figures);
    what a figure skips is noted on it and printed to stderr, one line each."""
    names = list(only or FIGURES)
    unknown = set(names) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figures {sorted(unknown)}; valid: {', '.join(FIGURES)}")
    results_dir = Path(results_dir)
    if (results_dir / "fit.json").is_file() and FitReport.load(results_dir / "fit.json").curves:
        return plot_curve_results(results_dir, out_dir, style, fmt, usetex, width)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "figures"
    res = load_results(results_dir)
    for note in res.notes:
        print(f"scaling-plot: note: {note}", file=sys.stderr)
    paths: list[Path] = []
    with st.paper_style(style, usetex=usetex):
        for name in names:
            fig = render(name, res, width)
            for note in figure_notes(fig):
                print(f"scaling-plot: note: {name}: {note}", file=sys.stderr)
            paths += st.save(fig, out_dir / name, fmt)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """`scaling-plot <results-dir>`: regenerate the paper figures from stored results."""
    parser = argparse.ArgumentParser(prog="scaling-plot", description=main.__doc__)
    parser.add_argument("results_dir", type=Path, help="dir holding runs.csv, curves.csv, fit.json")
    parser.add_argument(
        "--out", type=Path, default=None, help="output dir (default <results-dir>/figures)"
    )
    parser.add_argument("--style", default=None, help=".mplstyle file merged over the paper style")
    parser.add_argument(
        "--width", choices=sorted(st.WIDTHS), default=None, help="column width of every figure"
    )
    parser.add_argument(
        "--format", nargs="+", default=["pdf", "png"], choices=st.FORMATS, dest="fmt"
    )
    parser.add_argument(
        "--usetex", action="store_true", help="render text with LaTeX (needs a TeX install)"
    )
    parser.add_argument("--only", nargs="+", choices=FIGURES, default=None, help="figures to draw")
    args = parser.parse_args(argv)
    try:
        paths = plot_all(
            args.results_dir, args.out, args.style, args.fmt, args.usetex, args.width, args.only
        )
    except (OSError, ValueError) as e:  # FitReportError is a ValueError
        parser.exit(2, f"scaling-plot: error: {e}\n")
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
