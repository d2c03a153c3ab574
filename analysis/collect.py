"""Collect runs into two tidy tables (runs, curves) from a run store, W&B or a CSV.

Sources: a run-store folder (``runs/<experiment>/<run>/summary.json`` + ``metrics.csv``, see
docs/formats.md), a W&B project (``wandb:entity/project``, through ``wandb.Api()``), W&B offline
run folders (``offline-run-*`` with a ``.wandb`` file, read locally) or a plain CSV of other
people's results with a column mapping. Collecting is apart from fitting: nothing is dropped
here; ``exclusion_reason`` says which runs a fit must leave out and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.wandb_offline import read_offline_run

CONVENTIONS = ("kaplan", "6n", "chinchilla")
RUN_COLUMNS = [
    "run", "sweep", "size", "status", "N", "N_total", "N_with_head", "D", "S",
    "C_kaplan", "C_6n", "C_chinchilla", "C", "loss", "train_loss", "seed", "lr",
    "tokens_per_param", "heldout", "entropy_rate", "budget", "exclusion_reason",
]  # fmt: skip
CURVE_COLUMNS = [
    "run", "sweep", "size", "N", "step", "tokens",
    "C_kaplan", "C_6n", "C_chinchilla", "C", "loss", "train_loss", "lr",
]  # fmt: skip
CSV_TARGETS = ("run", "sweep", "size", "status", "N", "D", "S", "C", "loss", "seed", "lr")
CURVE_TARGETS = ("run", "step", "tokens", "C", "loss", "train_loss", "lr")


class CollectError(ValueError):
    """The source cannot be read into the tidy tables (empty, missing columns, unknown kind)."""


@dataclass
class Collected:
    """The tidy runs and curves tables of one source, with the FLOP convention of column C."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    source: str
    convention: str

    @property
    def usable(self) -> pd.DataFrame:
        """Runs a fit may use (no exclusion reason), held-out ones included."""
        return self.runs[self.runs["exclusion_reason"] == ""]

    @property
    def excluded(self) -> list[dict]:
        """Runs left out of every fit, with their status and the reason."""
        bad = self.runs[self.runs["exclusion_reason"] != ""]
        return [
            {"run": r.run, "status": r.status, "reason": r.exclusion_reason}
            for r in bad.itertuples()
        ]


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _first(mapping: Mapping, *keys, default=None):
    for key in keys:
        node = mapping
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return default


def _reason(row: dict) -> str:
    if isinstance(row.get("corrupt"), str):
        return row["corrupt"]
    if row["status"] != "completed":
        return f"status {row['status']}"
    for col in ("N", "D", "C", "loss"):
        v = _num(row.get(col))
        if not (np.isfinite(v) and v > 0):
            return (
                f"{'no final validation loss' if col == 'loss' else f'no {col}'} ({row.get(col)})"
            )
    return ""


def _finish(
    rows: list[dict], curves: list[pd.DataFrame], source: str, convention: str
) -> Collected:
    """Build the two tables with their fixed columns; C is the chosen convention's column."""
    if convention not in CONVENTIONS:
        raise CollectError(f"unknown FLOP convention {convention!r}; use one of {CONVENTIONS}")
    if not rows:
        raise CollectError(f"no runs found in {source}")
    runs = pd.DataFrame(rows)
    for col in RUN_COLUMNS:
        if col not in runs:
            runs[col] = np.nan
    if runs["C"].isna().all():
        runs["C"] = runs[f"C_{convention}"]
    runs["tokens_per_param"] = runs["D"] / runs["N"]
    runs["heldout"] = runs["heldout"].fillna(False).astype(bool)
    runs["exclusion_reason"] = [_reason(r) for r in runs.to_dict("records")]
    runs = runs[RUN_COLUMNS]
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    for col in CURVE_COLUMNS:
        if col not in curve:
            curve[col] = np.nan
    if not curve.empty and curve["C"].isna().all():
        curve["C"] = curve[f"C_{convention}"]
    return Collected(runs=runs, curves=curve[CURVE_COLUMNS], source=source, convention=convention)


