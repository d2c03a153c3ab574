"""Compute-optimal allocation N_opt(C), D_opt(C): Chinchilla's approaches 1, 2 and 3.

Approach 1: the lower envelope of all learning curves against compute; which model reaches the
lowest loss at each FLOP value gives N_opt(C). Approach 2: per-budget IsoFLOP parabolas of loss
against log N. Approach 3: the parametric fit L = E + A/N^alpha + B/D^beta, minimised under
C = k N D. Each gives N_opt = N_coef C^a and D_opt = D_coef C^b; intervals come from
resampling runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from analysis.fit import FitError, FitResult, interval, summarize

POWER_LAW = ("a", "b", "N_coef", "D_coef")  # N_opt = N_coef C^a, D_opt = D_coef C^b


def power_law_fit(c: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (exponent, coefficient) of y = coef * c^exponent in log space."""
    lc, ly = np.log10(np.asarray(c, float)), np.log10(np.asarray(y, float))
    if lc.size < 2 or np.ptp(lc) == 0:
        return float("nan"), float("nan")
    slope, icpt = np.polyfit(lc, ly, 1)
    with np.errstate(over="ignore"):
        return float(slope), float(10.0**icpt)


def flops_factor(runs: pd.DataFrame) -> float:
    """k in C = k N D for the chosen FLOP convention (median over runs; 6 for 6ND)."""
    k = np.asarray(runs["C"] / (runs["N"] * runs["D"]), float)
    k = k[np.isfinite(k) & (k > 0)]
    return float(np.median(k)) if k.size else 6.0


def chinchilla_optimum(theta: np.ndarray, k: float) -> dict[str, np.ndarray]:
    """a, b, N_coef, D_coef of N_opt = N_coef C^a from Chinchilla parameters (a, b, e, alpha, beta)."""
    theta = np.asarray(theta, float)
    log_a, log_b, alpha, beta = theta[..., 0], theta[..., 1], theta[..., 3], theta[..., 4]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = alpha + beta
        ea, eb = beta / s, alpha / s
        # N_opt = G (C/k)^a with G = (alpha A / (beta B))^(1/(alpha+beta))
        log_g = (np.log(alpha) + log_a - np.log(beta) - log_b) / s
        n_coef = np.exp(log_g) * k ** (-ea)
        d_coef = np.exp(-log_g) * k ** (-eb)
    return {"a": ea, "b": eb, "N_coef": n_coef, "D_coef": d_coef}


def _optimum_at(theta: np.ndarray, c: float, k: float) -> dict[str, np.ndarray]:
    """N_opt, D_opt and the predicted loss there at compute ``c``, for each theta (..., 5)."""
    theta = np.asarray(theta, float)
    opt = chinchilla_optimum(theta, k)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        n_opt = opt["N_coef"] * c ** opt["a"]
        d_opt = opt["D_coef"] * c ** opt["b"]
        loss = (
            np.exp(theta[..., 2])
            + np.exp(theta[..., 0] - theta[..., 3] * np.log(n_opt))
            + np.exp(theta[..., 1] - theta[..., 4] * np.log(d_opt))
        )
    return {"N_opt": n_opt, "D_opt": d_opt, "loss": loss}


def approach3(
    result: FitResult,
    k: float,
    boot: np.ndarray | None = None,
    ci: float = 0.9,
    targets: Sequence[float] = (),
    band_c: Sequence[float] = (),
) -> tuple[dict, list[dict]]:
    """Approach 3 entry of fit.json and the target-compute predictions, with intervals."""
    if result.law.name != "chinchilla":
        raise FitError(f"approach 3 needs the 'chinchilla' law, not {result.law.name!r}")
    out = summarize(result, boot, ci)
    opt = chinchilla_optimum(result.theta, k)
    out.update({key: float(v) for key, v in opt.items()})
    if boot is not None:
        bopt = chinchilla_optimum(boot, k)
        for name in POWER_LAW:
            out[f"{name}_ci"] = interval(bopt[name], ci)
        stacked = np.stack([bopt[name] for name in POWER_LAW], axis=1)
        out["n_degenerate"] = int((degenerate(stacked) | ~np.isfinite(boot).all(axis=1)).sum())
        if (band := power_law_band(stacked, np.asarray(band_c), ci)) is not None:
            out["band"] = band
    out["k"] = k
    rows = []
    for c in targets:
        point = _optimum_at(result.theta, float(c), k)
        row = {"C": float(c)}
        row.update({key: float(v) for key, v in point.items()})
        row["tokens_per_param"] = row["D_opt"] / row["N_opt"]
        if boot is not None:
            bpoint = _optimum_at(boot, float(c), k)
            for key, vals in bpoint.items():
                row[f"{key}_ci"] = interval(vals, ci)
            row["tokens_per_param_ci"] = interval(bpoint["D_opt"] / bpoint["N_opt"], ci)
        rows.append(row)
    return out, rows


