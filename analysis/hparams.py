"""Laws of the best learning rate and batch size, fitted from an LR x batch-size grid.

Each (N, D) cell of the grid (`scaling-train -m +sweep=lr_bs`, or a CSV such as Step Law's
released grid) gives one optimum: the geometric mean of the learning rates and of the batch
sizes of the runs whose loss is within ``band`` (relative) of the cell's best loss (Li et al.
2025, "Step Law": 0.25%). Through the one registry and the one `fit` (least squares in log
space), the optima are fitted as power laws

    lr*(N, D) = c N^a D^b        (law power_ND)      B*(D) = k D^m   (law power_D)
    lr*(C)    = c C^a            (law power_C)       B*(C) = k C^m   (DeepSeek LLM 2024)

with bootstrap intervals over cells. B is in tokens per optimiser step. The result is written as
``hparams.json`` (`HparamsReport`), a Markdown section and a figure (`analysis.plots_hparams`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from analysis.collect import CollectError, collect, read_table
from analysis.fit import FitError, bootstrap, fit, interval
from analysis.laws import get_law
from analysis.report import fmt, fmt_ci
from analysis.results import Estimate, LawFit, from_plain, law_fit_from, to_plain
from analysis.style import BUDGET_CMAP, cmap, paper_style, save, width_inches
from contract import CONVENTIONS, atomic_write_text
from contract.settings import load_settings

HPARAMS_FORMAT = 1
"""Version of the hparams.json layout."""

# the registry law of each fitted relation, and the variables it is a law of
LAW_OF = {"lr_ND": "power_ND", "B_D": "power_D", "lr_C": "power_C", "B_C": "power_C"}
SETTINGS_DIR = Path(__file__).resolve().parents[1] / "conf" / "hparams"
HUBER_DELTA = 10.0  # on log residuals: plain least squares for every realistic residual
OUTPUTS = ("hparams.json", "hparams.md", "hparams_grid.pdf", "hparams_grid.png")


class HparamsError(ValueError):
    """The grid cannot give the laws asked for (too few cells, one LR, bad columns)."""


@dataclass
class HparamsSettings:
    """How the optima are chosen and the intervals computed (the options of scaling-hparams)."""

    band: float = 0.0025
    """Runs within this fraction of a cell's best loss count as optimal (Step Law: 0.25%)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples of the cells (0: no intervals)."""
    ci: float = 0.9
    """Coverage of the percentile intervals."""
    seed: int = 0
    """Seed of the bootstrap."""

    @classmethod
    def load(
        cls, name_or_path: str | Path = "steplaw", overrides: Mapping[str, Any] | None = None
    ) -> HparamsSettings:
        """The named setting (``conf/hparams/<name>.yaml``) or a YAML file, with overrides."""
        path, merged = load_settings(
            SETTINGS_DIR, name_or_path, [f.name for f in fields(cls)], overrides,
            what="hparams", error=HparamsError,
        )  # fmt: skip
        bad = {k: v for k, v in merged.items() if not isinstance(v, int | float) or v is True}
        if bad:
            raise HparamsError(f"{path}: settings {bad} must be numbers")
        return cls(**merged)

    def __post_init__(self) -> None:
        if not 0 <= self.band < 1:
            raise HparamsError(f"band={self.band} must be a fraction in [0, 1), e.g. 0.0025")
        if self.n_bootstrap < 0:
            raise HparamsError(f"n_bootstrap={self.n_bootstrap} must be >= 0")
        if not 0 < self.ci < 1:
            raise HparamsError(f"ci={self.ci} must be in (0, 1), e.g. 0.9")