def _summary_row(s: Mapping, convention: str, default_run: str, default_sweep: str | None) -> dict:
    """One runs-table row from a summary dict with the keys of summary.json (docs/formats.md)."""
    flops = _first(s, "C", default={}) or {}
    flops = flops if isinstance(flops, Mapping) else {}
    row = {
        "run": _first(s, "run", default=default_run),
        "sweep": _first(s, "sweep", "experiment", default=default_sweep),
        "size": _first(s, "size", "tags.size"),
        "status": _first(s, "status", default="running"),
        "N": _num(_first(s, "N", "params.non_embedding")),
        "N_total": _num(_first(s, "N_total", "params.total")),
        "N_with_head": _num(_first(s, "N_with_head", "params.with_head")),
        "D": _num(_first(s, "D", "tokens")),
        "S": _num(_first(s, "steps", "S")),  # optimiser steps, for Kaplan's L(N, S)
        "loss": _num(_first(s, "final_val_loss", "val/loss", "val_loss", "val.loss")),
        "train_loss": _num(_first(s, "final_train_loss", "train/loss", "train_loss")),
        "seed": _first(s, "seed"),
        "lr": _num(_first(s, "lr")),
        "heldout": bool(_first(s, "heldout", default=False)),
        "entropy_rate": _num(_first(s, "entropy_rate")),
        "budget": _first(s, "budget.label", "tags.budget"),
    }
    for conv in CONVENTIONS:
        row[f"C_{conv}"] = _num(flops.get(conv, _first(s, f"C_{conv}", f"flops_{conv}")))
    return row


def _curve(df: pd.DataFrame, row: dict, aliases: Mapping[str, tuple[str, ...]]) -> pd.DataFrame:
    """Eval rows of one run's logged metrics, renamed to the curve columns."""
    out = pd.DataFrame(index=df.index)
    for col, names in aliases.items():
        src = next((n for n in names if n in df.columns), None)
        out[col] = pd.to_numeric(df[src], errors="coerce") if src else np.nan
    out = out[out["loss"].notna()]
    for col in ("run", "sweep", "size", "N"):
        out[col] = row[col]
    return out


STORE_ALIASES = {
    "step": ("step",),
    "tokens": ("tokens",),
    "C_kaplan": ("flops_kaplan",),
    "C_6n": ("flops_6n",),
    "C_chinchilla": ("flops_chinchilla",),
    "loss": ("val_loss",),
    "train_loss": ("train_loss",),
    "lr": ("lr",),
}
WANDB_ALIASES = {
    "step": ("step", "trainer/global_step", "_step"),
    "tokens": ("tokens", "train/tokens"),
    "C_kaplan": ("flops_kaplan", "flops/kaplan", "flops.kaplan"),
    "C_6n": ("flops_6n", "flops/6n", "flops.6n"),
    "C_chinchilla": ("flops_chinchilla", "flops/chinchilla", "flops.chinchilla"),
    "loss": ("val/loss", "val_loss", "val.loss"),
    "train_loss": ("train/loss", "train_loss", "train.loss"),
    "lr": ("lr", "train/lr"),
}


def from_run_store(path: str | Path, convention: str = "chinchilla") -> Collected:
    """Every run folder (holding summary.json or metrics.csv) under ``path``.

    Hidden folders (``.hydra``, ``.failed`` where failed runs are moved aside) are skipped. A
    run whose summary.json or metrics.csv cannot be parsed is kept as status ``corrupt``, its
    reason naming the file, so it is excluded from fits and listed in the report.
    """
    path = Path(path)
    if not path.is_dir():
        raise CollectError(f"run store {path} is not a folder")
    found = {p.parent for pat in ("summary.json", "metrics.csv") for p in path.rglob(pat)}
    folders = sorted(
        f for f in found if not any(part.startswith(".") for part in f.relative_to(path).parts)
    )
    rows, curves = [], []
    for folder in folders:
        summary_file = folder / "summary.json"
        corrupt = None
        try:
            summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            summary, corrupt = {}, f"corrupt {summary_file}: {err}"
        row = _summary_row(summary, convention, folder.name, folder.parent.name)
        metrics = folder / "metrics.csv"
        if metrics.exists() and metrics.stat().st_size:
            try:
                curve = _curve(pd.read_csv(metrics), row, STORE_ALIASES)
            except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
                curve, corrupt = pd.DataFrame(), corrupt or f"corrupt {metrics}: {err}"
            curves.append(curve)
            if not np.isfinite(row["loss"]) and not curve.empty:
                row["loss"] = float(curve["loss"].iloc[-1])
        if corrupt:
            row.update(status="corrupt", corrupt=corrupt)
        elif not summary_file.exists():
            row["status"] = "unfinished"
        rows.append(row)
    if not rows:
        raise CollectError(f"no runs in run store {path} (no summary.json or metrics.csv below it)")
    return _finish(rows, curves, str(path), convention)


