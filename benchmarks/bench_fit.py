"""Time the approach-3 fit and bootstrap on the 240 Chinchilla points against a naive scipy loop.

Data: Besiroglu et al. 2024 (epoch-research/analyzing-chinchilla), the digitised Chinchilla
points less the 5 highest losses (see data/reference/README.md).

- fast: analysis.fit.fit over the full 4,500-start grid (batched L-BFGS in numpy with the exact
  gradient, threads over cores, then a tight-tolerance polish of the best few), and a bootstrap of
  resampled runs warm-started from the best distinct optima.
- naive: the straightforward loop, scipy.optimize.minimize(method="L-BFGS-B") with numerical
  gradients, one start at a time. It is run on a random subset of the grid (``--naive-starts``,
  seed 0) plus the start from which the fast fit reached its best optimum; its time is
  extrapolated to 4,500 starts.
- bootstrap check: a few resamples are refitted over the full grid; the warm-started bootstrap
  must reach the same objective.

Run: .venv/bin/python benchmarks/bench_fit.py [--naive-starts 40] [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from analysis.fit import Objective, bootstrap, fit
from analysis.laws import get_law

DATA = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "reference"
    / "chinchilla_epoch_svg_extracted.csv"
)


def chinchilla_points() -> pd.DataFrame:
    """The 240 points of Besiroglu et al.'s replication."""
    df = pd.read_csv(DATA).rename(columns={"Model Size": "N", "Training FLOP": "C"})
    df["D"] = df["C"] / (6 * df["N"])
    return df[df["loss"] < np.sort(df["loss"].to_numpy())[-5]].reset_index(drop=True)


def naive_objective(params, log_n, log_d, log_y, delta=1e-3):
    """Summed Huber loss of log residuals, Chinchilla form in log-sum-exp, plain numpy."""
    a, b, e, alpha, beta = params
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    mx = terms.max(axis=0)
    r = mx + np.log(np.exp(terms - mx).sum(axis=0)) - log_y
    return np.sum(np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)))


def main() -> None:
    """Print fast and naive times and objectives side by side."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--naive-starts", type=int, default=40)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--check-resamples", type=int, default=3)
    args = p.parse_args()
    df = chinchilla_points()
    law = get_law("chinchilla")
    grid = law.start_grid()

    t0 = time.perf_counter()
    res = fit(law, df)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    boot = bootstrap(res, df, n=args.bootstrap, seed=0)
    t_boot = time.perf_counter() - t0

    args_ = (np.log(df["N"].to_numpy()), np.log(df["D"].to_numpy()), np.log(df["loss"].to_numpy()))
    rng = np.random.default_rng(0)
    starts = np.vstack(
        [grid[rng.choice(len(grid), args.naive_starts, replace=False)], res.best_start]
    )
    t0 = time.perf_counter()
    naive = [minimize(naive_objective, s, args=args_, method="L-BFGS-B") for s in starts]
    t_naive = time.perf_counter() - t0
    per_start = t_naive / len(starts)
    f_naive = min(r.fun for r in naive)
    f_subset = min(r.fun for r in naive[:-1])

    print(f"data: {len(df)} Chinchilla points (Besiroglu et al. 2024), Huber delta 1e-3 on log L")
    print(f"{'method':<46}{'time (s)':>12}{'objective':>16}")
    print(f"{'fast fit, 4,500-start grid':<46}{t_fit:>12.2f}{res.objective:>16.10f}")
    print(
        f"{'naive scipy, ' + str(len(starts)) + ' starts (measured)':<46}{t_naive:>12.2f}"
        f"{f_naive:>16.10f}"
    )
    print(f"{'  of which the random subset only':<46}{'':>12}{f_subset:>16.10f}")
    print(f"{'naive scipy, 4,500 starts (extrapolated)':<46}{per_start * len(grid):>12.1f}{'':>16}")
    print(f"speed-up on the grid fit: {per_start * len(grid) / t_fit:.0f}x")
    print(f"relative objective gap fast vs naive best: {(res.objective - f_naive) / f_naive:+.2e}")
    print(f"starts that reached the best optimum (fast): {res.n_best} / {res.n_starts}")
    print(f"parameters (fast): {', '.join(f'{k}={v:.4g}' for k, v in res.params.items())}")
    print(f"bootstrap, {args.bootstrap} resamples of runs: {t_boot:.2f} s")

    # bootstrap check: the warm-started resamples reach the full-grid optimum of the resample
    counts_rng = np.random.default_rng(0)
    draws = counts_rng.integers(0, len(df), size=(args.bootstrap, len(df)))
    gaps = []
    for i in range(min(args.check_resamples, args.bootstrap)):
        w = np.bincount(draws[i], minlength=len(df)).astype(float)
        obj = Objective(
            law, {"N": df["N"].to_numpy(), "D": df["D"].to_numpy()}, df["loss"], weights=w
        )
        f_boot = obj.value_grad(boot[i][None])[0][0]
        f_full = fit(law, df, weights=w).objective
        gaps.append((f_boot - f_full) / f_full)
    print(
        f"bootstrap vs full-grid refit on {len(gaps)} resamples: relative objective gaps {np.round(gaps, 8).tolist()}"
    )


if __name__ == "__main__":
    main()