@dataclass
class Cell:
    """One (N, D) cell of the grid and its optimum."""

    N: float
    """Non-embedding parameters."""
    D: float
    """Training tokens."""
    C: float
    """Training compute of the cell (the source's convention; 6ND for a CSV without C)."""
    lr: float
    """Optimal peak LR: geometric mean of the LRs of the runs in the band."""
    B: float
    """Optimal batch size (tokens per step): geometric mean of the band's batch sizes."""
    best_loss: float
    """The cell's lowest loss."""
    best_lr: float
    """The LR of the run with the lowest loss."""
    best_B: float
    """The batch size of the run with the lowest loss."""
    n_runs: int
    """Runs in the cell."""
    n_band: int
    """Runs within the band of the best loss."""
    lrs: list[float]
    """The LRs tried in the cell."""
    Bs: list[float]
    """The batch sizes tried in the cell."""
    edge: list[str] = field(default_factory=list)
    """Which grid edges the best run sits on ("lowest lr", "highest B", ...)."""
    runs: list[list[float]] = field(default_factory=list)
    """[B, lr, loss] of every run of the cell (what the figure draws)."""


@dataclass
class PowerLaw:
    """y = coef * prod(x^exponent): one fitted relation, in natural units with intervals."""

    target: str
    """What is predicted: "lr" (peak LR) or "B" (tokens per step)."""
    variables: list[str]
    """What it is a law of: ["N", "D"], ["D"] or ["C"]."""
    coef: Estimate
    """The coefficient c (or k)."""
    exponents: dict[str, Estimate]
    """The exponent of each variable (a, b or m)."""
    fit: LawFit
    """The registry law's fit (y = A / prod(x^alpha): exponents with the opposite sign)."""

    def predict(self, **x: float) -> float:
        """The law at the given variables, e.g. ``predict(N=1e8, D=2e9)``."""
        missing = [v for v in self.variables if v not in x]
        if missing:
            raise HparamsError(f"{self.formula()} needs {missing}")
        return float(
            self.coef.value * math.prod(x[v] ** self.exponents[v].value for v in self.variables)
        )

    def formula(self, digits: int = 4) -> str:
        """The law as text, e.g. "lr* = 1.79 N^-0.713 D^0.307"."""
        terms = " ".join(f"{v}^{self.exponents[v].value:.{digits}g}" for v in self.variables)
        return f"{self.target}* = {self.coef.value:.{digits}g} {terms}"