def _wandb_status(summary: Mapping, state: str | None) -> str:
    if "status" in summary:
        return str(summary["status"])
    return {
        "finished": "completed",
        "crashed": "failed",
        "failed": "failed",
        None: "unfinished",
    }.get(state, "unfinished" if state == "running" else str(state))


def _wandb_row(summary, config, history, name, group, state, convention):
    merged = {**config, **summary}
    row = _summary_row(merged, convention, name, group)
    row["status"] = _wandb_status(summary, state)
    curve = _curve(history, row, WANDB_ALIASES) if len(history) else pd.DataFrame()
    if not np.isfinite(row["loss"]) and not curve.empty:
        row["loss"] = float(curve["loss"].iloc[-1])
    return row, curve


def _merge_resumed(runs: list[dict]) -> list[dict]:
    """One record per W&B run id: a run resumed offline writes a second ``offline-run-*``
    folder with the same id. Histories are joined in time order (folder names start with the
    start time), a logged step seen twice keeps its later row (the resumed run re-logs the steps
    after its checkpoint); summary and config are the later ones layered over the earlier."""
    by_id: dict = {}
    for run in sorted(runs, key=lambda r: Path(r["path"]).parent.name):
        by_id.setdefault((run["project"], run["id"] or run["path"]), []).append(run)
    merged = []
    for parts in by_id.values():
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        history = pd.concat([p["history"] for p in parts], ignore_index=True)
        key = next((k for k in ("trainer/global_step", "step", "tokens") if k in history), None)
        if key is not None:
            stepped = history[key].notna()
            last = ~history[key].duplicated(keep="last") | ~stepped
            history = history[last].sort_values(key, kind="stable").reset_index(drop=True)
        out = {**parts[-1], "history": history, "summary": {}, "config": {}}
        for p in parts:
            out["summary"].update(p["summary"])
            out["config"].update(p["config"])
        merged.append(out)
    return merged


def from_offline(
    path: str | Path, convention: str = "chinchilla", group: str | None = None
) -> Collected:
    """Every W&B offline run (``.wandb`` file) under ``path``, optionally of one group."""
    path = Path(path)
    files = sorted(path.rglob("*.wandb")) if path.is_dir() else [path]
    rows, curves = [], []
    for run in _merge_resumed([read_offline_run(f) for f in files]):
        if group is not None and run["group"] != group:
            continue
        state = {0: "finished", None: None}.get(run["exit_code"], "failed")
        row, curve = _wandb_row(
            run["summary"],
            run["config"],
            run["history"],
            run["name"],
            run["group"],
            state,
            convention,
        )
        rows.append(row)
        curves.append(curve)
    if not rows:
        raise CollectError(
            f"no W&B offline runs under {path}" + (f" in group {group!r}" if group else "")
        )
    return _finish(rows, curves, str(path), convention)


