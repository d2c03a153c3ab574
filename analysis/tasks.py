"""Downstream task accuracy from a ladder: the two-step chain of the OLMo ladder paper.

Bhagia et al. 2024 ("Establishing Task Scaling Laws via Compute-Efficient Model Ladders")
predict a big model's accuracy on a multiple-choice task in two steps, both fitted on the small
rungs of a ladder:

    step 1   L(N, D)  = A / N^alpha + B / D^beta + E     task loss (bits per byte of the correct
                                                          answer) at each rung's end (chinchilla)
    step 2   Acc(L)   = a / (1 + exp(-k (L - L0))) + b   accuracy against task loss, fitted on
                                                          every checkpoint of the rungs (sigmoid_L)

Both laws come from the one registry (analysis/laws.py) and are fitted by the one `fit`. The
chain predicts Acc(L(N, D)) at the held-out rungs; its interval is a joint bootstrap: each
resample draws rungs with replacement and refits both steps on the same rungs (one seed, one
list of rungs, so `analysis.fit.bootstrap` draws the same rungs for both). The direct power law
of accuracy against compute, Acc = A C^-alpha (power_C, alpha < 0 when accuracy grows), is
fitted on the same rung ends as a comparison.

Tasks whose accuracy jumps from checkpoint to checkpoint cannot be predicted however good the
laws are (the paper's ARC-Challenge); each task's noise-to-signal ratio (checkpoint-to-checkpoint
spread of accuracy over the rung-to-rung spread of final accuracy) is reported and a task above
``noise_max`` is flagged as noisy rather than hidden.

Sources: a run store whose runs were trained with ``train.tasks_path`` (metrics.csv columns
``task_bpb``, ``task_acc``) or a CSV of runs with one curve CSV per run (``--curves``), such as
data/reference/olmo_ladder. Result: ``tasks.json`` (`TasksReport`), ``tasks.md`` and one figure
per task group.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.cli import apply_holdout
from analysis.collect import Collected, CollectError, collect, read_table
from analysis.fit import FitError, FitResult, bootstrap, fit, interval
from analysis.laws import get_law
from analysis.report import fmt
from analysis.results import (
    Estimate,
    FitReportError,
    LawFit,
    from_plain,
    law_fit_from,
    to_plain,
)
from analysis.style import SIZE_CMAP, cmap, paper_style, save, width_inches
from contract import atomic_write_text, field_docs

TASKS_FORMAT = 1
"""Version of the tasks.json layout."""

STEP1_LAW, STEP2_LAW, DIRECT_LAW = "chinchilla", "sigmoid_L", "power_C"
# Step 1's starts: a coarse cut of Hoffmann et al.'s grid (4 x 4 x 4 x 3 x 3 = 576 starts; task
# losses are O(1) bits per byte, so E spans the same range and the fit is as well determined).
STEP1_GRID = {
    "a": (0.0, 5.0, 10.0, 20.0),
    "b": (0.0, 5.0, 10.0, 20.0),
    "e": (-1.0, -0.5, 0.0, 0.5),
    "alpha": (0.2, 0.5, 1.0),
    "beta": (0.2, 0.5, 1.0),
}
# Direct law's exponent grid: accuracy grows with compute, so alpha < 0 (A C^-alpha).
DIRECT_GRID = {"a": (-5.0, -2.0, 0.0), "alpha": (-0.1, -0.03, -0.01, 0.0)}


class TaskError(ValueError):
    """Task data that cannot be fitted as asked (a task missing at some rungs, no tasks)."""


@dataclass
class TaskSettings:
    """The choices of one ``scaling-tasks`` run (each is a flag)."""

    holdout: str = "largest-N"
    """Rungs predicted instead of fitted: 'largest-N' or a condition on the runs table such as
    "size == '3B'"."""
    bpb_pattern: str = r"^(?:eval/downstream_bpb/)?(?P<task>.+?)_bpb$"
    """Regular expression of a task-loss column (bits per byte of the correct answer); its
    group ``task`` names the task (metrics.csv's ``task_bpb`` is task 'task')."""
    acc_pattern: str = r"^(?:eval/downstream/)?(?P<task>.+?)_(?:len_norm|acc)$"
    """Regular expression of a task-accuracy column, its group ``task`` as for bpb_pattern."""
    tokens_column: str = "tokens"
    """Column of the curve CSVs giving the tokens trained at each row."""
    n_bootstrap: int = 1000
    """Joint bootstrap resamples of the rungs (0: no intervals)."""
    ci: float = 0.9
    """Coverage of the percentile intervals, in (0, 1)."""
    seed: int = 0
    """Seed of the bootstrap."""
    acc_huber_delta: float = 1.0
    """Huber delta of the accuracy fits on log accuracy, each point weighted by acc^2 so the
    objective is least squares on accuracy, as the paper's (1.0: no point is an outlier; step 1
    uses 1e-3 on log bpb, as the loss fits)."""
    checkpoints: int = 16
    """Checkpoints per fitted rung in step 2, evenly spaced in log tokens (the last kept)."""
    noise_window: int = 5
    """Last evaluation rows of each fitted rung over which checkpoint-to-checkpoint noise is
    measured."""
    noise_max: float = 0.1
    """A task whose noise-to-signal ratio exceeds this is flagged noisy (not predictable)."""
    skip_incomplete: bool = False
    """Skip (and list) a task missing at some rungs instead of refusing the whole run."""

    def __post_init__(self) -> None:
        for name in ("bpb_pattern", "acc_pattern"):
            try:
                re.compile(getattr(self, name))
            except re.error as err:
                raise TaskError(f"{name}={getattr(self, name)!r} is not a regex: {err}") from None
        checks = {
            "n_bootstrap": (self.n_bootstrap >= 0, "resamples >= 0"),
            "ci": (0 < self.ci < 1, "a coverage in (0, 1), e.g. 0.9"),
            "acc_huber_delta": (self.acc_huber_delta > 0, "a delta > 0"),
            "noise_window": (self.noise_window >= 3, "at least 3 rows"),
            "checkpoints": (self.checkpoints >= 2, "at least 2 per rung"),
            "noise_max": (self.noise_max > 0, "a ratio > 0"),
        }
        for name, (ok, valid) in checks.items():
            if not ok:
                raise TaskError(f"{name}={getattr(self, name)!r} is not valid; use {valid}")


@dataclass
class Prediction:
    """One held-out rung: observed and predicted task loss and accuracy."""

    run: str
    """The rung's run name."""
    N: float
    """Non-embedding parameters."""
    D: float
    """Training tokens at the rung's last evaluation."""
    bpb_observed: float
    """Task loss (bits per byte) at the rung's last evaluation."""
    bpb_predicted: Estimate
    """Step 1's task loss at (N, D), with the joint-bootstrap interval."""
    acc_observed: float
    """Accuracy at the rung's last evaluation."""
    acc_predicted: Estimate
    """The chain's accuracy Acc(L(N, D)), with the joint-bootstrap interval."""
    acc_direct: Estimate
    """The direct law's accuracy A C^-alpha at C = 6 N D, with its bootstrap interval."""

    @property
    def abs_error(self) -> float:
        """|chain prediction - observed accuracy|."""
        return abs(self.acc_predicted.value - self.acc_observed)


@dataclass
class TaskResult:
    """One task: both steps, the direct law, the predictions and how noisy the task is."""

    task: str
    """Task name (the ``task`` group of the column patterns)."""
    group: str
    """Task group (the name's first word, e.g. 'arc'): one figure per group."""
    step1: LawFit
    """Task loss L(N, D) on the fitted rungs' last evaluations (law chinchilla)."""
    step2: LawFit
    """Accuracy against task loss on every checkpoint of the fitted rungs (law sigmoid_L)."""
    direct: LawFit
    """Accuracy against compute C = 6ND on the fitted rungs' ends (law power_C)."""
    predictions: list[Prediction]
    """The held-out rungs, in the order of the runs table."""
    noise: float
    """Mean over fitted rungs of the checkpoint-to-checkpoint accuracy spread (std of successive
    differences / sqrt 2) over their last noise_window evaluations."""
    spread: float
    """Range of final accuracy over the fitted rungs (the signal the laws fit)."""
    noisy: bool
    """noise / spread exceeds the setting noise_max: the task is flagged as not predictable."""
    fit_points: list[list[float]] = field(default_factory=list)
    """[bpb, acc] of every fitted checkpoint (step 2's data), for the figure."""

    @property
    def mean_abs_error(self) -> float:
        """Mean |chain - observed| accuracy over the held-out rungs."""
        return float(np.mean([p.abs_error for p in self.predictions]))

    @property
    def mean_abs_error_direct(self) -> float:
        """Mean |direct - observed| accuracy over the held-out rungs."""
        return float(np.mean([abs(p.acc_direct.value - p.acc_observed) for p in self.predictions]))

    @property
    def noise_ratio(self) -> float:
        """noise / spread."""
        return self.noise / self.spread if self.spread > 0 else math.inf


@dataclass
class TasksReport:
    """tasks.json: every task's chain, its predictions of the held-out rungs, skipped tasks."""

    source: str
    """The source as given."""
    settings: TaskSettings
    """The settings of the run."""
    fitted_runs: list[str]
    """Rungs the laws were fitted on."""
    heldout_runs: list[str]
    """Rungs predicted (the hold-out rule's)."""
    tasks: list[TaskResult]
    """One entry per task fitted, sorted by name."""
    skipped: dict[str, list[str]] = field(default_factory=dict)
    """Tasks skipped (skip_incomplete) -> the rungs lacking them."""
    no_evaluations: list[str] = field(default_factory=list)
    """Usable runs without any task evaluation (no metrics.csv or curve file): left out."""
    format: int = TASKS_FORMAT
    """Version of this layout."""

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(to_plain(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def load(cls, path: Path | str) -> TasksReport:
        """A tasks.json read back (FitReportError naming the file if it is not one)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise FitReportError(path, str(err)) from None
        if not isinstance(data, dict) or data.get("format") != TASKS_FORMAT:
            raise FitReportError(path, f"not a tasks.json of format {TASKS_FORMAT}")
        return from_plain(cls, data, "tasks.json")

    def task(self, name: str) -> TaskResult:
        """The result of one task."""
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(f"no task {name!r}; tasks: {[t.task for t in self.tasks]}")


# ----------------------------------------------------------------------------- reading


def _task_columns(columns: Sequence[str], settings: TaskSettings) -> dict[str, tuple[str, str]]:
    """task -> (bpb column, accuracy column) for tasks that have both."""
    found: dict[str, dict[str, str]] = {}
    for kind, pattern in (("bpb", settings.bpb_pattern), ("acc", settings.acc_pattern)):
        for col in columns:
            m = re.match(pattern, str(col))
            if m:
                task = m.groupdict().get("task") or "task"
                found.setdefault(task, {}).setdefault(kind, str(col))
    return {t: (c["bpb"], c["acc"]) for t, c in sorted(found.items()) if len(c) == 2}


def _points_of(run: str, df: pd.DataFrame, tokens: str, settings: TaskSettings) -> pd.DataFrame:
    """Long rows (run, tokens, task, bpb, acc) of one run's evaluations with both values."""
    cols = _task_columns(df.columns, settings)
    t = pd.to_numeric(df[tokens], errors="coerce").to_numpy(float)
    out = [
        pd.DataFrame(
            {
                "run": run,
                "tokens": t,
                "task": task,
                "bpb": pd.to_numeric(df[b], errors="coerce").to_numpy(float),
                "acc": pd.to_numeric(df[a], errors="coerce").to_numpy(float),
            }
        )
        for task, (b, a) in cols.items()
    ]
    if not out:
        return pd.DataFrame(columns=["run", "tokens", "task", "bpb", "acc"])
    long = pd.concat(out, ignore_index=True)
    good = np.isfinite(long[["tokens", "bpb", "acc"]]).all(axis=1) & (long["tokens"] > 0)
    return long[good & (long["bpb"] > 0) & (long["acc"] > 0)]


def _curve_frames(
    collected: Collected, curves: str | None, settings: TaskSettings
) -> dict[str, pd.DataFrame]:
    """run -> its evaluation table: metrics.csv of a run store, or the --curves files."""
    runs = set(collected.usable["run"].astype(str))
    if curves is None:
        root = Path(collected.source)
        if not root.is_dir():
            raise TaskError(
                f"source {collected.source!r} is a CSV of runs: give the per-run evaluation "
                "files with --curves GLOB (one CSV per run, named by the run)"
            )
        files = {p.parent.name: p for p in root.rglob("metrics.csv") if p.parent.name in runs}
        tokens = "tokens"
    else:
        base = Path(curves)
        files = {p.stem: p for p in sorted(base.parent.glob(base.name)) if p.is_file()}
        unknown = sorted(set(files) - set(collected.runs["run"].astype(str)))
        if not files or unknown:
            raise TaskError(
                f"--curves {curves!r}: "
                + (f"files {unknown[:5]} name no run of the table" if files else "no file")
                + f" (runs: {sorted(runs)[:6]} ...)"
            )
        tokens = settings.tokens_column
    frames = {}
    for run, path in files.items():
        if run in runs:
            df = read_table(path, "evaluation CSV")
            if tokens not in df.columns:
                raise TaskError(f"{path} has no tokens column {tokens!r} (--tokens-column)")
            frames[run] = df.rename(columns={tokens: "__tokens"})
    return frames


def read_points(
    collected: Collected, curves: str | None, settings: TaskSettings
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Every run's task evaluations as long rows, and the tasks missing at some rungs.

    A task is missing at a rung when the rung has no evaluation with both its loss and its
    accuracy. TaskError names the tasks and rungs unless settings.skip_incomplete.
    """
    frames = _curve_frames(collected, curves, settings)
    points = [_points_of(run, df, "__tokens", settings) for run, df in frames.items()]
    long = pd.concat(points, ignore_index=True) if points else pd.DataFrame()
    if long.empty:
        raise TaskError(
            f"no task columns in {collected.source}: none matches bpb_pattern "
            f"{settings.bpb_pattern!r} together with acc_pattern {settings.acc_pattern!r}"
        )
    runs = sorted(frames)  # rungs with evaluations (others: TasksReport.no_evaluations)
    missing = {
        task: sorted(set(runs) - set(g["run"])) for task, g in long.groupby("task", sort=True)
    }
    missing = {t: r for t, r in missing.items() if r}
    if missing and not settings.skip_incomplete:
        by_runs: dict[tuple[str, ...], list[str]] = {}
        for task, r in missing.items():
            by_runs.setdefault(tuple(r), []).append(task)
        lines = "; ".join(f"{', '.join(t)} at rungs {list(r)}" for r, t in by_runs.items())
        raise TaskError(
            f"task columns missing at some rungs: {lines} (every rung needs the task's loss and "
            "accuracy; --skip-incomplete skips such tasks and lists them)"
        )
    return long[~long["task"].isin(missing)], missing


# ----------------------------------------------------------------------------- fitting


def noise_of(points: pd.DataFrame, window: int) -> tuple[float, float]:
    """(noise, spread) of one task on the fitted rungs (see TaskResult.noise and .spread)."""
    noise, finals = [], []
    for _, g in points.sort_values("tokens").groupby("run"):
        acc = g["acc"].to_numpy()
        finals.append(acc[-1])
        tail = acc[-window:]
        if tail.size >= 3:
            noise.append(np.std(np.diff(tail), ddof=1) / math.sqrt(2))
    return float(np.mean(noise)) if noise else math.nan, float(np.ptp(finals))


def thin(points: pd.DataFrame, k: int) -> pd.DataFrame:
    """At most ``k`` rows per run, nearest to evenly spaced log tokens (first and last kept)."""
    keep = []
    for _, g in points.sort_values("tokens").groupby("run", sort=True):
        logt = np.log(g["tokens"].to_numpy(float))
        want = np.linspace(logt[0], logt[-1], k)
        idx = np.unique(np.abs(logt[None, :] - want[:, None]).argmin(axis=1))
        keep.append(g.iloc[idx])
    return pd.concat(keep)


def _step2_grid(bpb: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Sigmoid starts: the registry's, with L0 at the data's quantiles."""
    grid = dict(get_law(STEP2_LAW).grid)
    grid["L0"] = tuple(float(q) for q in np.quantile(bpb, [0.25, 0.5, 0.75]))
    return grid


def _weights(data: pd.DataFrame, loss: str) -> np.ndarray | None:
    """acc^2 for an accuracy fit: a log residual times acc is the residual in accuracy."""
    return data["acc"].to_numpy(float) ** 2 if loss == "acc" else None


def _boot(result: FitResult, data: pd.DataFrame, loss: str, s: TaskSettings) -> np.ndarray | None:
    """Refits on resamples of the rungs: with one seed and the same sorted rungs in every step's
    data, every step draws the same rungs in resample i (the joint bootstrap)."""
    if s.n_bootstrap == 0:
        return None
    return bootstrap(result, data, loss=loss, n=s.n_bootstrap, seed=s.seed, groups=data["run"],
                     weights=_weights(data, loss))  # fmt: skip


def _estimate(value: float, samples: np.ndarray | None, ci: float) -> Estimate:
    return Estimate(float(value), None if samples is None else interval(samples, ci))


def fit_task(
    task: str, points: pd.DataFrame, runs: pd.DataFrame, settings: TaskSettings
) -> TaskResult:
    """Both steps, the direct law, the joint bootstrap and the predictions of one task."""
    held = runs[runs["heldout"]]
    fitted = points[points["run"].isin(runs.loc[~runs["heldout"], "run"])]
    n_of = runs.set_index("run")["N"]
    ends = fitted.sort_values("tokens").groupby("run", sort=True).tail(1).sort_values("run")
    ends = ends.assign(N=ends["run"].map(n_of).to_numpy(float), D=ends["tokens"])
    ends = ends.assign(C=6 * ends["N"] * ends["D"])
    fitted = thin(fitted, settings.checkpoints).rename(columns={"bpb": "L"})
    r1 = fit(STEP1_LAW, ends, loss="bpb", grid=STEP1_GRID)
    delta = settings.acc_huber_delta
    r2 = fit(STEP2_LAW, fitted, loss="acc", delta=delta, weights=_weights(fitted, "acc"),
             grid=_step2_grid(fitted["L"].to_numpy()))  # fmt: skip
    r3 = fit(DIRECT_LAW, ends, loss="acc", delta=delta, weights=_weights(ends, "acc"),
             grid=DIRECT_GRID)  # fmt: skip
    # joint bootstrap: same seed, same sorted rungs -> the same rungs drawn for both steps
    b1, b2, b3 = (_boot(r, d, y, settings) for r, d, y in
                  ((r1, ends, "bpb"), (r2, fitted, "acc"), (r3, ends, "acc")))  # fmt: skip
    last = points[points["run"].isin(held["run"])].sort_values("tokens").groupby("run").tail(1)
    last = last.set_index("run")
    last = last.loc[[r for r in held["run"] if r in last.index]]
    cols = {"N": last.index.map(n_of).to_numpy(float), "D": last["tokens"].to_numpy(float)}
    cols["C"] = 6 * cols["N"] * cols["D"]
    l_hat, acc_hat = r1.predict(cols), r2.law.predict(r2.theta, {"L": r1.predict(cols)})
    direct = r3.predict(cols)
    if b1 is not None:
        l_boot = r1.law.predict(b1, cols)  # (n, rungs)
        acc_boot = np.exp(np.stack([r2.law.log_predict(b2[i], {"L": l_boot[i]})
                                    for i in range(len(b2))]))  # fmt: skip
        direct_boot = r3.law.predict(b3, cols)
    preds = [
        Prediction(
            run=str(run),
            N=float(cols["N"][i]),
            D=float(cols["D"][i]),
            bpb_observed=float(last["bpb"].iloc[i]),
            acc_observed=float(last["acc"].iloc[i]),
            bpb_predicted=_estimate(l_hat[i], None if b1 is None else l_boot[:, i], settings.ci),
            acc_predicted=_estimate(
                acc_hat[i], None if b1 is None else acc_boot[:, i], settings.ci
            ),
            acc_direct=_estimate(direct[i], None if b1 is None else direct_boot[:, i], settings.ci),
        )  # fmt: skip
        for i, run in enumerate(last.index)
    ]
    noise, spread = noise_of(points[points["run"].isin(ends["run"])], settings.noise_window)
    return TaskResult(
        task=task,
        group=task.split("_")[0],
        step1=law_fit_from(r1, b1, settings.ci),
        step2=law_fit_from(r2, b2, settings.ci),
        direct=law_fit_from(r3, b3, settings.ci),
        predictions=preds,
        noise=noise,
        spread=spread,
        noisy=bool(not spread > 0 or noise / spread > settings.noise_max),
        fit_points=fitted[["L", "acc"]].to_numpy(float).round(6).tolist(),
    )


def run_tasks(
    source: str | Path,
    settings: TaskSettings,
    *,
    columns: str | None = None,
    curves: str | None = None,
    only: Sequence[str] = (),
) -> TasksReport:
    """Collect the rungs and their task evaluations, then fit every task (or those ``only``)."""
    collected = collect(source, columns=columns)
    runs = collected.usable.copy()
    runs["heldout"] = False
    try:
        apply_holdout(runs, settings.holdout)
    except FitError as err:
        raise TaskError(str(err)) from None
    if not runs["heldout"].any() or runs["heldout"].all():
        raise TaskError(
            f"hold-out rule {settings.holdout!r} holds out {int(runs['heldout'].sum())} of "
            f"{len(runs)} rungs; it must leave some to fit and some to predict"
        )
    points, skipped = read_points(collected, curves, settings)
    no_evals = sorted(set(runs["run"]) - set(points["run"]))
    runs = runs[runs["run"].isin(points["run"])]
    unknown = sorted(set(only) - set(points["task"]))
    if unknown:
        raise TaskError(f"unknown tasks {unknown}; tasks: {sorted(points['task'].unique())}")
    names = [t for t in sorted(points["task"].unique()) if not only or t in only]
    results = [fit_task(t, points[points["task"] == t], runs, settings) for t in names]
    return TasksReport(
        source=str(source),
        settings=settings,
        fitted_runs=sorted(runs.loc[~runs["heldout"], "run"]),
        heldout_runs=list(runs.loc[runs["heldout"], "run"]),
        tasks=results,
        skipped=skipped,
        no_evaluations=no_evals,
    )


# ----------------------------------------------------------------------------- figures


def plot_group(report: TasksReport, tasks: list[TaskResult]) -> Figure:
    """One panel per task: fitted checkpoints (acc against task loss), the fitted sigmoid, the
    held-out rungs observed (o) and predicted by the chain (x, with the interval) and the
    direct law (diamond). A noisy task says so in its title."""
    ncols = min(len(tasks), 4)
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(layout="constrained", figsize=(width_inches("double"), 1.9 * nrows + 0.3))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    m = cmap(SIZE_CMAP)
    for ax, t in zip(axes.flat, tasks):
        pts = np.asarray(t.fit_points, float).reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=3, color="0.6", lw=0, label="fitted checkpoints")
        lo = min(pts[:, 0].min(), *(p.bpb_predicted.value for p in t.predictions))
        grid = np.linspace(lo * 0.95, pts[:, 0].max() * 1.02, 200)
        law = get_law(STEP2_LAW)
        ax.plot(grid, law.predict_natural(t.step2.values(), {"L": grid}), color="k", lw=0.9,
                label="step 2: Acc(L)")  # fmt: skip
        for i, p in enumerate(t.predictions):
            color = m(0.85 * i / max(len(t.predictions) - 1, 1))
            ax.plot([p.bpb_observed], [p.acc_observed], "o", mfc="none", mec=color, ms=5)
            ci = p.acc_predicted.ci
            yerr = None if not ci else [[p.acc_predicted.value - ci[0]],
                                        [ci[1] - p.acc_predicted.value]]  # fmt: skip
            ax.errorbar([p.bpb_predicted.value], [p.acc_predicted.value], yerr=yerr, fmt="x",
                        color=color, ms=5, lw=0.8, capsize=1.5)  # fmt: skip
            ax.plot([p.bpb_observed], [p.acc_direct.value], "D", mfc="none", mec=color, ms=3)
        title = t.task.replace("_", " ")
        ax.set_title(title + (" (noisy)" if t.noisy else ""), fontsize="small")
        ax.set_xlabel("task loss (bits/byte)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    handles = [
        axes.flat[0].scatter([], [], s=3, color="0.6"),
        axes.flat[0].plot([], [], "k-", lw=0.9)[0],
        axes.flat[0].plot([], [], "o", mfc="none", mec="k")[0],
        axes.flat[0].plot([], [], "x", color="k")[0],
        axes.flat[0].plot([], [], "D", mfc="none", mec="k", ms=3)[0],
    ]
    labels = ["fitted checkpoints", "step 2: Acc(L)", "held-out rung, observed (dark: first rung, light: last)",
              f"chain prediction ({round(100 * report.settings.ci)}% interval)",
              "direct Acc(C)"]  # fmt: skip
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize="small")
    return fig


def plot_groups(report: TasksReport, out: Path) -> list[Path]:
    """tasks_<group>.pdf/.png: one figure per task group."""
    groups: dict[str, list[TaskResult]] = {}
    for t in report.tasks:
        groups.setdefault(t.group, []).append(t)
    paths: list[Path] = []
    with paper_style():
        for group, tasks in groups.items():
            paths += save(plot_group(report, tasks), out / f"tasks_{group}")
    return paths


# ----------------------------------------------------------------------------- report


def markdown(report: TasksReport) -> str:
    """The report section: per task the chain's and the direct law's error, and the flag."""
    pct = round(100 * report.settings.ci)
    lines = [
        "## Downstream tasks (two-step chain, Bhagia et al. 2024)",
        "",
        f"Fitted on {len(report.fitted_runs)} rungs, predicting {len(report.heldout_runs)} "
        f"held-out rungs ({report.settings.holdout}); {pct}% intervals from a joint bootstrap "
        f"of rungs ({report.settings.n_bootstrap} resamples). Errors: mean |predicted - "
        "observed| accuracy over the held-out rungs, in points; chain: Acc(L(N, D)), direct: "
        "Acc(C). Noise / spread: checkpoint-to-checkpoint accuracy noise over the rung-to-rung "
        f"spread; above {report.settings.noise_max:g} a task is flagged noisy (not predictable).",
        "",
        "| task | chain error | direct error | noise / spread | flag |",
        "|---|---|---|---|---|",
    ]
    for t in report.tasks:
        lines.append(
            f"| {t.task} | {100 * t.mean_abs_error:.2f} | {100 * t.mean_abs_error_direct:.2f} "
            f"| {fmt(t.noise_ratio, 3)} | {'noisy' if t.noisy else ''} |"
        )
    for t in report.tasks:
        lines += ["", f"### {t.task}", "", "| rung | acc observed | chain | direct |",
                  "|---|---|---|---|"]  # fmt: skip
        for p in t.predictions:
            ci = p.acc_predicted.ci
            band = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            lines.append(
                f"| {p.run} | {p.acc_observed:.3f} | {p.acc_predicted.value:.3f}{band} "
                f"| {p.acc_direct.value:.3f} |"
            )
    if report.no_evaluations:
        lines += [
            "",
            f"Runs without task evaluations, left out: {', '.join(report.no_evaluations)}",
        ]
    if report.skipped:
        lines += ["", "Skipped (missing at some rungs): "
                  + "; ".join(f"{t} ({', '.join(r)})" for t, r in report.skipped.items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_outputs(report: TasksReport, out: Path) -> list[Path]:
    """tasks.json, tasks.md and the figures of every task group under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "tasks.json", out / "tasks.md"]
    atomic_write_text(paths[0], report.to_json())
    atomic_write_text(paths[1], markdown(report))
    return paths + plot_groups(report, out)


def parser() -> argparse.ArgumentParser:
    """The scaling-tasks command line."""
    p = argparse.ArgumentParser(
        prog="scaling-tasks",
        description="Predict downstream task accuracy of held-out rungs from a ladder: task "
        "loss L(N, D), then accuracy Acc(L) (Bhagia et al. 2024), with joint-bootstrap "
        "intervals; writes tasks.json, tasks.md and one figure per task group.",
        epilog="example: scaling-tasks data/reference/olmo_ladder/ladder_final_c4_summary.csv "
        "--columns D=tokens,loss=c4_loss_final --curves 'data/reference/olmo_ladder/*xC.csv' "
        "--tokens-column throughput/total_tokens --out results/tasks",
    )
    p.add_argument("source", help="run store folder, or a CSV of runs (with --curves)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--columns", help="column mapping of a CSV source, e.g. D=tokens,loss=loss")
    p.add_argument("--curves", help="per-run evaluation CSVs (glob), each named by its run")
    p.add_argument("--task", action="append", default=[], help="fit only this task (repeat)")
    for f in TaskSettings.__dataclass_fields__.values():
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=_doc(f.name))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=f.default, help=_doc(f.name))
    return p


def _doc(name: str) -> str:
    return field_docs(TaskSettings).get(name, "").replace("%", "%%")


def main(argv: Sequence[str] | None = None) -> int:
    """`scaling-tasks SOURCE --out DIR [--curves GLOB] [--holdout RULE] [--skip-incomplete]`."""
    p = parser()
    args = p.parse_args(argv)
    names = TaskSettings.__dataclass_fields__
    try:
        settings = TaskSettings(**{k: getattr(args, k) for k in names})
        report = run_tasks(args.source, settings, columns=args.columns, curves=args.curves,
                           only=args.task)  # fmt: skip
        paths = write_outputs(report, args.out)
    except (TaskError, FitError, CollectError, OSError) as err:
        p.error(str(err))
    if report.no_evaluations:
        print(f"note: runs without task evaluations, left out: {report.no_evaluations}",
              file=sys.stderr)  # fmt: skip
    for task, runs in report.skipped.items():
        print(f"warning: task {task} skipped: missing at rungs {runs}", file=sys.stderr)
    for t in report.tasks:
        flag = "  NOISY: not predictable" if t.noisy else ""
        print(f"{t.task}: chain |error| {100 * t.mean_abs_error:.2f} points, direct "
              f"{100 * t.mean_abs_error_direct:.2f}, noise/spread {t.noise_ratio:.3f}{flag}")  # fmt: skip
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