def _envelope_matrix(
    curves: pd.DataFrame, n_grid: int
) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Loss of every run interpolated on a log-C grid (NaN outside its range), and its tokens."""
    curves = curves.dropna(subset=["C", "loss"])
    curves = curves[(curves["C"] > 0) & (curves["loss"] > 0)]
    runs = list(dict.fromkeys(curves["run"]))
    grid = np.logspace(np.log10(curves["C"].min()), np.log10(curves["C"].max()), n_grid)
    lg = np.log10(grid)
    loss = np.full((len(runs), n_grid), np.nan)
    tokens = np.full((len(runs), n_grid), np.nan)
    for i, (_, g) in enumerate(curves.groupby("run", sort=False)):
        g = g.sort_values("C")
        lc = np.log10(g["C"].to_numpy(float))
        inside = (lg >= lc[0]) & (lg <= lc[-1])
        loss[i, inside] = np.interp(lg[inside], lc, g["loss"].to_numpy(float))
        if "tokens" in g and (g["tokens"] > 0).all():
            tokens[i, inside] = 10 ** np.interp(
                lg[inside], lc, np.log10(g["tokens"].to_numpy(float))
            )
    return grid, loss, runs, tokens


def _envelope(grid: np.ndarray, loss: np.ndarray, run_ids: list) -> dict:
    """The lower envelope approach 1 fitted: the lowest loss and its run at each grid C where
    two or more runs overlap (where approach 1 picks its minima)."""
    has = np.isfinite(loss).sum(axis=0) >= 2
    win = np.argmin(np.where(np.isfinite(loss), loss, np.inf)[:, has], axis=0)
    return {
        "C": grid[has].tolist(),
        "loss": loss[win, np.flatnonzero(has)].tolist(),
        "run": [run_ids[int(i)] for i in win],
    }


def _approach1_once(grid, loss, tokens, n, k, subset) -> tuple[float, float, float, float, list]:
    sub_loss = loss[subset]
    covered = np.isfinite(sub_loss).sum(axis=0) >= 2
    if covered.sum() < 2:
        return (float("nan"),) * 4 + ([],)
    win = np.nanargmin(np.where(np.isfinite(sub_loss), sub_loss, np.inf)[:, covered], axis=0)
    rows = subset[win]
    sizes = np.unique(n[subset])
    interior = (n[rows] > sizes[0]) & (n[rows] < sizes[-1])
    # winners at the smallest or largest size only bound the optimum; keep them only if the
    # interior is too thin to fit a line
    keep = interior if np.unique(n[rows][interior]).size >= 2 else np.ones_like(interior)
    c = grid[covered][keep]
    n_opt = n[rows][keep]
    tok = tokens[rows, np.flatnonzero(covered)][keep]
    d_opt = np.where(np.isfinite(tok), tok, c / (k * n_opt))
    a, n_coef = power_law_fit(c, n_opt)
    b, d_coef = power_law_fit(c, d_opt)
    points = list(zip(c, n_opt, d_opt, sub_loss[win, np.flatnonzero(covered)][keep], rows[keep]))
    return a, b, n_coef, d_coef, points


def power_law_targets(
    fit: tuple[float, float, float, float],
    boots: np.ndarray | None,
    targets: Sequence[float],
    ci: float,
) -> list[dict]:
    """N_opt, D_opt and D/N at each target compute from fitted power laws (a, b, N_coef, D_coef),
    with intervals from the bootstrap samples (rows of a, b, N_coef, D_coef) evaluated there."""
    a, b, n_coef, d_coef = fit
    rows = []
    for c in targets:
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            n_opt, d_opt = n_coef * np.power(float(c), a), d_coef * np.power(float(c), b)
            ratio = np.float64(d_opt) / n_opt
        row = {"C": float(c), "N_opt": float(n_opt), "D_opt": float(d_opt)}
        row["tokens_per_param"] = float(ratio)
        if boots is not None and len(boots):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # degenerate: NaN
                n_s = boots[:, 2] * c ** boots[:, 0]
                d_s = boots[:, 3] * c ** boots[:, 1]
                ratio = d_s / n_s
            row["N_opt_ci"] = interval(n_s, ci)
            row["D_opt_ci"] = interval(d_s, ci)
            row["tokens_per_param_ci"] = interval(ratio, ci)
        rows.append(row)
    return rows


def band_grid(c: np.ndarray, targets: Sequence[float] = (), n: int = 60) -> np.ndarray:
    """Compute values for interval bands: from half the smallest to twice the largest of the
    runs' C and the targets, log-spaced, with the targets themselves included."""
    c = np.asarray([*np.asarray(c, float), *targets], float)
    c = c[np.isfinite(c) & (c > 0)]
    if c.size == 0:
        return np.empty(0)
    hi = c.max() * 2 if c.max() < np.finfo(float).max / 2 else c.max()  # no overflow to inf
    return np.unique(np.concatenate([np.geomspace(c.min() / 2, hi, n), list(targets)]))


