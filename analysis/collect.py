"""Collect runs into two tidy tables (runs, curves) from a run store, W&B or a CSV.

Sources: a run-store folder (``runs/<experiment>/<run>/summary.json`` + ``metrics.csv``, see
docs/formats.md), a W&B project (``wandb:entity/project``, through ``wandb.Api()``), W&B offline
run folders (``offline-run-*`` with a ``.wandb`` file, read locally) or a plain CSV of other
people's results with a column mapping. Collecting is apart from fitting: nothing is dropped
here; ``exclusion_reason`` says which runs a fit must leave out and why.

Run records (summary.json, and the same record in a W&B run's summary) are read only through
`contract.RunSummary`; a record that does not parse lists its run as corrupt with the
path (or W&B run) and the parse error, and its curves are left out with it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.wandb_fetch import FetchError, FetchSettings, fetch_runs
from analysis.wandb_offline import OfflineRunError, read_offline_run
from contract import (
    CONVENTIONS,
    WANDB_KEYS,
    RunSummary,
    Status,
    SummaryError,
    read_summary,
)

RUN_COLUMNS = [
    "run", "sweep", "size", "status", "N", "N_total", "N_with_head", "D", "S",
    "C_kaplan", "C_6n", "C_chinchilla", "C", "loss", "train_loss", "seed", "lr", "B",
    "tokens_per_param", "heldout", "entropy_rate", "budget", "corpus", "vocab_size",
    "exclusion_reason", "loss_bpb", "U", "epochs",
]  # fmt: skip
CURVE_COLUMNS = [
    "run", "sweep", "size", "N", "step", "tokens",
    "C_kaplan", "C_6n", "C_chinchilla", "C", "loss", "train_loss", "lr", "loss_bpb",
]  # fmt: skip
CSV_TARGETS = (
    "run", "sweep", "size", "status", "N", "D", "S", "C", "loss", "seed", "lr", "corpus",
    "vocab_size",
)  # fmt: skip
CURVE_TARGETS = ("run", "step", "tokens", "C", "loss", "train_loss", "lr")
# metrics.csv column -> curve column (the metric names of contract.METRIC_COLUMNS)
METRIC_TO_CURVE = {
    "step": "step",
    "tokens": "tokens",
    **{f"flops_{c}": f"C_{c}" for c in CONVENTIONS},
    "val_loss": "loss",
    "val_bpb": "loss_bpb",
    "train_loss": "train_loss",
    "lr": "lr",
}
WANDB_STATES = {"finished": Status.COMPLETED, "crashed": Status.FAILED, "failed": Status.FAILED}


class CollectError(ValueError):
    """The source cannot be read into the tidy tables (empty, missing columns, unknown kind)."""


@dataclass
class Collected:
    """The tidy runs and curves tables of one source, with the FLOP convention of column C."""

    runs: pd.DataFrame
    """One row per run (RUN_COLUMNS); ``exclusion_reason`` is empty for usable runs."""
    curves: pd.DataFrame
    """Evaluation rows of the runs' learning curves (CURVE_COLUMNS), only runs with a known N."""
    source: str
    """The source as given (a path or wandb:entity/project)."""
    convention: str
    """The FLOP convention of column C (or how a CSV gave it)."""
    warnings: list[str] = field(default_factory=list)
    """What a reader must know about the input: duplicate runs, skipped metrics rows."""

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


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _reason(row: dict) -> str:
    if isinstance(row.get("corrupt"), str):
        return row["corrupt"]
    if row["status"] != Status.COMPLETED.value:
        return f"status {row['status']}"
    for col in ("N", "D", "C", "loss"):
        v = _num(row.get(col))
        if not (np.isfinite(v) and v > 0):
            return (
                f"{'no final validation loss' if col == 'loss' else f'no {col}'} ({row.get(col)})"
            )
    return ""


def _duplicates(runs: pd.DataFrame) -> list[str]:
    """Warnings for runs named twice and for usable runs at the same (N, D)."""
    out = []
    names = runs.loc[runs["run"].duplicated(keep=False), "run"].astype(str)
    if len(names):
        out.append(f"duplicate runs: {sorted(set(names))[:8]} appear more than once")
    usable = runs[runs["exclusion_reason"] == ""]
    twice = usable[usable.duplicated(["N", "D"], keep=False)]
    if len(twice):
        pairs = sorted({(f"{n:.4g}", f"{d:.4g}") for n, d in zip(twice["N"], twice["D"])})
        out.append(
            f"{len(twice)} usable runs share an (N, D) with another run: "
            f"{pairs[:5]}{' ...' if len(pairs) > 5 else ''} (each counts in the fit)"
        )
    return out


