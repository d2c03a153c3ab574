"""``scaling-fit --law multipower|tissue``: laws of the whole loss curve, from sources to fit.json.

Sources are a run store or curve CSV files (``analysis.curves.read_curve``). A run of the store
is a curve: its loss (``val_loss`` or ``train_loss``) at each logged row, and the learning rate
of every optimiser step rebuilt from its recorded schedule (``config.yaml`` and the peak LR of
``summary.json``) by ``contract.schedule.trainer_schedule``, the very function the
trainer runs; the rebuilt LR is checked against every logged ``lr`` cell. A metrics row of
step ``s`` (``s`` optimiser steps done) is the curve's point at step index ``s - 1``, the last
step trained; rows before the end of the warmup are left out (the laws hold after it).
A WSD cooldown branch (``init_from``) is one curve: the stable run's rows up to the branch
point, then the branch's own. Tissue's law on a run store takes each curve's momentum factor from
its own length (``curve_decay_window``: window 1/(1 - lambda) = 0.05 T by default;
``tissue_window``), curve files the fixed ``curve_decay``.

The fit is ``analysis.fit.fit`` of a ``CurveLaw`` on the curves not held out; the bootstrap
resamples blocks of consecutive logged steps (``analysis.curves.block_groups``). Every curve is
scored (``per_curve``); ``--predict`` schedules are curves with no observed loss, predicted.
``curves.csv`` then holds one row per (curve, step): ``curve``, ``kind`` (``fitted``,
``held_out`` or ``predicted``), ``step``, ``lr``, ``loss`` (observed; empty for a prediction)
and ``predicted``.

A joint law across model sizes (``--law multipower_joint`` and the other forms of
``analysis.curve_joint``) needs each curve's N: a run store's ``summary.json`` has it (and the
tokens per step); a curve file's N is its folder's name as a size label (``25M/cosine.csv``),
and files of several folders with the same stem are named ``<folder>/<stem>``. The joint fit
starts from per-size multi-power fits (``curve_joint.start_from_sizes``); fit.json's ``curves``
holds the joint parameters and, per size, the MPL coefficients they give (``L0@25M``, ...).
Each ``--predict`` schedule is predicted at every size (``<spec>@<size>``).
"""

from __future__ import annotations

import glob
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis.collect import CollectError, read_metrics
from analysis.curve_joint import JOINT_LAWS, JointLaw, parse_size, start_from_sizes
from analysis.curves import (
    CURVE_LAWS,
    WSD,
    Constant,
    Cosine,
    Curve,
    CurveError,
    CurveLaw,
    Schedule,
    Shape,
    block_groups,
    curve_table,
    held_out_rows,
    per_curve,
    read_curve,
)
from analysis.fit import FitResult, bootstrap, fit, interval
from analysis.fitconfig import FitConfig
from analysis.results import (
    Bootstrap,
    CurvePrediction,
    CurveScore,
    CurvesResult,
    Estimate,
    FitReport,
    law_fit_from,
)
from contract import RunSummary, Status, SummaryError, read_summary
from contract.schedule import parse_spec, trainer_schedule

# metrics.csv loss column -> its column in analysis.collect.read_metrics
LOSS_COLUMNS = {"val_loss": "loss", "train_loss": "train_loss"}
PREDICT_POINTS = 200  # logged steps of a predicted curve (log-spaced, always the last step)
SCHEDULE_KEYS = ("warmup_frac", "warmup_max", "final_lr_frac", "cooldown_frac", "cooldown_shape")


@dataclass(frozen=True)
class CurveSet:
    """The observed curves of a source and how to build a schedule the user describes."""

    curves: list[Curve]
    """The observed curves, in source order."""
    make: Callable[[str], np.ndarray]
    """A schedule spec (``contract.schedule.SPEC_GRAMMAR``) -> its per-step LR."""
    warnings: list[str]
    """Runs left out (not completed) and why."""
    sizes: list[float | None] | None = None
    """Model size N of each curve (None where unknown: a joint law refuses those)."""
    size_labels: list[str] | None = None
    """Each curve's size as named (``25M``, ``10k``): how per-size results are labelled."""
    tokens_per_step: list[float] | None = None
    """Tokens per optimiser step of each curve (run stores; None for curve files)."""


# ---------------------------------------------------------------------------- run stores