def power_law_band(boots: np.ndarray | None, c_grid: np.ndarray, ci: float) -> dict | None:
    """Pointwise bootstrap intervals of N_opt(C) and D_opt(C) on ``c_grid``.

    boots: (n, 4) rows of (a, b, N_coef, D_coef). Each resample's power law is evaluated at
    every C and the percentile interval taken per C, so the band widens away from the data as
    the exponent and the coefficient trade off, instead of pivoting about one arbitrary C.
    """
    if boots is None or not len(boots) or not len(c_grid):
        return None
    c = np.asarray(c_grid, float)[None, :]  # (1, G)
    out: dict = {"C": c[0].tolist()}
    for name, exp, coef in (("N_opt", 0, 2), ("D_opt", 1, 3)):
        with np.errstate(over="ignore", invalid="ignore"):  # degenerate resamples: NaN
            vals = boots[:, coef, None] * c ** boots[:, exp, None]  # (n, G)
        vals = np.where(np.isfinite(vals) & (vals > 0), vals, np.nan)
        if np.isnan(vals).all():
            return None
        lo, hi = np.nanpercentile(vals, [50 * (1 - ci), 50 * (1 + ci)], axis=0)
        out[f"{name}_ci"] = [lo.tolist(), hi.tolist()]
    return out


def degenerate(samples: np.ndarray) -> np.ndarray:
    """Which resamples (rows of a, b, N_coef, D_coef) give no usable power law: any value
    non-finite or a coefficient that is not positive."""
    s = np.asarray(samples, float).reshape(len(samples), -1)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(s).all(axis=1) | (s[:, 2] <= 0) | (s[:, 3] <= 0)


