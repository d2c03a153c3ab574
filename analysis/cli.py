"""``scaling-fit``: collect runs, fit the scaling laws, write fit.json and the report."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import CONVENTIONS, Collected, CollectError, collect
from analysis.expr import ExprError, mask_of, values_of
from analysis.fit import FitError, bootstrap, fit, summarize
from analysis.laws import get_law
from analysis.optimal import (
    approach1,
    approach2,
    approach3,
    band_grid,
    budgets_of,
    flops_factor,
)
from analysis.report import fmt, fmt_ci, law_param_names, write_outputs


def _mark(collected: Collected, mask: np.ndarray, reason: str) -> None:
    runs = collected.runs
    runs.loc[mask & (runs["exclusion_reason"] == ""), "exclusion_reason"] = reason


def drop_highest_losses(collected: Collected, k: int) -> None:
    """Exclude the usable runs whose loss is >= the k-th highest (Besiroglu et al.'s rule)."""
    if k <= 0:
        return
    usable = collected.runs["exclusion_reason"] == ""
    losses = np.sort(collected.runs.loc[usable, "loss"].to_numpy(float))
    if losses.size <= k:
        raise FitError(f"cannot drop the {k} highest losses of only {losses.size} usable runs")
    _mark(
        collected, usable & (collected.runs["loss"] >= losses[-k]), f"among the {k} highest losses"
    )


def apply_holdout(runs: pd.DataFrame, rule: str | None) -> str | None:
    """Mark held-out runs by ``rule``: 'largest-C:FRACTION', 'largest-N' or a condition."""
    if not rule:
        return "heldout flag in the run store" if runs["heldout"].any() else None
    usable = runs["exclusion_reason"] == ""
    if rule.startswith("largest-C"):
        frac = float(rule.split(":", 1)[1]) if ":" in rule else 0.2
        if not 0 < frac < 1:
            raise FitError(f"hold-out fraction must be in (0, 1), got {frac}")
        # Whole IsoFLOP budgets: splitting one would let the fit see half of the profile it is
        # asked to predict. Take budgets from the top until they hold >= frac of the runs.
        c = runs.loc[usable, "C"]
        n_out = max(1, math.ceil(frac * len(c)))
        labels = pd.Series(budgets_of(runs.loc[usable]), index=c.index)
        cut = labels[c.sort_values().index[-n_out]]
        held = runs.index.isin(labels.index[labels >= cut])
        rule = (
            f"largest C {round(100 * frac)}%: whole budgets, "
            f"C >= {c[labels >= cut].min():.3g}, {int(held.sum())} of {len(c)} runs"
        )
    elif rule == "largest-N":
        held = usable & (runs["N"] == runs.loc[usable, "N"].max())
        rule = "largest N"
    else:
        try:
            held = mask_of(rule, runs)
        except ExprError as err:
            raise FitError(
                f"hold-out rule {rule!r} is not 'largest-C:FRACTION', 'largest-N' or a valid "
                f"condition on the runs table: {err}"
            ) from None
    runs["heldout"] = runs["heldout"].to_numpy(bool) | np.asarray(held, bool)
    return rule


def run_weights(runs: pd.DataFrame, expr: str) -> np.ndarray:
    """Per-run weights of the parametric fit: an expression on the runs table (`analysis.expr`),
    e.g. ``"C ** 0.5"`` to favour the large runs the extrapolation depends on."""
    try:
        w = values_of(expr, runs)
    except ExprError as err:
        raise FitError(
            f"--weights {expr!r} is not an expression on the runs table: {err}"
        ) from None
    if w.shape != (len(runs),) or not np.isfinite(w).all() or (w < 0).any() or not w.any():
        raise FitError(
            f"--weights {expr!r} must give one finite, non-negative weight per run, not all "
            f"zero; got {w[:5].tolist()}{'...' if w.size > 5 else ''}"
        )
    return w


def _holdout_check(result, held: pd.DataFrame) -> dict:
    pred = result.predict(held)
    obs = held["loss"].to_numpy(float)
    rel = (pred - obs) / obs
    return {
        "runs": [
            {"run": r, "observed": float(o), "predicted": float(p), "rel_error": float(e)}
            for r, o, p, e in zip(held["run"], obs, pred, rel)
        ],
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
    }


def _starts(law, grid: int | None, seed: int) -> np.ndarray | None:
    if grid is None:
        return None
    full = law.start_grid()
    if grid >= len(full):
        return full
    return full[np.random.default_rng(seed).choice(len(full), grid, replace=False)]


def run_fit(
    source: str | Path,
    out_dir: str | Path,
    *,
    approaches: Sequence[int] = (1, 2, 3),
    convention: str = "chinchilla",
    law: str = "chinchilla",
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.9,
    holdout: str | None = None,
    targets: Sequence[float] | None = None,
    huber_delta: float = 1e-3,
    asymmetry: float = 1.0,
    weights: str | None = None,
    grid: int | None = None,
    drop_highest: int = 0,
    group: str | None = None,
    sweep: str | None = None,
    columns: str | dict | None = None,
    curves: str | Path | None = None,
    curve_columns: str | dict | None = None,
    budget_tol_dex: float = 0.05,
    wandb: bool = False,
    wandb_project: str | None = None,
    wandb_mode: str = "auto",
    quiet: bool = False,
) -> dict:
    """Collect ``source``, fit approaches 1-3 with bootstrap intervals, write ``out_dir``; fit.json."""
    if convention not in CONVENTIONS:
        raise FitError(f"unknown FLOP convention {convention!r}; use one of {CONVENTIONS}")
    if not 0 < ci < 1:
        raise FitError(f"ci must be in (0, 1), got {ci}")
    bad = [a for a in approaches if a not in (1, 2, 3)]
    if bad:
        raise FitError(f"unknown approaches {bad}; choose from 1, 2, 3")
    collected = collect(
        source,
        convention=convention,
        group=group,
        sweep=sweep,
        columns=columns,
        curves=curves,
        curve_columns=curve_columns,
    )
    drop_highest_losses(collected, drop_highest)
    runs = collected.runs
    rule = apply_holdout(runs, holdout)
    usable = runs["exclusion_reason"] == ""
    fitted = runs[usable & ~runs["heldout"]].reset_index(drop=True)
    held = runs[usable & runs["heldout"]].reset_index(drop=True)
    if fitted.empty:
        raise FitError(
            f"no runs left to fit in {source}: {len(runs)} collected, "
            f"{int((~usable).sum())} excluded, {len(held)} held out"
        )
    w = run_weights(fitted, weights) if weights else None
    k = flops_factor(fitted)
    targets = list(targets) if targets else [10 * float(runs.loc[usable, "C"].max())]
    band_c = band_grid(runs.loc[usable, "C"].to_numpy(float), targets)  # N_opt(C) band abscissae
    result: dict = {
        "source": str(source),
        "convention": collected.convention,
        "k": k,
        "n_runs": len(runs),
        "n_fitted": len(fitted),
        "excluded": collected.excluded,
        "heldout_runs": held["run"].tolist(),
        "bootstrap": {"n": n_bootstrap, "seed": seed, "ci": ci},
        "weights": weights,
    }
    the_law = get_law(law)
    fit_res = None
    if 3 in approaches or rule:
        fit_res = fit(
            the_law,
            fitted,
            starts=_starts(the_law, grid, seed),
            delta=huber_delta,
            asymmetry=asymmetry,
            weights=w,
        )
        boot = (
            bootstrap(
                fit_res,
                fitted,
                n=n_bootstrap,
                seed=seed,
                groups=fitted["run"].to_numpy(),
                weights=w,
            )
            if n_bootstrap
            else None
        )
        if law == "chinchilla":
            result["approach3"], result["targets"] = approach3(
                fit_res, k, boot, ci, targets, band_c=band_c
            )
        else:
            result["approach3"] = {"error": f"approach 3 needs the chinchilla law, not {law!r}"}
            result["law_fit"] = summarize(fit_res, boot, ci)
    if 1 in approaches:
        cur = collected.curves
        cur = cur[cur["run"].isin(set(fitted["run"]))] if not cur.empty else cur
        result["approach1"] = approach1(
            cur, fitted, k, n_bootstrap, seed, ci, targets=targets, band_c=band_c
        )
    if 2 in approaches:
        result["approach2"] = approach2(
            fitted, k, n_bootstrap, seed, ci, budget_tol_dex, targets=targets, band_c=band_c
        )
    if rule:
        result["holdout"] = {"rule": rule}
        if held.empty:
            result["holdout"]["error"] = "the hold-out rule selected no usable runs"
        else:
            result["holdout"].update(_holdout_check(fit_res, held))
    paths = write_outputs(out_dir, result, collected)
    if not quiet:
        print(summary_text(result, paths))
    if wandb:
        from analysis.wandb_log import log_analysis

        default = str(source)[len("wandb:") :] if str(source).startswith("wandb:") else "scaling"
        log_analysis(Path(out_dir), wandb_project or default, group, wandb_mode)
    return result


def summary_text(result: dict, paths: dict) -> str:
    """A few lines for the terminal: the law, the exponents with intervals, the files."""
    pct = round(100 * result["bootstrap"]["ci"])
    lines = [
        f"{result['n_fitted']} runs fitted ({len(result['excluded'])} excluded, "
        f"{len(result['heldout_runs'])} held out); FLOPs: {result['convention']}"
    ]
    a3 = result.get("approach3", {})
    if a3 and "error" not in a3:
        lines.append(
            f"L = {fmt(a3['E'])} + {fmt(a3['A'])}/N^{fmt(a3['alpha'])} + {fmt(a3['B'])}/D^{fmt(a3['beta'])}"
            f"   ({a3['n_best']}/{a3['n_starts']} starts reached the best optimum)"
        )
    lf = result.get("law_fit")
    if lf:
        params = ", ".join(
            f"{k} = {fmt(lf[k])} {fmt_ci(lf.get(k + '_ci'))}".rstrip() for k in law_param_names(lf)
        )
        lines.append(f"{lf['law']}: {lf['formula']}; {params}  ({pct}% intervals)")
    for i in (1, 2, 3):
        ap = result.get(f"approach{i}")
        if ap is None:
            continue
        if "error" in ap:
            lines.append(f"approach {i}: {ap['error']}")
        else:
            lines.append(
                f"approach {i}: a = {fmt(ap['a'])} {fmt_ci(ap.get('a_ci'))}, "
                f"b = {fmt(ap['b'])} {fmt_ci(ap.get('b_ci'))}  ({pct}% intervals)"
            )
    ho = result.get("holdout")
    if ho and "error" not in ho:
        lines.append(
            f"hold-out ({ho['rule']}): mean |relative error| {ho['mean_abs_rel_error']:.2%}"
        )
    lines.append(f"wrote {', '.join(str(p) for p in paths.values())}")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parser() -> argparse.ArgumentParser:
    """The command-line interface of scaling-fit."""
    p = argparse.ArgumentParser(
        prog="scaling-fit",
        description="Fit Chinchilla/Kaplan scaling laws to a run store, a W&B project or a CSV.",
    )
    p.add_argument(
        "source", help="run-store folder, wandb:entity/project, W&B offline folder or CSV"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--approaches", default="1,2,3", help="comma-separated subset of 1,2,3")
    p.add_argument(
        "--convention", default="chinchilla", choices=CONVENTIONS, help="FLOP convention for C"
    )
    p.add_argument(
        "--law", default="chinchilla", help="parametric law for the fit (default chinchilla)"
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples of runs (0: none)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ci", type=float, default=0.9, help="interval coverage (default 0.9)")
    p.add_argument("--holdout", help="'largest-C:0.2', 'largest-N' or a query such as \"N > 1e9\"")
    p.add_argument("--target", type=_floats, help="target compute(s), e.g. 1e21,1e23")
    p.add_argument("--huber-delta", type=float, default=1e-3)
    p.add_argument("--asymmetry", type=float, default=1.0, help=">1: lower-envelope fit")
    p.add_argument(
        "--weights",
        help="per-run weights of the parametric fit, an expression on the runs table "
        "(e.g. 'C ** 0.5'); default: equal",
    )
    p.add_argument("--grid", type=int, help="use a random subset of this many grid starts")
    p.add_argument("--drop-highest", type=int, default=0, help="exclude the k highest-loss runs")
    p.add_argument("--group", help="W&B group (the sweep's name)")
    p.add_argument("--sweep", help="W&B sweep id")
    p.add_argument(
        "--columns", help="CSV column mapping, e.g. 'N=Model Size,C=Training FLOP,loss=loss'"
    )
    p.add_argument(
        "--curves",
        help="learning curves of a CSV source: a CSV file or glob, one file per run named by "
        "the run (e.g. 'ladder/*.csv')",
    )
    p.add_argument(
        "--curve-columns",
        help="column mapping of the curve files, e.g. 'tokens=total_tokens,loss=val_loss'",
    )
    p.add_argument("--wandb", action="store_true", help="log the analysis to W&B")
    p.add_argument(
        "--wandb-project", help="W&B project for --wandb (default: the source's, else scaling)"
    )
    p.add_argument(
        "--wandb-mode",
        default="auto",
        choices=("auto", "online", "offline", "disabled"),
        help="auto: online when W&B credentials exist, else offline",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scaling-fit``."""
    args = parser().parse_args(argv)
    try:
        run_fit(
            args.source,
            args.out,
            approaches=tuple(int(a) for a in args.approaches.split(",") if a.strip()),
            convention=args.convention,
            law=args.law,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            ci=args.ci,
            holdout=args.holdout,
            targets=args.target,
            huber_delta=args.huber_delta,
            asymmetry=args.asymmetry,
            weights=args.weights,
            grid=args.grid,
            drop_highest=args.drop_highest,
            group=args.group,
            sweep=args.sweep,
            columns=args.columns,
            curves=args.curves,
            curve_columns=args.curve_columns,
            wandb=args.wandb,
            wandb_project=args.wandb_project,
            wandb_mode=args.wandb_mode,
        )
    except (FitError, CollectError) as err:
        print(f"scaling-fit: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