def run_schedule(folder: Path, summary: RunSummary) -> Schedule:
    """The schedule a run trained with, from its config.yaml (``schedule``) and summary."""
    path = folder / "config.yaml"
    try:
        conf = yaml.safe_load(path.read_text())
        sched = dict(conf["schedule"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise CurveError(f"{path}: no readable schedule section ({err})") from None
    kwargs = {k: sched[k] for k in (*SCHEDULE_KEYS, "wsd_total_steps") if k in sched}
    try:
        return trainer_schedule(str(sched.get("kind")), summary.steps, **kwargs)
    except (TypeError, ValueError) as err:
        raise CurveError(f"{path}: schedule {sched} cannot be rebuilt: {err}") from None


def _rows(folder: Path, loss: str) -> pd.DataFrame:
    """A run's metrics rows (step, loss, lr); CurveError naming the file when unreadable."""
    try:
        values, _ = read_metrics(folder / "metrics.csv")
    except CollectError as err:
        raise CurveError(str(err)) from None
    return values[["step", LOSS_COLUMNS[loss], "lr"]].rename(columns={LOSS_COLUMNS[loss]: "y"})


def _branch_rows(folder: Path, summary: RunSummary, loss: str) -> pd.DataFrame:
    """A run's rows; a WSD branch's preceded by its stable run's rows up to the branch point."""
    rows = _rows(folder, loss)
    if not summary.init_from:
        return rows
    ckpt = Path(summary.init_from)
    start = ckpt.stem.removeprefix("step")
    parent = ckpt.parent.parent
    if not start.isdigit() or not (parent / "metrics.csv").is_file():
        raise CurveError(
            f"{folder}: branch of {summary.init_from}, but no stable run's metrics.csv at "
            f"{parent} (a checkpoint named step<k>.ckpt in <run>/checkpoints/)"
        )
    stable = _rows(parent, loss)
    return pd.concat([stable[stable["step"] <= int(start)], rows[rows["step"] > int(start)]])


def run_curve(folder: Path, summary: RunSummary, loss: str = "val_loss") -> Curve:
    """One run of a store as a curve, its LR rebuilt exactly and checked against the logs."""
    sched = run_schedule(folder, summary)
    rows = _branch_rows(folder, summary, loss)
    rows = rows[rows["step"] >= 2]  # step index >= 1: the laws' step column must be > 0
    logged = rows.dropna(subset=["lr"])
    rebuilt = np.array([summary.lr * sched.multiplier(int(s)) for s in logged["step"]])
    off = np.flatnonzero(~np.isclose(logged["lr"], rebuilt, rtol=1e-6, atol=1e-15))
    if off.size:
        i = off[0]
        raise CurveError(
            f"{folder}: logged lr {logged['lr'].iloc[i]} at step {logged['step'].iloc[i]} is not "
            f"the schedule's {rebuilt[i]} ({sched}); the run's config.yaml does not describe it"
        )
    rows = rows.dropna(subset=["y"]).drop_duplicates("step", keep="last").sort_values("step")
    lr = summary.lr * np.array(sched.lrs())
    # The laws describe the loss after the warmup (the published curves are logged from its
    # end); log-spaced evaluations would otherwise put over half the points in a 5% warmup.
    rows = rows[rows["step"] - 1 >= int(np.argmax(lr))]
    return Curve(summary.run, lr, rows["step"].to_numpy() - 1, rows["y"].to_numpy(), str(folder))


def store_curves(store: Path, loss: str = "val_loss") -> CurveSet:
    """Every completed run under ``store`` as a curve (others named in the warnings)."""
    curves, warnings, template, experiments, summaries = [], [], None, [], []
    for path in sorted(store.rglob("summary.json")):
        folder = path.parent
        if any(p.startswith(".") for p in folder.relative_to(store).parts):
            continue
        try:
            summary = read_summary(path)
        except SummaryError as err:
            warnings.append(f"{folder}: left out ({err})")
            continue
        if summary is None or summary.status != Status.COMPLETED.value:
            warnings.append(f"{folder}: left out (status {getattr(summary, 'status', None)})")
            continue
        curves.append(run_curve(folder, summary, loss))
        experiments.append(summary.experiment)
        summaries.append(summary)
        template = template or _run_template(folder, summary)
    if not curves:
        raise CurveError(f"no completed run with a summary.json under the run store {store}")
    names = [c.name for c in curves]
    if len(set(names)) < len(names):  # runs of several experiments: name them experiment/run
        curves = [replace(c, name=f"{e}/{c.name}") for c, e in zip(curves, experiments)]
    return CurveSet(
        curves,
        template,
        warnings,
        sizes=[float(s.N) for s in summaries],
        size_labels=[s.size for s in summaries],
        tokens_per_step=[float(s.batch_size * s.seq_len) for s in summaries],
    )


def _run_template(folder: Path, summary: RunSummary) -> Callable[[str], np.ndarray]:
    """Spec -> per-step LR with the run's peak LR and schedule settings (warmup, ...)."""
    sched = dict(yaml.safe_load((folder / "config.yaml").read_text())["schedule"])
    base = {k: sched[k] for k in SCHEDULE_KEYS if k in sched}

    def make(spec: str) -> np.ndarray:
        kw = {**base, **parse_spec(spec)}
        return summary.lr * np.array(trainer_schedule(kw.pop("kind"), **kw).lrs())

    return make


# ---------------------------------------------------------------------------- curve files


def file_curves(patterns: Sequence[str], columns: dict[str, str] | None = None) -> CurveSet:
    """Curves from CSV files (paths or globs): ``step``, ``lr``, ``loss`` per optimiser step."""
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).is_file() else [])
        if not found:
            raise CurveError(f"curve file {pattern!r} does not exist (and matches no file)")
        paths += found
    curves = [read_curve(p, columns) for p in paths]
    folders = [Path(p).resolve().parent.name for p in paths]
    stems = [c.name for c in curves]
    if len(set(stems)) < len(stems):  # one schedule at several sizes: 25M/cosine, 100M/cosine
        curves = [replace(c, name=f"{f}/{c.name}") for c, f in zip(curves, folders)]
    names = [c.name for c in curves]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CurveError(
            f"curve files with the same name {dup}: a curve is named by its file stem (and its "
            f"folder where stems repeat)"
        )
    return CurveSet(
        curves, _file_template(curves), [], sizes=[parse_size(f) for f in folders],
        size_labels=folders,
    )  # fmt: skip