def _resampled(
    once: Callable[[np.random.Generator], tuple[float, float, float, float]],
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """(n_boot, 4) power laws of ``once`` over resamples; a resample whose arithmetic fails
    (an optimum that over- or underflows, a singular fit) gives a row of NaN, never an error."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_boot):
        try:
            rows.append(once(rng))
        except (ArithmeticError, np.linalg.LinAlgError):
            rows.append((float("nan"),) * 4)
    return np.array(rows, float).reshape(n_boot, 4)


def _power_law_entry(
    fit: tuple[float, float, float, float],
    boots: np.ndarray | None,
    ci: float,
    targets: Sequence[float],
    band_c: Sequence[float],
) -> dict:
    """The fit.json entry shared by approaches 1 and 2: the power laws, their bootstrap
    intervals, the count of degenerate resamples, the target predictions and the band."""
    out: dict = dict(zip(POWER_LAW, fit))
    if boots is not None:
        for j, name in enumerate(POWER_LAW):
            out[f"{name}_ci"] = interval(boots[:, j], ci)
        out["n_degenerate"] = int(degenerate(boots).sum())
    if targets:
        out["targets"] = power_law_targets(fit, boots, targets, ci)
    if (band := power_law_band(boots, np.asarray(band_c), ci)) is not None:
        out["band"] = band
    return out


def approach1(
    curves: pd.DataFrame,
    runs: pd.DataFrame,
    k: float,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.9,
    n_grid: int = 200,
    c_min: float | None = None,
    targets: Sequence[float] = (),
    band_c: Sequence[float] = (),
) -> dict:
    """Minimum loss over all curves at each FLOP value -> N_opt(C), D_opt(C) power laws.

    The envelope starts at ``c_min`` (default: the smallest final compute of any run). Below
    it every curve is still in its early transient (warmup, learning the unigram statistics),
    where the lowest curve says nothing about the compute-optimal size. The entry holds the
    envelope it fitted (``envelope``: C, loss and run at each grid point; null when only final
    points were given), its winners (``points``) and the runs it used (``runs``), so figures
    draw them as fitted.
    """
    from_curves = not (curves is None or curves.empty or curves.groupby("run").size().max() < 2)
    if not from_curves:
        curves = runs[["run", "N", "C", "loss"]].assign(tokens=runs["D"])
        # final points only: each run covers a small band around its own C
        curves = pd.concat([curves.assign(C=curves["C"] * f) for f in (0.9, 1.1)])
    elif c_min is None:
        c_min = float(runs["C"].min()) * 0.999
    if c_min is not None:
        curves = curves[curves["C"] >= c_min]
    grid, loss, run_ids, tokens = _envelope_matrix(curves, n_grid)
    n_of = dict(zip(curves["run"], curves["N"]))
    n = np.array([n_of[r] for r in run_ids], float)
    if np.unique(n).size < 2:
        return {"error": f"approach 1 needs at least 2 model sizes, got {np.unique(n).size}"}
    a, b, n_coef, d_coef, pts = _approach1_once(grid, loss, tokens, n, k, np.arange(len(run_ids)))
    if not np.isfinite(a):
        return {"error": "approach 1: too few FLOP values where two or more runs overlap"}

    def once(rng: np.random.Generator) -> tuple[float, float, float, float]:
        subset = np.unique(rng.integers(0, len(run_ids), len(run_ids)))
        return _approach1_once(grid, loss, tokens, n, k, subset)[:4]

    boots = _resampled(once, n_boot, seed) if n_boot else None
    out = _power_law_entry((a, b, n_coef, d_coef), boots, ci, targets, band_c)
    out["points"] = [
        {
            "C": float(c),
            "N_opt": float(nn),
            "D_opt": float(d),
            "loss": float(lo),
            "run": run_ids[int(r)],
        }
        for c, nn, d, lo, r in pts
    ]
    out["envelope"] = _envelope(grid, loss, run_ids) if from_curves else None
    out["runs"] = [str(r) for r in run_ids]
    return out


def budgets_of(runs: pd.DataFrame, tol_dex: float = 0.05) -> np.ndarray:
    """Budget index of each run: runs whose log10 C lie within ``tol_dex`` of a neighbour."""
    lc = np.log10(runs["C"].to_numpy(float))
    order = np.argsort(lc)
    labels = np.empty(lc.size, dtype=int)
    labels[order] = np.concatenate([[0], np.cumsum(np.diff(lc[order]) > tol_dex)])
    return labels


def _isoflop(x: np.ndarray, loss: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Parabola loss(x), its minimum x, and whether the minimum is at/over the sampled edge."""
    coeffs = np.polyfit(x, loss, 2, w=np.sqrt(w))
    c2, c1, _ = coeffs
    if not (c2 > 0 and np.isfinite(c1)):  # no minimum (or a failed fit of odd data)
        return coeffs, float("nan"), True
    x_opt = -c1 / (2 * c2)
    edge = bool(
        x_opt <= x.min() or x_opt >= x.max() or np.argmin(loss) in (np.argmin(x), np.argmax(x))
    )
    return coeffs, float(x_opt), edge


def _budget_optimum(coeffs: np.ndarray, x_opt: float, c: float, k: float) -> dict:
    """N_opt, D_opt and the loss at a parabola's vertex; NaN for a vertex so far out that
    10^x_opt over- or underflows (a nearly straight profile), as for one with no minimum."""
    with np.errstate(over="ignore", under="ignore"):
        n_opt = float(np.power(10.0, x_opt)) if np.isfinite(x_opt) else float("nan")
    if not (np.isfinite(n_opt) and n_opt > 0):
        return {"N_opt": float("nan"), "D_opt": float("nan"), "loss_opt": float("nan")}
    return {"N_opt": n_opt, "D_opt": c / (k * n_opt), "loss_opt": float(np.polyval(coeffs, x_opt))}


def _approach2_once(
    runs, labels, k, counts
) -> tuple[list[dict], tuple[float, float, float, float]]:
    budgets = []
    names = runs["run"].to_numpy()
    for lab in np.unique(labels):
        sel = (labels == lab) & (counts > 0)
        x = np.log10(runs["N"].to_numpy(float)[sel])
        if np.unique(x).size < 3:
            continue
        y = runs["loss"].to_numpy(float)[sel]
        coeffs, x_opt, edge = _isoflop(x, y, counts[sel])
        c = float(np.exp(np.mean(np.log(runs["C"].to_numpy(float)[labels == lab]))))
        budgets.append(
            {
                "C": c,
                **_budget_optimum(coeffs, x_opt, c, k),
                "coeffs": [float(v) for v in coeffs],
                "N_range": [float(10 ** x.min()), float(10 ** x.max())],
                "n_points": int(sel.sum()),
                "edge": edge,
                "runs": [str(r) for r in names[sel]],
            }
        )
    good = [b for b in budgets if not b["edge"]]
    use = good if len(good) >= 2 else [b for b in budgets if np.isfinite(b["N_opt"])]
    if len(use) < 2:
        return budgets, (float("nan"),) * 4
    c = np.array([b["C"] for b in use])
    a, n_coef = power_law_fit(c, [b["N_opt"] for b in use])
    b_, d_coef = power_law_fit(c, [b["D_opt"] for b in use])
    return budgets, (a, b_, n_coef, d_coef)


def _join_heldout(budgets: list[dict], runs: pd.DataFrame, heldout: pd.DataFrame, tol_dex: float):
    """Give each budget the held-out runs whose C is within ``tol_dex`` of one of its runs
    (``heldout_runs``), so a figure draws them on that budget's profile."""
    budget_of = {r: i for i, b in enumerate(budgets) for r in b["runs"]}
    for b in budgets:
        b["heldout_runs"] = []
    if heldout is None or heldout.empty or not budget_of:
        return
    logc = np.log10(runs["C"].to_numpy(float))
    for name, c in zip(heldout["run"], np.log10(heldout["C"].to_numpy(float))):
        j = int(np.abs(logc - c).argmin())
        if abs(logc[j] - c) <= tol_dex and runs["run"].iloc[j] in budget_of:
            budgets[budget_of[runs["run"].iloc[j]]]["heldout_runs"].append(str(name))


def approach2(
    runs: pd.DataFrame,
    k: float,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.9,
    tol_dex: float = 0.05,
    targets: Sequence[float] = (),
    band_c: Sequence[float] = (),
    heldout: pd.DataFrame | None = None,
) -> dict:
    """Per-budget IsoFLOP parabolas of loss against log10 N -> N_opt(C), D_opt(C) power laws.

    Each budget lists the runs it was fitted from (``runs``) and the ``heldout`` runs that
    belong to it (``heldout_runs``: within ``tol_dex`` of one of its runs in log10 C).
    """
    labels = budgets_of(runs, tol_dex)
    budgets, fit = _approach2_once(runs, labels, k, np.ones(len(runs)))
    _join_heldout(budgets, runs, heldout, tol_dex)
    if not np.isfinite(fit[0]):
        n_iso = sum(1 for bb in budgets if np.isfinite(bb["N_opt"]))
        return {
            "error": f"approach 2 needs >= 2 IsoFLOP budgets with >= 3 model sizes and an interior "
            f"minimum; found {n_iso} usable of {len(budgets)}",
            "budgets": budgets,
        }

    def once(rng: np.random.Generator) -> tuple[float, float, float, float]:
        counts = np.bincount(rng.integers(0, len(runs), len(runs)), minlength=len(runs))
        return _approach2_once(runs, labels, k, counts.astype(float))[1]

    boots = _resampled(once, n_boot, seed) if n_boot else None
    out = _power_law_entry(fit, boots, ci, targets, band_c)
    out["budgets"] = budgets
    out["n_edge"] = int(sum(bb["edge"] for bb in budgets))
    return out