def from_wandb(
    project: str,
    convention: str = "chinchilla",
    group: str | None = None,
    sweep: str | None = None,
    api=None,
) -> Collected:
    """Runs of a W&B project (``entity/project``) through ``wandb.Api()``, by group or sweep.

    Histories are read with ``scan_history`` (every logged row), not ``history`` (a sample),
    so the approach-1 envelope sees every evaluation.
    """
    filters = {}
    if group:
        filters["group"] = group
    if sweep:
        filters["sweep"] = sweep
    rows, curves = [], []
    import wandb  # only this source needs it; errors below are wandb's and its HTTP client's
    from requests.exceptions import RequestException

    try:
        api = wandb.Api() if api is None else api
        for run in api.runs(project, filters=filters or None):
            summary = dict(getattr(run.summary, "_json_dict", run.summary))
            config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
            history = pd.DataFrame(list(run.scan_history()))
            row, curve = _wandb_row(
                summary, config, history, run.name, run.group, run.state, convention
            )
            rows.append(row)
            curves.append(curve)
    except (wandb.errors.Error, RequestException, ValueError) as err:
        if isinstance(err, ValueError) and "Could not find" not in str(err):
            raise  # not the Api's "Could not find project/sweep": a real bug, keep its trace
        raise CollectError(
            f"cannot read W&B project {project!r}: {type(err).__name__}: {str(err).rstrip('.')}. "
            "Log in with `wandb login` (or set WANDB_API_KEY) and give the project as "
            "wandb:ENTITY/PROJECT; for offline runs pass the wandb/ folder instead"
        ) from err
    if not rows:
        raise CollectError(f"no runs in W&B project {project!r} with filters {filters or 'none'}")
    return _finish(rows, curves, f"wandb:{project}", convention)