def _file_template(curves: Sequence[Curve]) -> Callable[[str], np.ndarray]:
    """Spec -> per-step LR with the first curve's peak LR and warmup (linear, from 0 when its
    lr[0] is 0); as in the trainer, a cosine ends at 0.1 x peak and a WSD decay at 0 unless the
    spec says otherwise."""
    first = curves[0]
    peak, warmup = float(first.lr.max()), first.peak_step + int(first.lr[0] > 0)
    from_zero = bool(first.lr[0] == 0)

    def make(spec: str) -> np.ndarray:
        kw = parse_spec(spec)
        total = int(kw["total_steps"])
        sched: Schedule
        if kw["kind"] == "constant":
            sched = Constant(total, warmup, peak, from_zero)
        elif kw["kind"] == "cosine":
            sched = Cosine(total, warmup, peak, from_zero, float(kw.get("final_lr_frac", 0.1)))
        else:
            start = total - max(1, round(float(kw.get("cooldown_frac", 0.2)) * total))
            shape = Shape(str(kw.get("cooldown_shape", "sqrt")))
            sched = WSD(total, warmup, peak, from_zero, start, 0.0, shape)
        return np.array(sched.lrs())

    return make


def load_curves(sources: Sequence[str], config: FitConfig) -> CurveSet:
    """The curves of a run-store folder, or of curve files (paths or globs)."""
    if len(sources) == 1 and Path(sources[0]).is_dir():
        return store_curves(Path(sources[0]), config.curve_loss)
    if any(Path(s).is_dir() for s in sources):
        raise CurveError(f"give one run-store folder or curve CSV files, not a mix: {sources}")
    return file_curves(sources, config.curve_columns)


# ---------------------------------------------------------------------------- the fit


def predicted_curve(spec: str, make: Callable[[str], np.ndarray]) -> Curve:
    """A schedule nobody trained as a curve with no observed loss (log-spaced steps from the
    warmup's end to the last step)."""
    lr = make(spec)
    if not np.all(np.isfinite(lr)):
        raise CurveError(f"--predict {spec!r}: the schedule has non-finite learning rates")
    start = max(1, int(np.argmax(lr)))  # from the end of the warmup, where the laws hold
    steps = np.unique(np.geomspace(start + 1, lr.size, PREDICT_POINTS).round().astype(int) - 1)
    return Curve(spec, lr, steps, np.full(steps.size, np.nan), f"--predict {spec}")


def tissue_window(cset: CurveSet, config: FitConfig) -> float:
    """Tissue's momentum window on these curves as a fraction of each curve's steps (0: the
    fixed ``curve_decay``): ``curve_decay_window`` on a run store, 0 for curve files. The
    paper's 0.999 (a 1000-step window) fits its runs of 10^4-10^5 steps; a cooldown of a few
    hundred steps would build up a fraction of that momentum by the end of the run, so the
    annealing term would barely move where our runs are scored."""
    window = config.curve_decay_window
    if window is None or not cset.curves or not _is_store(cset):
        return 0.0
    return float(window)