@dataclass
class HparamsReport:
    """Everything scaling-hparams decided (hparams.json): settings, cell optima, four laws."""

    source: str
    """What was read: a run store or a CSV."""
    settings: HparamsSettings
    """Band and bootstrap settings."""
    convention: str
    """FLOP convention of C."""
    n_runs: int
    """Runs read (with a finite loss, LR and batch size)."""
    cells: list[Cell]
    """Each (N, D) cell's optimum."""
    laws: dict[str, PowerLaw]
    """lr_ND, B_D, lr_C and B_C."""
    warnings: list[str] = field(default_factory=list)
    """Cells whose best run is at the grid's edge, and other notes."""
    format: int = HPARAMS_FORMAT
    """Version of this layout."""

    def to_json(self) -> str:
        """hparams.json text (NaN as null)."""
        return json.dumps(to_plain(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def load(cls, path: Path | str) -> HparamsReport:
        """Read an hparams.json (or the one in a results folder); HparamsError names it."""
        path = Path(path)
        path = path / "hparams.json" if path.is_dir() else path
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise HparamsError(f"cannot read {path}: {type(err).__name__}: {err}") from None
        if not isinstance(data, dict) or data.get("format") != HPARAMS_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise HparamsError(
                f"cannot read {path}: format {got!r} is not {HPARAMS_FORMAT}; rerun "
                "scaling-hparams to rewrite it"
            )
        try:
            report = from_plain(cls, data, "")
        except (TypeError, ValueError, KeyError) as err:
            raise HparamsError(f"cannot read {path}: {err}") from None
        missing = [k for k in LAW_OF if k not in report.laws]
        if missing:
            raise HparamsError(f"cannot read {path}: laws {missing} missing; rerun it")
        return report


# ---- the grid: runs -> cells -> optima ----


def cell_optimum(runs: pd.DataFrame, band: float) -> Cell:
    """One cell's optimum from its runs (columns N, D, C, lr, B, loss)."""
    best = runs.loc[runs["loss"].idxmin()]
    near = runs[runs["loss"] <= best["loss"] * (1 + band)]
    lrs, bs = sorted(runs["lr"].unique()), sorted(runs["B"].unique())
    edge = [
        f"{side} {name}"
        for name, grid, value in (("lr", lrs, best["lr"]), ("B", bs, best["B"]))
        for side, end in (("lowest", grid[0]), ("highest", grid[-1]))
        if len(grid) > 1 and value == end
    ]
    return Cell(
        N=float(best["N"]),
        D=float(best["D"]),
        C=float(runs["C"].median()),
        lr=float(np.exp(np.log(near["lr"]).mean())),
        B=float(np.exp(np.log(near["B"]).mean())),
        best_loss=float(best["loss"]),
        best_lr=float(best["lr"]),
        best_B=float(best["B"]),
        n_runs=len(runs),
        n_band=len(near),
        lrs=[float(x) for x in lrs],
        Bs=[float(x) for x in bs],
        edge=edge,
        runs=runs[["B", "lr", "loss"]].to_numpy(float).tolist(),
    )


def cells_of(runs: pd.DataFrame, band: float) -> tuple[list[Cell], list[str]]:
    """Every (N, D) cell's optimum, and warnings for cells whose best run is at a grid edge."""
    cells, warnings = [], []
    for (n, d), group in runs.groupby(["N", "D"], sort=True):
        if group["lr"].nunique() < 2:
            raise HparamsError(
                f"cell N={n:.4g}, D={d:.4g} has one learning rate ({group['lr'].iloc[0]:g}); "
                "every cell needs >= 2 (sweep.lrs of the lr_bs sweep)"
            )
        cell = cell_optimum(group, band)
        cells.append(cell)
        if len(cell.Bs) < 2:
            warnings.append(
                f"cell N={n:.4g}, D={d:.4g} has one batch size ({cell.Bs[0]:g}): its B* is that "
                "batch, not a located optimum"
            )
        if cell.edge:
            warnings.append(
                f"cell N={n:.4g}, D={d:.4g}: the best run (lr={cell.best_lr:g}, B={cell.best_B:g})"
                f" is at the {' and '.join(cell.edge)} of the grid; the optimum may lie beyond "
                "it: extend sweep.lrs / sweep.batch_sizes"
            )
    return cells, warnings


def check_grid(runs: pd.DataFrame) -> None:
    """Refuse, before any fit, a grid that cannot determine the laws."""
    cells = runs.groupby(["N", "D"]).ngroups
    n_sizes, n_tokens = runs["N"].nunique(), runs["D"].nunique()
    if cells < 3 or n_sizes < 2 or n_tokens < 2:
        raise HparamsError(
            f"the grid has {cells} (N, D) cell(s) over {n_sizes} size(s) and {n_tokens} token "
            "count(s); lr*(N, D) needs >= 3 cells with >= 2 sizes and >= 2 token counts"
        )
    if runs["B"].nunique() < 2:
        raise HparamsError(
            f"every run has batch size {runs['B'].iloc[0]:g}; B*(D) needs >= 2 batch sizes"
        )


# ---- the laws ----


def _power_law(
    target: str, variables: list[str], table: pd.DataFrame, settings: HparamsSettings
) -> PowerLaw:
    """One relation fitted by the registry law in log space, with a bootstrap over cells."""
    law = get_law(LAW_OF[f"{target}_{''.join(variables)}"])
    grid = {"a": (-10.0, 0.0, 10.0), **{p: (-1.0, 0.0, 1.0) for p in law.params[1:]}}
    result = fit(law, table, loss=target, grid=grid, delta=HUBER_DELTA)
    boot = None
    if settings.n_bootstrap:
        boot = bootstrap(result, table, loss=target, n=settings.n_bootstrap, seed=settings.seed)
    law_fit = law_fit_from(result, boot, settings.ci)
    natural = law.to_natural(boot) if boot is not None else {}
    exps = [p for p in law.natural_names if p != "A"]
    flip = {  # y = A / prod(x^alpha): the exponent of each variable is -alpha
        v: Estimate(
            -law_fit.params[p].value,
            interval(-natural[p], settings.ci) if p in natural else None,
        )
        for v, p in zip(variables, exps)
    }
    return PowerLaw(target, variables, law_fit.params["A"], flip, law_fit)


def fit_hparams(
    runs: pd.DataFrame, settings: HparamsSettings, source: str, convention: str
) -> HparamsReport:
    """The cell optima of a grid (columns N, D, C, lr, B, loss) and the four laws."""
    for col in ("N", "D", "C", "lr", "B", "loss"):
        if col not in runs:
            raise HparamsError(f"{source}: no column {col!r}; columns present: {list(runs)}")
    check_grid(runs)
    cells, warnings = cells_of(runs, settings.band)
    table = pd.DataFrame([{k: getattr(c, k) for k in ("N", "D", "C", "lr", "B")} for c in cells])
    try:
        laws = {
            f"{t}_{''.join(v)}": _power_law(t, v, table, settings)
            for t, v in (("lr", ["N", "D"]), ("B", ["D"]), ("lr", ["C"]), ("B", ["C"]))
        }
    except FitError as err:
        raise HparamsError(f"{source}: {err}") from None
    return HparamsReport(source, settings, convention, len(runs), cells, laws, warnings)


# ---- reading a grid ----


def grid_from_csv(
    path: Path, columns: dict[str, str], batch_unit: float
) -> tuple[pd.DataFrame, str]:
    """A CSV grid as columns N, D, C, lr, B (tokens), loss, and how C was counted; ``columns``
    maps the targets onto the CSV's own column names (default: the same names)."""
    df = read_table(path)
    mapping = {t: columns.get(t, t) for t in ("N", "D", "lr", "B", "loss")}
    if "C" in columns or "C" in df:
        mapping["C"] = columns.get("C", "C")
    missing = [f"{t}={s}" for t, s in mapping.items() if s not in df]
    if missing:
        raise HparamsError(
            f"CSV {path}: columns {missing} not found (map them with --columns "
            f"N=..,D=..,lr=..,B=..,loss=..); columns present: {list(df.columns)}"
        )
    # as floats: 6 N D of int64 columns overflows past 9.2e18
    out = pd.DataFrame(
        {t: pd.to_numeric(df[s], errors="coerce").astype(float) for t, s in mapping.items()}
    )
    out["B"] = out["B"] * batch_unit
    convention = f"as given (CSV column {mapping['C']!r})" if "C" in mapping else "6ND"
    if "C" not in out:
        out["C"] = 6 * out["N"] * out["D"]
    return _finite_rows(out, str(path)), convention


def grid_from_store(path: Path, convention: str) -> pd.DataFrame:
    """The usable runs of a run store (or W&B source) as columns N, D, C, lr, B, loss."""
    try:
        usable = collect(path, convention=convention).usable
    except CollectError as err:
        raise HparamsError(str(err)) from None
    return _finite_rows(usable[["N", "D", "C", "lr", "B", "loss"]].astype(float), str(path))


def _finite_rows(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """The rows whose values are all finite and positive; none is an error."""
    ok = np.isfinite(table.to_numpy(float)).all(axis=1) & (table.to_numpy(float) > 0).all(axis=1)
    if not ok.any():
        raise HparamsError(f"{source}: no run with a finite positive N, D, C, lr, B and loss")
    return table[ok].reset_index(drop=True)


# ---- report ----


def markdown(report: HparamsReport) -> str:
    """The report section: the four laws with intervals, the cells, the warnings."""
    s = report.settings
    lines = [
        "## Hyperparameter laws",
        "",
        f"Source: `{report.source}`; {report.n_runs} runs in {len(report.cells)} (N, D) cells. "
        f"Optimum per cell: geometric mean of the runs within {s.band:.2%} of its best loss; "
        f"intervals: {s.ci:.0%} over {s.n_bootstrap} bootstrap resamples of the cells. "
        "B in tokens per step; C in the source's convention.",
        "",
        "| law | coefficient | exponents |",
        "|---|---|---|",
    ]
    for law in report.laws.values():
        exps = "; ".join(
            f"{v}: {fmt(e.value)} {fmt_ci(e.ci)}".rstrip() for v, e in law.exponents.items()
        )
        lines.append(
            f"| `{law.formula()}` | {fmt(law.coef.value)} {fmt_ci(law.coef.ci)} | {exps} |"
        )
    lines += ["", "| N | D | C | lr* | B* | best loss | runs in band | edge |", "|---" * 8 + "|"]
    for c in report.cells:
        lines.append(
            f"| {c.N:.4g} | {c.D:.4g} | {c.C:.3g} | {c.lr:.4g} | {c.B:.4g} | {c.best_loss:.4f} "
            f"| {c.n_band}/{c.n_runs} | {', '.join(c.edge)} |"
        )
    lines += ["", *(f"- warning: {w}" for w in report.warnings)]
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(out: Path, report: HparamsReport) -> list[Path]:
    """hparams.json, hparams.md and the grid figure (PDF + PNG) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "hparams.json", report.to_json())
    atomic_write_text(out / "hparams.md", markdown(report))
    return [
        out / "hparams.json",
        out / "hparams.md",
        *save_grid_figure(report, out / "hparams_grid"),
    ]


# ---- figure ----

EXCESS_MAX = 0.02  # the colour scale's top: 2% above the cell's best loss and worse


def plot_grid(report: HparamsReport, ncols: int = 4) -> Figure:
    """Loss over the LR x batch grid, one panel per cell: the band's runs ringed, the cell's
    optimum (x) and the fitted laws' optimum lr*(N, D), B*(D) (diamond) marked."""
    cells = report.cells
    nrows = math.ceil(len(cells) / ncols)
    fig = Figure(layout="constrained", figsize=(width_inches("double"), 1.55 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    m, norm = cmap(BUDGET_CMAP), Normalize(0.0, 100 * EXCESS_MAX)
    lr_law, b_law = report.laws["lr_ND"], report.laws["B_D"]
    for ax, c in zip(axes.flat, cells):
        b, lr, loss = np.asarray(c.runs, float).reshape(-1, 3).T
        excess = np.minimum(100 * (loss / c.best_loss - 1), 100 * EXCESS_MAX)
        in_band = loss <= c.best_loss * (1 + report.settings.band)
        ax.scatter(b, lr, c=m(norm(excess)), s=14, edgecolors=np.where(in_band, "k", "none"))
        ax.plot([c.B], [c.lr], "x", color="k", ms=6, label="cell optimum (band mean)")
        ax.plot(
            [b_law.predict(D=c.D)],
            [lr_law.predict(N=c.N, D=c.D)],
            "D",
            mfc="none",
            mec="#d55e00",
            ms=6,
            label="fitted law",
        )
        ax.set(xscale="log", yscale="log")
        ax.set_title(f"N={c.N:.3g}, D={c.D:.3g}", fontsize="small")
    for ax in axes.flat:  # after every panel's log scale: minor ticks cost seconds here
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_minor_locator(NullLocator())
    for ax in axes.flat[len(cells) :]:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[: len(cells)]):
        if i + ncols >= len(cells):  # the lowest panel of its column: x labels under it
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("batch size (tokens)")
    for ax in axes[:, 0]:
        ax.set_ylabel("peak LR")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=2, frameon=False)
    bar = fig.colorbar(ScalarMappable(norm, m), ax=axes, shrink=0.6, extend="max")
    bar.set_label("loss above the cell's best (%)")
    return fig


def save_grid_figure(report: HparamsReport, stem: Path) -> list[Path]:
    """The grid figure as stem.pdf and stem.png, in the paper style."""
    with paper_style():
        return save(plot_grid(report), stem)


# ---- command line ----


def _mapping(text: str) -> dict[str, str]:
    """ "N=N,B=bs,loss=smooth loss" -> {"N": "N", "B": "bs", "loss": "smooth loss"}."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    bad = [
        p[0] for p in pairs if len(p) != 2 or p[0].strip() not in ("N", "D", "C", "lr", "B", "loss")
    ]
    if bad:
        raise argparse.ArgumentTypeError(
            f"bad --columns entries {bad}: give target=column with targets N, D, C, lr, B, loss"
        )
    return {k.strip(): v.strip() for k, v in pairs}


def parser() -> argparse.ArgumentParser:
    """The command line of scaling-hparams."""
    p = argparse.ArgumentParser(
        prog="scaling-hparams",
        description="Fit the best peak LR and batch size as power laws, lr*(N, D) = c N^a D^b, "
        "B*(D) = k D^m, lr*(C), B*(C), from an LR x batch-size grid (`scaling-train -m "
        "+sweep=lr_bs`, or a CSV); writes hparams.json, hparams.md and hparams_grid.pdf/png.",
    )
    p.add_argument("source", help="a run store (e.g. runs/lr_bs) or a CSV with one row per run")
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    p.add_argument(
        "--settings",
        default="steplaw",
        help="a named setting (conf/hparams/<name>.yaml) or a YAML file (default: steplaw: "
        "band 0.25%%, 1,000 bootstrap resamples, 90%% intervals); the options below override it",
    )
    p.add_argument(
        "--band", type=float, help="runs within this fraction of a cell's best loss are optimal"
    )
    p.add_argument(
        "--bootstrap", type=int, help="bootstrap resamples of the cells for the intervals (0: none)"
    )
    p.add_argument("--ci", type=float, help="interval coverage, e.g. 0.9")
    p.add_argument("--seed", type=int, help="bootstrap seed")
    p.add_argument(
        "--columns",
        type=_mapping,
        default={},
        help="CSV only: target=column for "
        "N, D, C, lr, B, loss (default: the same names), e.g. 'B=bs,loss=smooth loss'",
    )
    p.add_argument(
        "--batch-unit",
        type=float,
        default=1.0,
        help="CSV only: tokens per unit "
        "of the B column (e.g. 2048 when B counts sequences of 2,048 tokens)",
    )
    p.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default="chinchilla",
        help="run store only: the FLOP convention of C (default chinchilla)",
    )
    return p


def _check_out(source: str, out: Path) -> None:
    """Refuse an output folder that is a file or lies inside the source (read as runs)."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise HparamsError(f"--out {out}: {existing} is an existing file; give a folder")
    src = Path(source).resolve()
    if src.is_dir() and out.resolve().is_relative_to(src):
        raise HparamsError(f"--out {out} is inside the source {source}; write elsewhere")


def run(args: argparse.Namespace) -> tuple[HparamsReport, list[Path]]:
    """Read the grid, fit the laws, write the outputs."""
    given = {"band": args.band, "n_bootstrap": args.bootstrap, "ci": args.ci, "seed": args.seed}
    settings = HparamsSettings.load(args.settings, given)
    _check_out(args.source, args.out)
    is_csv = Path(args.source).suffix == ".csv"
    if not is_csv and (args.columns or args.batch_unit != 1.0):
        raise HparamsError("--columns and --batch-unit apply to a CSV source only")
    if is_csv:
        grid, convention = grid_from_csv(Path(args.source), args.columns, args.batch_unit)
    else:
        grid, convention = grid_from_store(Path(args.source), args.convention), args.convention
    report = fit_hparams(grid, settings, str(args.source), convention)
    return report, write_outputs(args.out, report)


def main(argv: Sequence[str] | None = None) -> int:
    """`scaling-hparams SOURCE --out DIR [--band 0.0025] [--bootstrap 1000]`."""
    p = parser()
    args = p.parse_args(argv)
    try:
        report, paths = run(args)
    except (HparamsError, FitError, CollectError, OSError) as err:
        p.error(str(err))
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for law in report.laws.values():
        cis = ", ".join(f"{v} {fmt_ci(e.ci)}" for v, e in law.exponents.items() if e.ci)
        print(law.formula() + (f"   ({cis})" if cis else ""))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
