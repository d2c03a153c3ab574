"""Build a small, realistic results dir (runs.csv, curves.csv, fit.json; docs/formats.md).

The losses come from a known Chinchilla law plus noise: 6 sizes x 4 IsoFLOP budgets, one
diverged (excluded) run, and the largest run held out. fit.json is filled from the true law
(approach 3) and from simple fits of the generated data (approaches 1 and 2), so figures built
from it look like the real thing without running the fitting code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

# The true law (Hoffmann et al. 2022's approach-3 estimates) and the sweep.
LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
SIZES = {"10M": 1e7, "20M": 2e7, "40M": 4e7, "80M": 8e7, "160M": 1.6e8, "320M": 3.2e8}
BUDGETS = (1e17, 1e18, 1e19, 1e20)
NOISE = 0.004  # relative, on the final loss
N_CURVE_POINTS = 12
DIVERGED = "320M-C1e17"


def chinchilla(N, D, E, A, B, alpha, beta):
    """The true loss L = E + A/N^alpha + B/D^beta."""
    return E + A / np.power(N, alpha) + B / np.power(D, beta)


def _allocation(law: dict) -> dict:
    """Exponents and coefficients of the compute-optimal allocation under C = 6ND."""
    al, be = law["alpha"], law["beta"]
    G = (al * law["A"] / (be * law["B"])) ** (1 / (al + be))
    a, b = be / (al + be), al / (al + be)
    return {"a": a, "b": b, "N_coef": G * 6.0**-a, "D_coef": 6.0**-b / G}


def _power_fit(C, y) -> tuple[float, float]:
    """Slope and prefactor of y = k C^s by least squares in log-log space."""
    s, logk = np.polyfit(np.log10(C), np.log10(y), 1)
    return float(s), float(10**logk)


def _approach_block(C, N_opt, D_opt) -> dict:
    """a, b, intervals and coefficients from compute-optimal points."""
    a, N_coef = _power_fit(C, N_opt)
    b, D_coef = _power_fit(C, D_opt)
    return {
        "a": a,
        "b": b,
        "a_ci": [a - 0.03, a + 0.03],
        "b_ci": [b - 0.03, b + 0.03],
        "N_coef": N_coef,
        "D_coef": D_coef,
    }


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
    runs_df = pd.DataFrame(runs)
    runs_df.loc[runs_df["run"] == f"320M-C{BUDGETS[-1]:.0e}".replace("e+", "e"), "heldout"] = True
    return runs_df, pd.DataFrame(curves)


def build_fit(runs: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """A fit.json dict for the tables, shaped as scaling-fit writes it."""
    ok = runs[(runs["status"] == "completed") & ~runs["heldout"]]
    # Approach 1: the lower envelope of all curves over C, sampled on a log grid.
    grid = np.geomspace(min(BUDGETS) / 3, curves["C"].max() / 1.5, 8)
    points = []
    for C in grid:
        best = None
        for run, g in curves.groupby("run"):
            if not g["C"].min() <= C <= g["C"].max():
                continue
            loss = float(np.interp(np.log(C), np.log(g["C"]), g["loss"]))
            if best is None or loss < best[0]:
                best = (loss, run, float(g["N"].iloc[0]))
        loss, run, N = best
        points.append({"C": C, "N_opt": N, "D_opt": C / (6 * N), "loss": loss, "run": run})
    p1 = pd.DataFrame(points)
    approach1 = _approach_block(p1["C"], p1["N_opt"], p1["D_opt"]) | {"points": points}

    # Approach 2: a parabola in log10 N per budget.
    budgets = []
    for C, g in ok.groupby("C"):
        x = np.log10(g["N"].to_numpy())
        coeffs = np.polyfit(x, g["loss"].to_numpy(), 2)
        x_opt = -coeffs[1] / (2 * coeffs[0])
        edge = bool(coeffs[0] <= 0 or not x.min() < x_opt < x.max())
        x_opt = float(np.clip(x_opt, x.min(), x.max()))
        N_opt = 10**x_opt
        budgets.append(
            {
                "C": float(C),
                "N_opt": N_opt,
                "D_opt": float(C) / (6 * N_opt),
                "loss_opt": float(np.polyval(coeffs, x_opt)),
                "coeffs": [float(c) for c in coeffs],
                "N_range": [float(g["N"].min()), float(g["N"].max())],
                "n_points": len(g),
                "edge": edge,
            }
        )
    inner = [b for b in budgets if not b["edge"]]
    approach2 = _approach_block(
        [b["C"] for b in inner], [b["N_opt"] for b in inner], [b["D_opt"] for b in inner]
    ) | {"budgets": budgets}

    # Approach 3: the true law, with narrow intervals.
    alloc = _allocation(LAW)
    approach3 = dict(LAW)
    for k, v in LAW.items():
        approach3[f"{k}_ci"] = [v * 0.95, v * 1.05]
    approach3 |= alloc | {
        "a_ci": [alloc["a"] - 0.02, alloc["a"] + 0.02],
        "b_ci": [alloc["b"] - 0.02, alloc["b"] + 0.02],
        "objective": 1e-5,
        "n_starts": 64,
        "n_best": 5,
        "huber_delta": 1e-3,
        "law": "chinchilla",
    }
    # A pointwise band (as scaling-fit writes it), widening away from the sampled compute;
    # approaches 1 and 2 keep only exponent intervals, as older fit.json files do.
    band_c = np.geomspace(BUDGETS[0] / 2, 2e22, 30)
    widen = 1.1 * np.exp(0.05 * np.abs(np.log10(band_c) - 18.5))
    approach3["band"] = {"C": band_c.tolist()}
    for name, exp, coef in (("N_opt", "a", "N_coef"), ("D_opt", "b", "D_coef")):
        line = alloc[coef] * band_c ** alloc[exp]
        approach3["band"][f"{name}_ci"] = [(line / widen).tolist(), (line * widen).tolist()]

    held = runs[runs["heldout"]]
    pred = chinchilla(held["N"], held["D"], **LAW)
    holdout_runs = [
        {"run": r, "observed": float(o), "predicted": float(p), "rel_error": float(p / o - 1)}
        for r, o, p in zip(held["run"], held["loss"], pred)
    ]
    C_t = 1e22
    return {
        "source": "tests/fixtures_results.py",
        "convention": "chinchilla",
        "n_runs": len(runs),
        "n_fitted": len(ok),
        "excluded": [{"run": DIVERGED, "status": "diverged", "reason": "status diverged"}],
        "heldout_runs": held["run"].tolist(),
        "bootstrap": {"n": 100, "seed": 0, "ci": 0.9},
        "approach1": approach1,
        "approach2": approach2,
        "approach3": approach3,
        "targets": [
            {
                "C": C_t,
                "N_opt": alloc["N_coef"] * C_t ** alloc["a"],
                "N_opt_ci": [
                    0.8 * alloc["N_coef"] * C_t ** alloc["a"],
                    1.2 * alloc["N_coef"] * C_t ** alloc["a"],
                ],
                "D_opt": alloc["D_coef"] * C_t ** alloc["b"],
                "D_opt_ci": [
                    0.8 * alloc["D_coef"] * C_t ** alloc["b"],
                    1.2 * alloc["D_coef"] * C_t ** alloc["b"],
                ],
                "tokens_per_param": alloc["D_coef"]
                / alloc["N_coef"]
                * C_t ** (alloc["b"] - alloc["a"]),
                "loss": 2.5,
                "loss_ci": [2.45, 2.55],
            }
        ],
        "holdout": {
            "rule": "largest run",
            "runs": holdout_runs,
            "mean_abs_rel_error": float(np.mean([abs(r["rel_error"]) for r in holdout_runs])),
        },
    }


def write_results(
    out: Path, seed: int = 0, errors: dict[str, str] | None = None, curves: bool = True
) -> Path:
    """Write runs.csv, curves.csv and fit.json into out; errors replaces approaches by errors."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, curve_df = build_tables(seed)
    fit = build_fit(runs, curve_df)
    for approach, why in (errors or {}).items():
        fit[approach] = {"error": why}
    runs.to_csv(out / "runs.csv", index=False)
    if curves:
        curve_df.to_csv(out / "curves.csv", index=False)
    (out / "fit.json").write_text(json.dumps(fit, indent=2))
    return out