def _is_store(cset: CurveSet) -> bool:
    """Whether the curves are runs of a run store (their source is a run folder)."""
    return Path(cset.curves[0].source).is_dir()


def _law(config: FitConfig, curves: Sequence[Curve], window: float) -> CurveLaw:
    if config.law == "tissue":
        return CURVE_LAWS["tissue"](curves, decay=config.curve_decay, decay_window=window)
    return CURVE_LAWS[config.law](curves, warmup_drop=config.curve_warmup_drop)


def _starts(law: CurveLaw, config: FitConfig) -> np.ndarray | None:
    full = law.start_grid()
    if config.grid is None or config.grid >= len(full):
        return None
    return full[np.random.default_rng(config.seed).choice(len(full), config.grid, replace=False)]


@dataclass(frozen=True)
class _Bound:
    """A curve law bound to the observed and the --predict curves, with each curve's size."""

    law: CurveLaw | JointLaw
    predicted: list[Curve]
    labels: list[str] | None = None  # size label of every curve (joint laws)


def _bind(cset: CurveSet, config: FitConfig) -> _Bound:
    """The law of ``config`` over the source's curves and the --predict schedules (a joint
    law: each schedule at every size); refuses curves without a model size before fitting."""
    observed = cset.curves
    if config.law not in JOINT_LAWS:
        predicted = [predicted_curve(spec, cset.make) for spec in config.predict]
        law = _law(config, [*observed, *predicted], tissue_window(cset, config))
        return _Bound(law, predicted)
    sizes = cset.sizes or [None] * len(observed)
    unknown = [c for c, n in zip(observed, sizes) if n is None]
    if unknown:
        c = unknown[0]
        raise CurveError(
            f"curve {c.name!r} ({c.source or 'no source'}) has no model size N; --law "
            f"{config.law} needs one per curve: fit a run store, or put each size's curve files "
            f"in a folder named by the size (e.g. 25M/cosine.csv)"
        )
    labels = list(cset.size_labels or [f"{n:g}" for n in sizes])
    tps = list(cset.tokens_per_step or [1.0] * len(observed))
    by_size = {n: (label, t) for n, label, t in zip(sizes, labels, tps)}
    predicted, p_sizes, p_labels, p_tps = [], [], [], []
    for spec in config.predict:
        for n, (label, t) in sorted(by_size.items()):
            predicted.append(replace(predicted_curve(spec, cset.make), name=f"{spec}@{label}"))
            p_sizes.append(n), p_labels.append(label), p_tps.append(t)
    law = JOINT_LAWS[config.law](
        [*observed, *predicted],
        [*sizes, *p_sizes],
        tokens_per_step=[*tps, *p_tps],
        warmup_drop=config.curve_warmup_drop,
    )
    return _Bound(law, predicted, [*labels, *p_labels])


def _joint_start(law: JointLaw, train: pd.DataFrame, config: FitConfig) -> np.ndarray:
    """Starts of a joint fit: per-size multi-power fits of the fitted curves mapped onto the
    joint parameters (``curve_joint.start_from_sizes``), then the form's grid."""
    size_of = np.array(law.sizes)[train["curve"].to_numpy(int) - 1]
    fitted = np.unique(size_of)
    if fitted.size < 2:
        raise CurveError(
            f"--law {law.name}: the fitted curves (not held out) have {fitted.size} model size(s) "
            f"{[float(n) for n in fitted]}; a joint law needs at least 2"
        )
    per_size = {}
    for n in fitted:
        rows = train[size_of == n].reset_index(drop=True)
        res = fit(
            law.base, rows, starts=_starts(law.base, config), delta=config.huber_delta,
            asymmetry=config.asymmetry,
        )  # fmt: skip
        per_size[float(n)] = res.theta
    # the form's own grid too: a size whose fit ran off along a flat direction can mislead
    return np.vstack([start_from_sizes(law, per_size), law.start_grid()])


def _size_params(
    bound: _Bound, theta: np.ndarray, boot: np.ndarray | None, ci: float
) -> dict[str, Estimate]:
    """Per size: the MPL coefficients L0, A, B a joint fit gives it (``L0@25M``, ...)."""
    law = bound.law
    if not isinstance(law, JointLaw):
        return {}
    label_of = dict(zip(law.sizes, bound.labels or []))
    best = law.size_params(theta)
    draws = law.size_params(boot) if boot is not None else {}
    out = {}
    for n, params in best.items():
        for name in ("L0", "A", "B"):
            ci_ = interval(draws[n][name], ci) if boot is not None else None
            out[f"{name}@{label_of[n]}"] = Estimate(float(params[name][0]), ci_)
    return out


