"""A small, realistic results dir (runs.csv, curves.csv, fit.json) made by the real fitter.

The losses come from a known Chinchilla law plus noise: 6 sizes x 4 IsoFLOP budgets with
learning curves, one diverged (excluded) run, and the largest run held out. The tables are
written as a CSV source with one curve file per run and fitted by ``scaling-fit``'s own
``run_fit``, so fit.json is exactly what users get.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cli import run_fit
from analysis.fitconfig import FitConfig
from analysis.results import Approach1Result, Approach2Result, Approach3Result, FitReport

# The true law (Hoffmann et al. 2022's approach-3 estimates) and the sweep.
LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
SIZES = {"10M": 1e7, "20M": 2e7, "40M": 4e7, "80M": 8e7, "160M": 1.6e8, "320M": 3.2e8}
BUDGETS = (1e17, 1e18, 1e19, 1e20)
NOISE = 0.004  # relative, on the final loss
N_CURVE_POINTS = 12
DIVERGED = "320M-C1e17"
HELDOUT = "320M-C1e20"
TARGET = 1e22
ERROR_RESULTS = {
    "approach1": Approach1Result,
    "approach2": Approach2Result,
    "approach3": Approach3Result,
}


def chinchilla(N, D, E, A, B, alpha, beta):
    """The true loss L = E + A/N^alpha + B/D^beta."""
    return E + A / np.power(N, alpha) + B / np.power(D, beta)


def build_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves tables of the synthetic sweep."""
    rng = np.random.default_rng(seed)
    runs, curves = [], []
    for C in BUDGETS:
        for size, N in SIZES.items():
            name = f"{size}-C{C:.0e}".replace("e+", "e")
            D = C / (6 * N)
            diverged = name == DIVERGED
            tokens = np.geomspace(D / 50, D, N_CURVE_POINTS)
            warm = 1 + 0.3 * np.exp(-tokens / (D / 20))  # early-training excess loss
            clean = chinchilla(N, tokens, **LAW) * warm
            loss_curve = clean * (1 + NOISE * rng.standard_normal(N_CURVE_POINTS))
            if diverged:
                loss_curve[N_CURVE_POINTS // 2 :] = np.nan
            steps = np.round(tokens / 4096).astype(int)
            for t, s, lv in zip(tokens, steps, loss_curve):
                if np.isnan(lv):
                    continue
                curves.append(
                    {
                        "run": name,
                        "sweep": "isoflop",
                        "size": size,
                        "N": N,
                        "step": s,
                        "tokens": t,
                        "C_kaplan": 6 * N * t,
                        "C_6n": 6 * N * t,
                        "C_chinchilla": 6 * N * t,
                        "C": 6 * N * t,
                        "loss": lv,
                        "train_loss": lv * 0.99,
                        "lr": 3e-3,
                    }
                )
            final = float("nan") if diverged else float(loss_curve[-1])
            runs.append(
                {
                    "run": name,
                    "sweep": "isoflop",
                    "size": size,
                    "status": "diverged" if diverged else "completed",
                    "N": N,
                    "N_total": N * 1.1,
                    "N_with_head": N * 1.05,
                    "D": D,
                    "C_kaplan": C,
                    "C_6n": C,
                    "C_chinchilla": C,
                    "C": C,
                    "loss": final,
                    "train_loss": final * 0.99,
                    "seed": 0,
                    "lr": 3e-3,
                    "tokens_per_param": D / N,
                    "heldout": False,
                    "entropy_rate": np.nan,
                }
            )
    return pd.DataFrame(runs), pd.DataFrame(curves)


def write_source(folder: Path, seed: int = 0, curves: bool = True) -> tuple[Path, FitConfig]:
    """The synthetic sweep as a CSV source (runs.csv, curves/<run>.csv) and its fit settings."""
    runs, curve_df = build_tables(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cols = ["run", "sweep", "size", "status", "N", "D", "C", "loss", "seed", "lr"]
    runs[cols].to_csv(folder / "runs.csv", index=False)
    (folder / "curves").mkdir(exist_ok=True)
    for run, g in curve_df.groupby("run"):
        g[["step", "tokens", "C", "loss", "train_loss", "lr"]].to_csv(
            folder / "curves" / f"{run}.csv", index=False
        )
    config = FitConfig(
        bootstrap=100,
        grid=500,
        holdout=f"run == '{HELDOUT}'",
        targets=[TARGET],
        curves=str(folder / "curves" / "*.csv") if curves else None,
    )
    return folder / "runs.csv", config


_FITTED: dict[tuple[int, bool], Path] = {}


def _fitted(seed: int, curves: bool) -> Path:
    """The real fit of the synthetic sweep, run once per test session for each (seed, curves):
    the fit is deterministic and takes seconds, and several test files read it."""
    if (seed, curves) not in _FITTED:
        folder = Path(tempfile.mkdtemp(prefix="fixtures-results-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        with tempfile.TemporaryDirectory() as tmp:
            source, config = write_source(Path(tmp), seed, curves)
            run_fit(source, folder / "fit", config, quiet=True)
        _FITTED[seed, curves] = folder / "fit"
    return _FITTED[seed, curves]


def write_results(
    out: Path, seed: int = 0, errors: dict[str, str] | None = None, curves: bool = True
) -> Path:
    """Fit the synthetic sweep into ``out`` with the real fitter; ``errors`` then replaces
    approaches by results that could not be computed (as a fit of other data would give)."""
    out = Path(out)
    shutil.copytree(_fitted(seed, curves), out, dirs_exist_ok=True)
    if not curves:
        (out / "curves.csv").unlink()
    if errors:
        report = FitReport.load(out)
        for approach, why in errors.items():
            setattr(report, approach, ERROR_RESULTS[approach](error=why))
        report.save(out / "fit.json")
    return out
