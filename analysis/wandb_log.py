"""Log an analysis (fit and runs tables, figures, fitted exponents, fit.json) as a W&B run.

The results dir stays the source of truth; this is its W&B view, logged as a run of job type
`analysis` in the sweep's group. Without credentials it writes an offline run under
`<out_dir>/wandb/`, which `wandb sync` uploads later.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import wandb

from analysis.plots import FIGURES, load_results, plot_all
from analysis.report import law_param_names
from analysis.wandb_mode import resolve_mode

# fit.json keys copied into the run summary as "<approach>/<key>".
SUMMARY_KEYS = {
    "approach1": ("a", "b"),
    "approach2": ("a", "b"),
    "approach3": ("a", "b", "E", "A", "B", "alpha", "beta"),
}


def _blocks(fit: dict) -> list[tuple[str, tuple[str, ...]]]:
    """(fit.json block, its parameter names) for every block that was computed."""
    blocks = [(k, keys) for k, keys in SUMMARY_KEYS.items()]
    if fit.get("law_fit"):
        blocks.append(("law_fit", tuple(law_param_names(fit["law_fit"]))))
    return blocks


def fit_table(fit: dict) -> pd.DataFrame:
    """One row per fitted quantity: block, parameter, estimate and its bootstrap interval."""
    ci = (fit.get("bootstrap") or {}).get("ci")
    rows = []
    for block, keys in _blocks(fit):
        entry = fit.get(block) or {}
        for k in keys:
            if "error" in entry or entry.get(k) is None:
                continue
            lo, hi = entry.get(f"{k}_ci") or (None, None)
            rows.append({"block": block, "parameter": k, "estimate": float(entry[k]),
                         "lo": lo, "hi": hi, "ci": ci})  # fmt: skip
    return pd.DataFrame(rows, columns=["block", "parameter", "estimate", "lo", "hi", "ci"])


def summary(fit: dict) -> dict:
    """The fitted exponents and coefficients of fit.json as flat summary keys, with their
    interval ends as ``<block>/<key>_lo`` and ``_hi`` so a dashboard can chart them."""
    out: dict = {}
    for approach, keys in _blocks(fit):
        block = fit.get(approach) or {"error": "not in fit.json"}
        if "error" in block:
            out[f"{approach}/error"] = str(block["error"])
            continue
        for k in keys:
            if block.get(k) is not None:
                out[f"{approach}/{k}"] = float(block[k])
            ends = block.get(f"{k}_ci") or ()
            for end, v in zip(("lo", "hi"), ends, strict=False):
                if v is not None:
                    out[f"{approach}/{k}_{end}"] = float(v)
    holdout = fit.get("holdout") or {}
    if holdout.get("mean_abs_rel_error") is not None:
        out["holdout/mean_abs_rel_error"] = float(holdout["mean_abs_rel_error"])
    for k in ("n_runs", "n_fitted", "convention"):
        if k in fit:
            out[k] = fit[k]
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
        config={k: res.fit.get(k) for k in ("source", "convention", "bootstrap")},
        settings=wandb.Settings(init_timeout=30),
    )
    try:
        tables = {
            "fit": wandb.Table(dataframe=fit_table(res.fit)),
            "runs": wandb.Table(dataframe=res.runs.drop(columns=["excluded"])),
        }
        run.log(tables | {f"figures/{p.stem}": wandb.Image(str(p)) for p in pngs})
        run.summary.update(summary(res.fit))
        artifact = wandb.Artifact(re.sub(r"[^\w.-]", "-", f"fit-{group or 'analysis'}"), type="fit")
        for name in ("fit.json", "runs.csv", "curves.csv"):
            if (out_dir / name).is_file():
                artifact.add_file(str(out_dir / name))
        run.log_artifact(artifact)
        run_dir = Path(run.dir).parent
    finally:
        wandb.finish()
    return run_dir