def fit_curves(cset: CurveSet, config: FitConfig) -> tuple[CurvesResult, pd.DataFrame]:
    """Fit the curve law of ``config`` to the curves not held out; scores and predictions."""
    observed = cset.curves
    table = curve_table(observed)  # refuses a curve with fewer than 2 logged losses
    held = held_out_rows(table, config.held_out_curves)
    bound = _bind(cset, config)
    law, predicted = bound.law, bound.predicted
    train = table[~held].reset_index(drop=True)
    starts = _joint_start(law, train, config) if isinstance(law, JointLaw) else _starts(law, config)
    result = fit(
        law, train, starts=starts, delta=config.huber_delta, asymmetry=config.asymmetry,
    )  # fmt: skip
    boot = None
    if config.bootstrap:
        groups = block_groups(train, config.curve_block)
        boot = bootstrap(result, train, n=config.bootstrap, seed=config.seed, groups=groups)
    lf = law_fit_from(result, boot, config.ci)
    scores = per_curve(law, result.theta, table, config.held_out_curves)
    out = CurvesResult(
        law=config.law,
        formula=law.formula,
        params={**lf.params, **_size_params(bound, result.theta, boot, config.ci)},
        per_curve={name: CurveScore(**s) for name, s in scores.items()},
        loss=config.curve_loss if _is_store(cset) else "loss",
        objective=lf.objective,
        n_starts=lf.n_starts,
        n_best=lf.n_best,
        n_points=lf.n_points,
        bootstrap_block=config.curve_block,
        # a lambda per curve (a run store's window) is in the formula instead
        decay=config.curve_decay if config.law == "tissue" and not law.decay_window else None,
    )
    rows = _observed_rows(law, result, table, held)
    for i, curve in enumerate(predicted, start=len(observed) + 1):
        final, pred = _prediction(law, result, boot, i, curve, config.ci)
        out.predictions.append(CurvePrediction(curve.name, int(curve.lr.size), final))
        rows.append(pred)
    return out, pd.concat(rows, ignore_index=True)


def _observed_rows(
    law: CurveLaw, result: FitResult, table: pd.DataFrame, held: np.ndarray
) -> list[pd.DataFrame]:
    """curves.csv rows of the observed curves, with their prediction."""
    lr = np.concatenate([law.curves[i - 1].lr[s] for i, s in _by_curve(table)])
    return [
        pd.DataFrame(
            {
                "curve": table["name"],
                "kind": np.where(held, "held_out", "fitted"),
                "step": table["step"],
                "lr": lr,
                "loss": table["loss"],
                "predicted": result.predict(table),
            }
        )
    ]


def _by_curve(table: pd.DataFrame) -> list[tuple[int, np.ndarray]]:
    """(curve index, its steps) in table order (curve_table writes each curve's rows together)."""
    return [(int(i), g["step"].to_numpy()) for i, g in table.groupby("curve", sort=False)]


def _prediction(
    law: CurveLaw, result: FitResult, boot: np.ndarray | None, index: int, curve: Curve, ci: float
) -> tuple[Estimate, pd.DataFrame]:
    """The final loss (with its bootstrap interval) and the curves.csv rows of one --predict."""
    cols = {"curve": np.full(curve.steps.size, float(index)), "step": curve.steps.astype(float)}
    pred = result.predict(cols)
    final = Estimate(float(pred[-1]))
    if boot is not None:
        last = {k: v[-1:] for k, v in cols.items()}
        final.ci = interval(law.predict(boot, last)[:, 0], ci)
    rows = pd.DataFrame(
        {
            "curve": curve.name,
            "kind": "predicted",
            "step": curve.steps,
            "lr": curve.lr[curve.steps],
            "loss": np.nan,
            "predicted": pred,
        }
    )
    return final, rows


def run_curve_fit(
    sources: Sequence[str], out_dir: str | Path, config: FitConfig
) -> tuple[FitReport, pd.DataFrame]:
    """Curves of ``sources`` fitted by the curve law of ``config``: the report and curves.csv
    table (the caller writes them)."""
    cset = load_curves(sources, config)
    curves, table = fit_curves(cset, config)
    n_held = sum(s.held_out for s in curves.per_curve.values())
    report = FitReport(
        source=", ".join(str(s) for s in sources),
        config=config,
        convention=config.convention,
        k=math.nan,
        n_runs=len(cset.curves),
        n_fitted=len(cset.curves) - n_held,
        excluded=[],
        heldout_runs=list(config.held_out_curves),
        bootstrap=Bootstrap(n=config.bootstrap, seed=config.seed, ci=config.ci),
        targets=[],
        curves=curves,
        warnings=list(cset.warnings),
    )
    return report, table
