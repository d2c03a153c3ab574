"""Log an analysis (fit and runs tables, figures, fitted exponents, fit.json) as a W&B run.

The results dir stays the source of truth; this is its W&B view, logged as a run of job type
`analysis` in the sweep's group. Without credentials it writes an offline run under
`<out_dir>/wandb/`, which `wandb sync` uploads later.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import wandb

from analysis.plots import FIGURES, load_results, plot_all
from analysis.results import Estimate, FitReport
from contract import resolve_wandb_mode as resolve_mode


def _blocks(report: FitReport) -> list[tuple[str, dict[str, Estimate] | None, str | None]]:
    """(block name, its estimates or None, why not) for approaches 1-3 and the law fit."""
    blocks: list[tuple[str, dict[str, Estimate] | None, str | None]] = []
    for i, ap in ((1, report.approach1), (2, report.approach2)):
        if ap is None or ap.allocation is None:
            blocks.append((f"approach{i}", None, ap.error if ap else "not computed"))
        else:
            blocks.append((f"approach{i}", {"a": ap.allocation.a, "b": ap.allocation.b}, None))
    a3 = report.approach3
    if a3 is None or a3.fit is None:
        blocks.append(("approach3", None, a3.error if a3 else "not computed"))
    else:
        derived = {k: a3.fit.derived[k] for k in ("a", "b") if k in a3.fit.derived}
        blocks.append(("approach3", derived | a3.fit.params, None))
    if report.law_fit is not None:
        blocks.append(("law_fit", dict(report.law_fit.params), None))
    return blocks


def fit_table(report: FitReport) -> pd.DataFrame:
    """One row per fitted quantity: block, parameter, estimate and its bootstrap interval."""
    rows = []
    for block, estimates, _ in _blocks(report):
        for name, est in (estimates or {}).items():
            if not est.finite:
                continue
            lo, hi = est.ci or (None, None)
            rows.append({"block": block, "parameter": name, "estimate": est.value,
                         "lo": lo, "hi": hi, "ci": report.bootstrap.ci})  # fmt: skip
    return pd.DataFrame(rows, columns=["block", "parameter", "estimate", "lo", "hi", "ci"])


def verification_table(report: FitReport) -> pd.DataFrame:
    """The verification run (scaling-verify) as one row: what was predicted and observed."""
    v = report.verification
    if v is None:
        return pd.DataFrame()
    lo, hi = v.predicted.ci or (None, None)
    j_lo, j_hi = v.judged_interval or (None, None)
    row = {
        "method": v.method, "C": v.C, "model": v.model, "N": v.N, "D": v.D, "steps": v.steps,
        "lr": v.lr, "predicted": v.predicted.value, "lo": lo, "hi": hi, "observed": v.observed,
        "seeds": len(v.runs), "seed_std": v.seed_std, "judged_lo": j_lo, "judged_hi": j_hi,
        "rel_error": v.rel_error, "inside_interval": v.inside_interval,
        "runs": ", ".join(r.run for r in v.runs),
    }  # fmt: skip
    return pd.DataFrame([row])


def _verification_summary(report: FitReport) -> dict:
    v = report.verification
    if v is None:
        return {}
    out = {"verification/method": v.method, "verification/seeds": len(v.runs)}
    lo, hi = v.predicted.ci or (math.nan, math.nan)
    numbers = {"C": v.C, "N": v.N, "D": v.D, "predicted": v.predicted.value, "predicted_lo": lo,
               "predicted_hi": hi, "observed": v.observed, "seed_std": v.seed_std,
               "rel_error": v.rel_error}  # fmt: skip
    out |= {f"verification/{k}": x for k, x in numbers.items() if math.isfinite(x)}
    if v.inside_interval is not None:
        out["verification/inside_interval"] = v.inside_interval
    return out


def summary(report: FitReport) -> dict:
    """The fitted exponents and coefficients as flat summary keys, with their interval ends
    as ``<block>/<key>_lo`` and ``_hi`` so a dashboard can chart them."""
    out: dict = {}
    for block, estimates, error in _blocks(report):
        if estimates is None:
            out[f"{block}/error"] = str(error)
            continue
        for name, est in estimates.items():
            if est.finite:
                out[f"{block}/{name}"] = est.value
            for end, v in zip(("lo", "hi"), est.ci or (), strict=False):
                if math.isfinite(v):
                    out[f"{block}/{name}_{end}"] = v
    if report.holdout is not None and math.isfinite(report.holdout.mean_abs_rel_error):
        out["holdout/mean_abs_rel_error"] = report.holdout.mean_abs_rel_error
    out |= _verification_summary(report)
    if report.warnings:
        out["warnings"] = "; ".join(report.warnings)
    out |= {"n_runs": report.n_runs, "n_fitted": report.n_fitted, "convention": report.convention}
    return out


def _sweep_group(runs) -> str | None:
    """The sweep name when the runs table holds exactly one sweep."""
    if "sweep" not in runs:
        return None
    sweeps = runs["sweep"].dropna().unique()
    return str(sweeps[0]) if len(sweeps) == 1 else None


def log_analysis(out_dir: Path, project: str, group: str | None = None, mode: str = "auto") -> Path:
    """Log out_dir's fit and runs tables, figures, exponents and fit.json as a W&B analysis run."""
    out_dir = Path(out_dir)
    res = load_results(out_dir)
    report = FitReport.load(out_dir / "fit.json")
    figures = out_dir / "figures"
    if not all((figures / f"{name}.png").is_file() for name in FIGURES):
        plot_all(out_dir, fmt=("png",))
    pngs = sorted(figures.glob("*.png"))
    group = group or _sweep_group(res.runs)
    mode = resolve_mode(mode)
    run = wandb.init(
        project=project,
        group=group,
        job_type="analysis",
        name=f"analysis-{group}" if group else "analysis",
        dir=str(out_dir),
        mode=mode,
        config=report.config.to_dict() | {"source": report.source, "convention": report.convention},
        settings=wandb.Settings(init_timeout=30),
    )
    try:
        tables = {
            "fit": wandb.Table(dataframe=fit_table(report)),
            "runs": wandb.Table(dataframe=res.runs.drop(columns=["excluded"])),
        }
        if report.verification is not None:
            tables["verification"] = wandb.Table(dataframe=verification_table(report))
        run.log(tables | {f"figures/{p.stem}": wandb.Image(str(p)) for p in pngs})
        run.summary.update(summary(report))
        artifact = wandb.Artifact(re.sub(r"[^\w.-]", "-", f"fit-{group or 'analysis'}"), type="fit")
        for name in ("fit.json", "runs.csv", "curves.csv"):
            if (out_dir / name).is_file():
                artifact.add_file(str(out_dir / name))
        run.log_artifact(artifact)
        run_dir = Path(run.dir).parent
    finally:
        wandb.finish()
    return run_dir