def parse_columns(
    spec: str | Mapping[str, str] | None, targets: tuple[str, ...] = CSV_TARGETS
) -> dict[str, str]:
    """``"N=Model Size,C=Training FLOP,loss=loss"`` -> {"N": "Model Size", ...}."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        pairs = dict(spec)
    else:
        pairs = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise CollectError(
                    f"column mapping {part!r} is not TARGET=SOURCE (e.g. N=Model Size)"
                )
            key, value = part.split("=", 1)
            pairs[key.strip()] = value.strip()
    unknown = [k for k in pairs if k not in targets]
    if unknown:
        raise CollectError(f"unknown target columns {unknown}; targets are {list(targets)}")
    return pairs


def csv_curves(
    pattern: str | Path, columns: str | Mapping[str, str] | None, runs: pd.DataFrame
) -> list[pd.DataFrame]:
    """Learning curves from CSV files matching ``pattern`` (a file or a glob), one per run.

    ``columns`` maps tokens and loss (and step, C, train_loss, lr, run) onto each file's columns;
    without a ``run`` column a file's stem names its run (``190M-1xC.csv`` -> run ``190M-1xC``),
    which must be a run of the results table so the curve gets its N. Without a C column the
    curve's compute is 6 N tokens. Rows without a loss (other metrics logged at other steps)
    are dropped.
    """
    text = str(pattern)
    base = Path(text)
    files = sorted(base.parent.glob(base.name)) if any(c in text for c in "*?[") else [base]
    files = [f for f in files if f.is_file()]
    if not files:
        raise CollectError(f"no learning-curve CSV matches {text!r}")
    mapping = parse_columns(columns, CURVE_TARGETS)
    run_names = runs["run"].astype(str)
    n_of = dict(zip(run_names, runs["N"]))
    sweep_of = dict(zip(run_names, runs.get("sweep", pd.Series(np.nan, runs.index))))
    size_of = dict(zip(run_names, runs.get("size", pd.Series(np.nan, runs.index))))
    out = []
    for file in files:
        df = pd.read_csv(file)
        for target in ("tokens", "loss", "step"):
            if target not in mapping and target in df.columns:
                mapping[target] = target
        missing = [src for src in mapping.values() if src not in df.columns]
        need = [t for t in ("tokens", "loss") if t not in mapping]
        if missing or need:
            raise CollectError(
                f"curve CSV {file}: "
                + (f"columns {missing} not found; " if missing else "")
                + (
                    f"no column given for {need} (use --curve-columns tokens=...,loss=...); "
                    if need
                    else ""
                )
                + f"columns present: {list(df.columns)}"
            )
        curve = pd.DataFrame(
            {t: pd.to_numeric(df[s], errors="coerce") for t, s in mapping.items() if t != "run"}
        )
        names = (
            df[mapping["run"]].astype(str) if "run" in mapping else pd.Series(file.stem, df.index)
        )
        unknown = sorted(set(names) - set(n_of))
        if unknown:
            raise CollectError(
                f"curve CSV {file}: runs {unknown[:5]} are not in the results table "
                f"(runs: {sorted(n_of)[:8]}{' ...' if len(n_of) > 8 else ''})"
            )
        curve["run"] = names.to_numpy()
        curve["N"] = curve["run"].map(n_of).astype(float)
        curve["sweep"] = curve["run"].map(sweep_of)
        curve["size"] = curve["run"].map(size_of)
        curve["C_6n"] = 6 * curve["N"] * curve["tokens"]
        if "C" not in curve:
            curve["C"] = curve["C_6n"]
        out.append(curve[curve["loss"].notna() & (curve["tokens"] > 0)])
    return out


def from_csv(
    path: str | Path,
    columns: str | Mapping[str, str] | None = None,
    convention: str = "chinchilla",
    curves: str | Path | None = None,
    curve_columns: str | Mapping[str, str] | None = None,
) -> Collected:
    """A CSV of final results; ``columns`` maps N, D, C, loss (and run, size, ...) onto its columns.

    ``curves`` optionally adds learning curves from other CSV files (see ``csv_curves``).
    """
    df = pd.read_csv(path)
    mapping = parse_columns(columns)
    for target in CSV_TARGETS:
        if target not in mapping and target in df.columns:
            mapping[target] = target
    missing = [src for src in mapping.values() if src not in df.columns]
    need = [t for t in ("N", "loss") if t not in mapping]
    if "D" not in mapping and "C" not in mapping:
        need.append("D or C")
    if missing or need:
        raise CollectError(
            f"CSV {path}: "
            + (f"columns {missing} not found; " if missing else "")
            + (f"no column given for {need} (use --columns N=...,C=...,loss=...); " if need else "")
            + f"columns present: {list(df.columns)}"
        )
    out = pd.DataFrame({t: df[s] for t, s in mapping.items()})
    n = pd.to_numeric(out["N"], errors="coerce")
    if "D" not in out:
        out["D"] = pd.to_numeric(out["C"], errors="coerce") / (6 * n)
    out["C_6n"] = 6 * n * pd.to_numeric(out["D"], errors="coerce")
    if "C" not in out:
        out["C"] = out["C_6n"]
    out["run"] = out["run"].astype(str) if "run" in out else [f"row{i}" for i in range(len(out))]
    out["sweep"] = out.get("sweep", Path(path).stem)
    out["status"] = out.get("status", "completed")
    rows = out.to_dict("records")
    for row in rows:
        for col in ("N", "D", "S", "C", "C_6n", "loss"):
            if col in row:
                row[col] = _num(row[col])
    if not rows:
        raise CollectError(f"CSV {path} has no rows")
    curve_list = csv_curves(curves, curve_columns, pd.DataFrame(rows)) if curves else []
    collected = _finish(rows, curve_list, str(path), convention)
    collected.convention = f"as given (CSV column {mapping['C']!r})" if "C" in mapping else "6ND"
    return collected


def collect(
    source: str | Path,
    *,
    convention: str = "chinchilla",
    group: str | None = None,
    sweep: str | None = None,
    columns: str | Mapping[str, str] | None = None,
    curves: str | Path | None = None,
    curve_columns: str | Mapping[str, str] | None = None,
) -> Collected:
    """The tidy tables of ``source``: run store, ``wandb:entity/project``, offline W&B folder or CSV.

    ``curves`` (learning-curve CSVs, see ``csv_curves``) only goes with a CSV source: the other
    sources carry their own curves.
    """
    text = str(source)
    is_csv = Path(text).suffix == ".csv" and not text.startswith("wandb:")
    if curves is not None and not is_csv:
        raise CollectError(
            f"learning-curve CSVs ({curves}) go with a CSV source; {text!r} has its own curves"
        )
    if text.startswith("wandb:"):
        return from_wandb(text[len("wandb:") :], convention=convention, group=group, sweep=sweep)
    path = Path(source)
    if not path.exists():
        raise CollectError(
            f"source {text!r} does not exist (give a run store, a CSV or wandb:entity/project)"
        )
    if path.is_file() and path.suffix == ".csv":
        return from_csv(path, columns, convention, curves, curve_columns)
    if path.suffix == ".wandb" or (
        path.is_dir() and not any(path.rglob("summary.json")) and any(path.rglob("*.wandb"))
    ):
        return from_offline(path, convention=convention, group=group)
    if path.is_dir():
        return from_run_store(path, convention=convention)
    raise CollectError(f"cannot read {text!r}: not a folder, a .csv or a .wandb file")