def _finish(
    rows: list[dict],
    curves: list[pd.DataFrame],
    source: str,
    convention: str,
    warnings: list[str] | None = None,
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
    runs["heldout"] = runs["heldout"].map(lambda v: v is True or v == 1).astype(bool)
    runs["exclusion_reason"] = [_reason(r) for r in runs.to_dict("records")]
    runs = runs[RUN_COLUMNS]
    curves = [c for c in curves if not c.empty]
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    for col in CURVE_COLUMNS:
        if col not in curve:
            curve[col] = np.nan
    if not curve.empty and curve["C"].isna().all():
        curve["C"] = curve[f"C_{convention}"]
    return Collected(
        runs=runs,
        curves=curve[CURVE_COLUMNS],
        source=source,
        convention=convention,
        warnings=[*(warnings or []), *_duplicates(runs)],
    )


def _summary_row(s: RunSummary) -> dict:
    """One runs-table row from a run record (summary.json or a W&B run's summary)."""
    row = {
        "run": s.run,
        "sweep": s.sweep,
        "size": s.size,
        "status": s.status.value,
        "N": float(s.N),
        "N_total": float(s.N_total),
        "N_with_head": float(s.N_with_head),
        "D": float(s.D),
        "S": float(s.steps),  # optimiser steps, for Kaplan's L(N, S)
        "loss": _num(s.final_val_loss),
        "loss_bpb": _num(s.final_val_bpb),  # bits per byte (scaling-fit target=bpb)
        "U": _num(s.unique_tokens),  # unique tokens (the data_constrained law's U)
        "epochs": _num(s.epochs),
        "train_loss": _num(s.final_train_loss),
        "seed": s.seed,
        "lr": float(s.lr),
        "B": float(s.batch_size * s.seq_len),  # tokens per optimiser step (scaling-hparams)
        "heldout": bool(s.heldout),
        "entropy_rate": _num(s.entropy_rate),
        "budget": s.budget.label,
        "corpus": s.corpus,  # with vocab_size: which losses are comparable (scaling-compare)
        "vocab_size": s.vocab_size,
    }
    for conv in CONVENTIONS:
        row[f"C_{conv}"] = _num(s.C.get(conv))
    return row


def _unread_row(run: str, sweep: str | None, status: Status, why: str | None = None) -> dict:
    """The row of a run without a readable record: listed, never fitted."""
    row: dict[str, Any] = {"run": run, "sweep": sweep, "status": status.value, "heldout": False}
    if why is not None:
        row["corrupt"] = why
    return row


def _curve(values: pd.DataFrame, row: dict) -> pd.DataFrame:
    """Evaluation rows (a validation loss) of one run's curve, with the run's name and N."""
    out = values[values["loss"].notna()].copy()
    for col in ("run", "sweep", "size", "N"):
        out[col] = row[col]
    return out


def _text(path: Path, what: str) -> str:
    """The text of a CSV file; CollectError naming it if it is not UTF-8 text."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise CollectError(f"{what} {path} is not UTF-8 text (binary?): {err}") from None
    except OSError as err:
        raise CollectError(f"{what} {path} cannot be read: {err.strerror or err}") from None
    if "\x00" in text:
        raise CollectError(f"{what} {path} holds binary data (NUL bytes), not CSV text")
    return text


def read_table(path: str | Path, what: str = "CSV", dtype: Any = None) -> pd.DataFrame:
    """A CSV file as a DataFrame; CollectError naming the file if it is empty, binary or ragged
    (a row with more or fewer fields than the header)."""
    path = Path(path)
    text = _text(path, what)
    if not text.strip():
        raise CollectError(f"{what} {path} is empty (0 bytes or only blank lines)")
    try:
        rows = csv.reader(io.StringIO(text))
        width = len(next(rows))
        for line, fields in enumerate(rows, start=2):
            if fields and len(fields) != width:
                raise CollectError(
                    f"{what} {path}: line {line} has {len(fields)} fields, the header {width}"
                )
        return pd.read_csv(io.StringIO(text), dtype=dtype)
    except (csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CollectError(f"{what} {path} cannot be parsed as CSV: {err}") from None


def _whole(cell: Any) -> bool:
    """Whether a metrics.csv step cell is a whole number (as the trainer's resume reads it)."""
    try:
        int(cell)
    except (TypeError, ValueError):
        return False
    return True


def read_metrics(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """A run's metrics.csv as curve columns (every row), and the step cells of skipped rows.

    Rows whose step is not a whole number (``1e2``, ``nan``, a torn line) are skipped, as the
    trainer's resume skips them. CollectError if the file cannot be parsed or lacks a column.
    """
    df = read_table(path, "metrics file", dtype=str)
    missing = [c for c in ("step", "tokens", "val_loss") if c not in df.columns]
    if missing:
        raise CollectError(f"metrics file {path} lacks columns {missing}")
    good = df["step"].map(_whole).astype(bool)
    bad = df.loc[~good, "step"].astype(str).tolist()
    df = df.loc[good]
    out = pd.DataFrame(index=df.index)
    for metric, col in METRIC_TO_CURVE.items():
        out[col] = pd.to_numeric(df[metric], errors="coerce") if metric in df else np.nan
    out["step"] = df["step"].map(int)
    return out, bad


def _store_run(folder: Path) -> tuple[dict, pd.DataFrame | None, list[str]]:
    """One run folder: its row, its curve (None without a record) and warnings."""
    try:
        summary = read_summary(folder / "summary.json")
    except SummaryError as err:
        return _unread_row(folder.name, folder.parent.name, Status.CORRUPT, str(err)), None, []
    if summary is None:  # metrics.csv alone: N unknown, so no curve either
        return _unread_row(folder.name, folder.parent.name, Status.UNFINISHED), None, []
    row = _summary_row(summary)
    metrics = folder / "metrics.csv"
    if not metrics.exists() or not metrics.stat().st_size:
        return row, None, []
    try:
        values, bad = read_metrics(metrics)
    except CollectError as err:
        row.update(status=Status.CORRUPT.value, corrupt=f"corrupt {metrics}: {err}")
        return row, None, []
    curve = _curve(values, row)
    skipped = f"{metrics}: skipped {len(bad)} rows whose step is not a whole number {bad[:3]}"
    return row, curve, [skipped] if bad else []


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
    rows, curves, notes = [], [], []
    for folder in folders:
        row, curve, more = _store_run(folder)
        rows.append(row)
        notes += more
        if curve is not None:
            curves.append(curve)
    if not rows:
        raise CollectError(f"no runs in run store {path} (no summary.json or metrics.csv below it)")
    return _finish(rows, curves, str(path), convention, notes)


def _wandb_curve(history: pd.DataFrame) -> pd.DataFrame:
    """A W&B run's history as curve columns (the keys of contract.WANDB_KEYS)."""
    out = pd.DataFrame(index=history.index)
    for metric, col in METRIC_TO_CURVE.items():
        key = WANDB_KEYS[metric]
        out[col] = pd.to_numeric(history[key], errors="coerce") if key in history else np.nan
    return out[out["step"].notna()]


def _wandb_row(
    summary: Mapping, history: pd.DataFrame, name: str, group: str | None, state: str | None
) -> tuple[dict, pd.DataFrame | None]:
    """A W&B run's row (from the run record in its summary) and its curve."""
    label = f"W&B run {name!r} summary"
    try:
        record = RunSummary.from_dict(dict(summary), source=label)
    except SummaryError as err:
        status = WANDB_STATES.get(state or "", Status.UNFINISHED)
        if status is Status.COMPLETED:  # finished, yet no readable record: corrupt
            return _unread_row(name, group, Status.CORRUPT, str(err)), None
        return _unread_row(name, group, status), None
    row = _summary_row(record)
    return row, _curve(_wandb_curve(history), row) if len(history) else None


def _merge_resumed(runs: list[dict]) -> list[dict]:
    """One record per W&B run id: a run resumed offline writes a second ``offline-run-*``
    folder with the same id. Histories are joined in time order (folder names start with the
    start time), a logged step seen twice keeps its later row (the resumed run re-logs the steps
    after its checkpoint); summary and config are the later ones layered over the earlier."""
    by_id: dict = {}
    for run in sorted(runs, key=lambda r: Path(r["path"]).parent.name):
        by_id.setdefault((run["project"], run["id"] or run["path"]), []).append(run)
    merged = []
    step = WANDB_KEYS["step"]
    for parts in by_id.values():
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        history = pd.concat([p["history"] for p in parts], ignore_index=True)
        if step in history:
            stepped = history[step].notna()
            last = ~history[step].duplicated(keep="last") | ~stepped
            history = history[last].sort_values(step, kind="stable").reset_index(drop=True)
        out = {**parts[-1], "history": history, "summary": {}, "config": {}}
        for p in parts:
            out["summary"].update(p["summary"])
            out["config"].update(p["config"])
        merged.append(out)
    return merged


def from_offline(
    path: str | Path, convention: str = "chinchilla", group: str | None = None
) -> Collected:
    """Every W&B offline run (``.wandb`` file) under ``path``, optionally of one group.

    A ``.wandb`` file that cannot be read is listed as a corrupt run named by its folder.
    """
    path = Path(path)
    files = sorted(path.rglob("*.wandb")) if path.is_dir() else [path]
    rows, curves, read = [], [], []
    for file in files:
        try:
            read.append(read_offline_run(file))
        except OfflineRunError as err:
            rows.append(_unread_row(file.parent.name, None, Status.CORRUPT, str(err)))
    for run in _merge_resumed(read):
        if group is not None and run["group"] != group:
            continue
        state = {0: "finished", None: None}.get(run["exit_code"], "failed")
        row, curve = _wandb_row(run["summary"], run["history"], run["name"], run["group"], state)
        rows.append(row)
        if curve is not None:
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
    api: Any = None,
    fetch: FetchSettings | None = None,
) -> Collected:
    """Runs of a W&B project (``entity/project``) through ``wandb.Api()``, by group or sweep.

    Runs are read by `analysis.wandb_fetch.fetch_runs`: full histories (``scan_history``, never
    the 500-point sample) in parallel, 429s retried, finished runs cached on disk (``fetch``).
    """
    filters = {k: v for k, v in (("group", group), ("sweep", sweep)) if v}
    try:
        fetched = fetch_runs(project, filters, api, fetch)
    except FetchError as err:
        raise CollectError(str(err)) from err
    none = pd.DataFrame()
    rows = [_wandb_row(r.summary, none, r.name, r.group, r.state)[0] for r in fetched.runs]
    if not rows:
        raise CollectError(f"no runs in W&B project {project!r} with filters {filters or 'none'}")
    # every run's curve in one pass over the long table (thousands of runs): evaluation rows
    # of the runs read from a run record (the rows that carry N)
    known = {i: row for i, row in enumerate(rows) if "N" in row}
    history = fetched.history
    if WANDB_KEYS["val_loss"] in history:  # evaluation rows only: a tenth of them or fewer
        history = history[history[WANDB_KEYS["val_loss"]].notna()]
    values = _wandb_curve(history)
    values["_run"] = history["_run"]
    values = values[values["loss"].notna() & values["_run"].isin(list(known))]
    for col in ("run", "sweep", "size", "N"):
        values[col] = values["_run"].map({i: row[col] for i, row in known.items()})
    return _finish(rows, [values.drop(columns="_run")], f"wandb:{project}", convention)


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
        df = read_table(file, "curve CSV")
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
    df = read_table(path)
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


TARGETS = ("loss", "bpb")  # what a fit calls loss: nats per token, or bits per byte


def with_target(collected: Collected, target: str) -> Collected:
    """``collected`` with ``loss`` (runs and curves) as ``target`` says: ``loss`` (nats per
    token, as collected) or ``bpb`` (bits per byte; runs without it are excluded, named)."""
    if target not in TARGETS:
        raise CollectError(f"unknown fit target {target!r}; use one of {TARGETS}")
    if target == "loss":
        return collected
    runs, curves = collected.runs.copy(), collected.curves.copy()
    missing = (runs["exclusion_reason"] == "") & ~(runs["loss_bpb"] > 0)
    runs.loc[missing, "exclusion_reason"] = "no bits per byte (its corpus has no byte count)"
    runs["loss"], curves["loss"] = runs["loss_bpb"], curves["loss_bpb"]
    curves = curves[curves["loss"].notna()]
    return replace(collected, runs=runs, curves=curves)


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
