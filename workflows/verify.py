"""`scaling-verify`: close the loop on a fit by training the run it predicts.

From a results folder (``fit.json`` of `scaling-fit`, its ``runs.csv``) and a target compute C
beyond the fitted budgets: choose the compute-optimal run as `scaling-suggest` does (the nearest
family size or a new shape, D = C / (k N), the fitted runs' batch size, data, optimiser and
schedule, or batch size and LR from ``hparams.json``), predict its final loss at the chosen
(N, D) with a 90% interval and print it, train it through the real trainer (one Hydra
multirun over the seeds in a child process, so any launcher can run them), and record predicted
against observed loss as fit.json's ``verification`` section, in report.md and on the parity
figure.

The interval. Approach 3: the loss law's bootstrap, refitted from the fit's own runs with the
stored `FitConfig` (the same resamples and seed, so the same intervals fit.json reports; a few
seconds), each resample's law evaluated at (N, D): an interval for the expected loss of that
run, not for one noisy run. Approaches
2 and 1 have no law of (N, D): their compute-optimal losses (approach 2's IsoFLOP minima, approach
1's envelope minima) are fitted as a power law in C and the run is taken to sit at the optimum;
the interval is that line's Student-t confidence interval (n - 2 degrees of freedom) at the
trained C. Envelope minima are neighbours on one curve, so approach 1's interval is too narrow.

The judgement. One seed measures no noise: the observed loss is judged against the bare
interval. With k >= 2 seeds the observed mean carries seed noise of standard error
s / sqrt(k) (s: the seeds' standard deviation); each half of the interval is widened in
quadrature by z s / sqrt(k), z the normal quantile of the interval's coverage (1.645 for 90%),
and the mean is judged against that.

Every check that can fail fails before anything is trained: a missing or corrupt fit.json, a
fit without the approach the method needs, a compute no family size fits or that gives fewer
than MIN_STEPS optimiser steps. A target inside the fitted compute range is warned about (it is
no extrapolation) and still trained. A rerun reuses the finished runs (the trainer skips a
completed run of the same config).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from scipy import stats

from analysis.cli import collect_for, fit_parametric, select
from analysis.collect import CollectError
from analysis.fit import FitError, interval
from analysis.hparams import HparamsError, HparamsReport
from analysis.report import fmt_ci, markdown_report
from analysis.results import (
    Estimate,
    FitReport,
    FitReportError,
    LawFit,
    Verification,
    VerificationRun,
)
from contract import SummaryError, read_summary
from scaling.config import ModelConfig, TrainConfig, check_name
from scaling.family import SIZES
from workflows.suggest import (
    METHODS,
    ModelChoice,
    SuggestError,
    allocation_of,
    choose_model,
)

MIN_STEPS = 50
"""Fewest optimiser steps of a verification run (as the demo sweep's sweep.min_steps): fewer
are mostly warmup and say nothing about the law."""
SIZE_TOLERANCE = 1.25
"""Use the nearest named size when within this factor of N_opt, else a new shape."""
# Config keys copied from the fitted runs: everything that shapes the loss except the model's
# shape, the budget and the seed. The trainer and logger belong to the machine, not the law.
COPIED = ("data", "optim", "schedule", "model", "train")
NOT_COPIED = {
    "model.name", "model.n_layer", "model.n_head", "model.d_model", "model.d_ff",
    "train.tokens", "train.flops", "train.steps", "train.seed", "train.resume",
    "train.init_from", "train.checkpoint_steps", "train.tasks_path", "schedule.wsd_total_steps",
}  # fmt: skip


class VerifyError(ValueError):
    """The verification cannot run as asked (bad fit, method, compute or seeds)."""


@dataclass
class TrainedRun:
    """One trained (or reused) seed: what the trainer recorded."""

    run: str
    """Run name."""
    path: Path
    """Run folder."""
    seed: int
    """train.seed."""
    loss: float
    """Final validation loss."""
    lr: float
    """Peak LR it trained with."""
    N: int | None = None
    """Non-embedding parameters it trained (None: not recorded, e.g. a fake trainer)."""
    D: int | None = None
    """Tokens it trained."""


@dataclass
class Plan:
    """What will be trained and what the fit predicts for it, decided before any training."""

    method: str
    """approach3, approach2 or approach1."""
    C: float
    """Target compute."""
    model: ModelChoice
    """The model that trains it."""
    D: int
    """Training tokens."""
    steps: int
    """Optimiser steps."""
    batch_size: int
    """Sequences per step."""
    seq_len: int
    """Tokens per sequence."""
    C_trained: float
    """k N D of the run."""
    extrapolation: float
    """C over the largest fitted C (NaN when unknown)."""
    lr: float | None
    """Peak LR from hparams.json, None: the fitted runs' optimiser settings decide it."""
    lr_note: str
    """Where the LR comes from."""
    predicted: Estimate
    """Predicted final loss with its interval."""
    interval: str
    """How the interval was made."""
    ci: float
    """Coverage of the interval."""
    overrides: list[str]
    """scaling-train overrides shared by every seed (the model, budget, copied settings)."""
    seeds: list[int]
    """train.seed of each run."""
    run_base: str
    """Run name without the seed."""
    names: list[str]
    """Run name of each seed."""
    notes: list[str] = field(default_factory=list)
    """What the reader must know."""


def _hydra_value(v: object) -> str:
    """A config value as Hydra override text (strings quoted, so any character is safe)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ",".join(_hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(x)}" for k, x in v.items()) + "}"
    text = str(v).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _flatten(node: dict, prefix: str) -> list[tuple[str, object]]:
    out = []
    for key, v in node.items():
        name = f"{prefix}.{key}"
        # dict-valued settings (optim.lr_table) are one value; sub-configs (data.markov) recurse
        if isinstance(v, dict) and name != "optim.lr_table":
            out += _flatten(v, name)
        else:
            out.append((name, v))
    return out


def fitted_runs(results: Path) -> pd.DataFrame | None:
    """The fitted runs of runs.csv (not excluded, not held out); None without runs.csv."""
    path = results / "runs.csv"
    if not path.is_file():
        return None
    runs = pd.read_csv(path, dtype={"exclusion_reason": str}, keep_default_na=False)
    usable = runs["exclusion_reason"] == "" if "exclusion_reason" in runs else True
    held = (
        runs["heldout"].astype(str).str.lower().isin(["true", "1"]) if "heldout" in runs else False
    )
    runs = runs[usable & ~held]
    return runs.assign(C=pd.to_numeric(runs["C"], errors="coerce"))


def reference_config(source: str, runs: pd.DataFrame | None) -> tuple[dict | None, str | None]:
    """The config.yaml of the largest fitted run in the fit's run store, and its run name."""
    root = Path(source)
    if runs is None or runs.empty or not root.is_dir():
        return None, None
    for name in runs.sort_values("C", ascending=False)["run"].astype(str):
        found = sorted(p for p in root.rglob("config.yaml") if p.parent.name == name)
        if found:
            return OmegaConf.to_container(OmegaConf.load(found[0]), resolve=True), name
    return None, None


def copied_overrides(cfg: dict) -> list[str]:
    """scaling-train overrides that reproduce a run's data, optimiser, schedule and model
    settings (not its shape, budget or seed)."""
    out = []
    for section in COPIED:
        for key, v in _flatten(cfg.get(section) or {}, section):
            if key not in NOT_COPIED:
                # Hydra refuses to replace a dict by a non-empty one unless forced (++)
                force = "++" if isinstance(v, dict) else ""
                out.append(f"{force}{key}={_hydra_value(v)}")
    return out


def _approach3_prediction(
    report: FitReport, law: LawFit, n: int, d: int, log: Callable[[str], None]
) -> tuple[Estimate, str, list[str]]:
    """Approach 3's loss at (N, D) and its bootstrap interval, refitted from the fit's runs."""
    config = report.config
    value = float(law.predict({"N": [n], "D": [d]})[0])
    pct = round(100 * config.ci)
    if not config.bootstrap:
        return Estimate(value), "none: the fit has no bootstrap (--bootstrap 0)", []
    log(f"refitting approach 3's {config.bootstrap} bootstrap resamples from {report.source} ...")
    try:
        collected = collect_for(report.source, config)
        result, boot = fit_parametric(select(collected, config), config)
    except (CollectError, FitError) as err:
        raise VerifyError(
            f"cannot refit the bootstrap of {report.source} (the fit's runs) for the predicted "
            f"interval: {err}"
        ) from None
    notes = []
    refit = float(result.predict({"N": [n], "D": [d]})[0])
    if not math.isclose(refit, value, rel_tol=1e-3):
        notes.append(
            f"the runs of {report.source} refit to a loss {refit:.4f} at (N, D), not the "
            f"stored {value:.4f}: they changed since the fit; rerun scaling-fit"
        )
    samples = law.registry_law.predict(boot, {"N": np.array([n]), "D": np.array([d])})[:, 0]
    how = (
        f"{pct}% percentile interval of approach 3's law at (N, D) over its {len(boot)} "
        f"bootstrap refits (runs resampled, seed {config.seed})"
    )
    return Estimate(value, interval(samples, config.ci)), how, notes


def _minima_prediction(report: FitReport, method: str, c: float) -> tuple[Estimate, str]:
    """Loss at compute c from a power law through approach 2's or 1's compute-optimal losses."""
    if method == "approach2":
        pts = [(b.C, b.loss_opt) for b in report.approach2.budgets if not b.edge]
        what = "IsoFLOP minima"
    else:
        pts = [(p.C, p.loss) for p in report.approach1.points]
        what = "envelope minima"
    pts = [(x, y) for x, y in pts if x > 0 and y > 0 and math.isfinite(x * y)]
    if len(pts) < 2:
        return Estimate(math.nan), f"none: {method} has {len(pts)} usable {what}"
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    slope, icpt = np.polyfit(x, y, 1)
    x0 = math.log(c)
    value = math.exp(icpt + slope * x0)
    if len(pts) < 3:
        return Estimate(value), f"none: a line through {len(pts)} {what} has no residual"
    ci = report.config.ci
    resid = y - (icpt + slope * x)
    s = math.sqrt(float(resid @ resid) / (len(x) - 2))
    se = s * math.sqrt(1 / len(x) + (x0 - x.mean()) ** 2 / float(((x - x.mean()) ** 2).sum()))
    t = float(stats.t.ppf((1 + ci) / 2, len(x) - 2))
    how = (
        f"{round(100 * ci)}% Student-t interval (n - 2 = {len(x) - 2} dof) of a power law in C "
        f"through {method}'s {len(pts)} {what}, the run taken at the optimum"
    )
    lo, hi = (math.exp(icpt + slope * x0 + sign * t * se) for sign in (-1, 1))
    return Estimate(value, [lo, hi]), how


def merged(*groups: Sequence[str]) -> list[str]:
    """Overrides in order, a later ``key=value`` (or ``+key``, ``++key``) replacing an earlier
    one of the same key (Hydra refuses a key given twice)."""
    out: dict[str, str] = {}
    for group in groups:
        for item in group:
            key = item.split("=", 1)[0].lstrip("+~") if "=" in item else item
            out.pop(key, None)
            out[key] = item
    return list(out.values())


def _folder(results: str | Path) -> Path:
    """The results folder (given as the folder or as its fit.json)."""
    results = Path(results)
    return results.parent if results.is_file() else results


def _run_base(model: ModelChoice, c: float) -> str:
    """The run name without its seed: "{size}-C{compute}"."""
    return f"{model.name}-C{c:.3g}".replace("+", "")


def plan(
    results: Path,
    runs: str | Path,
    compute: float,
    *,
    method: str = "auto",
    seeds: int = 1,
    experiment: str = "verify",
    overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Plan:
    """Everything decided before training: the run, its settings and the predicted loss."""
    if not (isinstance(compute, int | float) and math.isfinite(compute) and compute > 0):
        raise VerifyError(f"--compute {compute!r} must be a finite number of FLOPs > 0")
    if method not in METHODS:
        raise VerifyError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    if not seeds >= 1:
        raise VerifyError(f"--seeds {seeds} must be >= 1")
    try:
        check_name("--experiment", experiment)
    except ValueError as err:
        raise VerifyError(str(err)) from None
    results = _folder(results)
    try:
        report = FitReport.load(results)
    except FitReportError as err:
        raise VerifyError(f"{err}; give a results folder written by scaling-fit") from None
    try:
        name, alloc, law = allocation_of(report, method)
    except SuggestError as err:
        raise VerifyError(f"--method {method}: {err}") from None
    notes: list[str] = []
    fitted = fitted_runs(results)
    c_max = float(fitted["C"].max()) if fitted is not None and len(fitted) else math.nan
    if math.isnan(c_max):
        notes.append(f"{results / 'runs.csv'} is missing: not checked to be an extrapolation")
    elif compute <= c_max:
        notes.append(
            f"C = {compute:.4g} lies inside the fitted compute range (largest fitted run: "
            f"{c_max:.4g}): not an extrapolation"
        )
        log(f"scaling-verify: warning: {notes[-1]}")
    source, target = Path(report.source).resolve(), (Path(runs) / experiment).resolve()
    if source.is_dir() and target.is_relative_to(source):
        notes.append(
            f"the verification runs land in {target}, inside the fit's source {report.source}: "
            "a refit would fit them; give another --runs or --experiment"
        )
        log(f"scaling-verify: warning: {notes[-1]}")
    cfg, ref = reference_config(report.source, fitted)
    shared = copied_overrides(cfg) if cfg is not None else []
    if cfg is None:
        notes.append(
            f"no config.yaml of the fitted runs under {report.source}: data, batch size, "
            "optimiser and schedule are scaling-train's defaults"
        )
        cfg = {}
    seq_len = int((cfg.get("model") or {}).get("seq_len") or ModelConfig.seq_len)
    batch = int((cfg.get("train") or {}).get("batch_size") or TrainConfig.batch_size)
    n_opt = float(alloc.n_opt(compute))
    try:
        model = choose_model(n_opt, SIZE_TOLERANCE, seq_len)
    except SuggestError as err:
        raise VerifyError(f"--compute {compute:.4g}: {err}") from None
    if round(n_opt) != model.N:
        notes.append(f"N = {model.N:,} ({model.name}) trains N_opt = {n_opt:.4g}")
    d_ideal = compute / (report.k * model.N)
    lr, lr_note = None, f"the fitted runs' optimiser settings (of {ref})"
    if ref is None:
        lr_note = "scaling-train's default optim.lr"
    hp_path = results / "hparams.json"
    if hp_path.is_file():
        try:
            hp = HparamsReport.load(hp_path)
        except HparamsError as err:
            raise VerifyError(str(err)) from None
        batch = max(1, round(hp.laws["B_D"].predict(D=d_ideal) / seq_len))
        lr = float(hp.laws["lr_ND"].predict(N=model.N, D=d_ideal))
        lr_note = f"lr*(N, D) of {hp_path}"
    steps = round(d_ideal / (batch * seq_len))
    if steps < MIN_STEPS:
        raise VerifyError(
            f"--compute {compute:.4g} gives {model.name} (N = {model.N:,}) only {steps} optimiser "
            f"steps of {batch} x {seq_len} tokens, fewer than {MIN_STEPS}; ask for a larger "
            "compute"
        )
    d = steps * batch * seq_len
    c_trained = report.k * model.N * d
    if name == "approach3":
        predicted, how, more = _approach3_prediction(report, law, model.N, d, log)
        notes += more
    else:
        predicted, how = _minima_prediction(report, name, c_trained)
    shared += model_overrides(model)
    shared += [f"train.tokens={d}", f"train.batch_size={batch}"]
    if lr is not None:
        shared += [f"optim.lr={lr:.6g}", "++optim.lr_table={}", "optim.lr_rule_exponent=null"]
    seed0 = int((cfg.get("train") or {}).get("seed") or 0)
    seed_list = [seed0 + i for i in range(seeds)]
    return Plan(
        method=name,
        C=float(compute),
        model=model,
        D=d,
        steps=steps,
        batch_size=batch,
        seq_len=seq_len,
        C_trained=c_trained,
        extrapolation=compute / c_max,
        lr=lr,
        lr_note=lr_note,
        predicted=predicted,
        interval=how,
        ci=report.config.ci,
        overrides=merged(shared, [f"experiment={experiment}", f"runs_dir={runs}"], overrides),
        seeds=seed_list,
        run_base=_run_base(model, compute),
        names=[f"{_run_base(model, compute)}-seed{s}" for s in seed_list],
        notes=notes,
    )


def model_overrides(m: ModelChoice) -> list[str]:
    """The model=... overrides of a family size or a new shape."""
    if m.family:
        return [f"model={m.name}"]
    return [
        f"model={next(iter(SIZES))}",
        f"model.name={m.name}",
        f"model.n_layer={m.n_layer}",
        f"model.n_head={m.n_head}",
        f"model.d_model={m.d_model}",
    ]


def plan_text(p: Plan) -> str:
    """The prediction, printed before training."""
    m = p.model
    kind = "family size" if m.family else "new shape from the shape rule"
    ratio = "" if math.isnan(p.extrapolation) else f" ({p.extrapolation:.3g}x the largest fitted C)"
    lines = [
        f"verification of {p.method} at C = {p.C:.4g}{ratio}",
        f"  model: {m.name} ({kind}: n_layer={m.n_layer}, n_head={m.n_head}, "
        f"d_model={m.d_model}, N={m.N:,})",
        f"  D = {p.D:,} tokens ({p.D / m.N:.3g} per parameter), {p.steps:,} steps x "
        f"{p.batch_size} x {p.seq_len}, C = {p.C_trained:.4g}",
        f"  peak LR: {p.lr_note}" + ("" if p.lr is None else f" = {p.lr:.4g}"),
        f"  PREDICTED final loss: {p.predicted.value:.4f} {fmt_ci(p.predicted.ci)}".rstrip(),
        f"  interval: {p.interval}",
        f"  seeds: {', '.join(map(str, p.seeds))} -> runs {', '.join(p.names)}",
        *(f"  note: {n}" for n in p.notes),
    ]
    return "\n".join(lines)


def run_training(p: Plan, log: Callable[[str], None]) -> list[TrainedRun]:
    """Train (or reuse) every seed of the plan with the real trainer: one Hydra multirun in a
    child process over train.seed, so any launcher runs them (``hydra/launcher=local``: two in
    parallel); the trainer skips a completed run of the same config. Their records."""
    seeds = ",".join(map(str, p.seeds))
    # ${train.seed} is resolved per job: each seed gets its own run folder
    args = merged(
        [f"run_name={p.run_base}-seed${{train.seed}}", f"train.seed={seeds}"], p.overrides
    )
    log(" ".join(["scaling-train", "-m", *args]))
    cmd = [sys.executable, "-m", "scaling.train", "-m", *args]
    code = subprocess.run(cmd, check=False).returncode
    kv = dict(a.split("=", 1) for a in args if "=" in a)
    out = []
    for name, seed in zip(p.names, p.seeds):
        path = Path(kv["runs_dir"]) / kv["experiment"] / name
        try:
            summary = read_summary(path / "summary.json")
        except SummaryError as err:
            raise VerifyError(f"verification run {path} left no readable record: {err}") from None
        if summary is None or summary.final_val_loss is None:
            state = "no summary.json" if summary is None else summary.status.value
            why = "" if summary is None or not summary.error else f": {summary.error}"
            raise VerifyError(
                f"verification run {path} did not complete (scaling-train exit {code}, "
                f"{state}{why}); a rerun resumes it"
            )
        loss, lr = float(summary.final_val_loss), float(summary.lr)
        out.append(TrainedRun(name, path, seed, loss, lr, int(summary.N), int(summary.D)))
    return out


def judge(p: Plan, trained: Sequence[TrainedRun]) -> Verification:
    """Predicted against observed: the seeds' mean, spread and the widened interval."""
    losses = np.array([t.loss for t in trained], float)
    mean = float(losses.mean())
    std = float(losses.std(ddof=1)) if len(losses) > 1 else math.nan
    pred, ci = p.predicted.value, p.predicted.ci
    judged, inside = None, None
    if ci is not None and all(math.isfinite(v) for v in ci):
        z = float(stats.norm.ppf((1 + p.ci) / 2))
        noise = 0.0 if math.isnan(std) else z * std / math.sqrt(len(losses))
        judged = [pred - math.hypot(pred - ci[0], noise), pred + math.hypot(ci[1] - pred, noise)]
        inside = judged[0] <= mean <= judged[1]
    notes = list(p.notes)
    if len(losses) == 1:
        notes.append("one seed: seed noise not measured, judged against the bare interval")
    for t in trained:
        # the copied model settings (an MLP kind, tied embeddings) could change N from the
        # family's count the prediction used: say so rather than compare unlike runs silently
        if (t.N, t.D) != (p.model.N, p.D) and t.N is not None:
            notes.append(
                f"{t.run} trained N = {t.N:,}, D = {t.D:,}, not the predicted N = "
                f"{p.model.N:,}, D = {p.D:,}"
            )
    lrs = {t.lr for t in trained}
    return Verification(
        method=p.method,
        C=p.C,
        C_trained=p.C_trained,
        extrapolation=p.extrapolation,
        model=p.model.name,
        family=p.model.family,
        N=p.model.N,
        D=p.D,
        steps=p.steps,
        batch_size=p.batch_size,
        seq_len=p.seq_len,
        lr=lrs.pop() if len(lrs) == 1 else math.nan,
        predicted=p.predicted,
        interval=p.interval,
        observed=mean,
        seed_std=std,
        seed_range=[float(losses.min()), float(losses.max())],
        judged_interval=judged,
        rel_error=(pred - mean) / mean,
        inside_interval=inside,
        runs=[VerificationRun(t.run, str(t.path), t.seed, t.loss) for t in trained],
        notes=notes,
    )


def result_text(v: Verification) -> str:
    """The outcome, one block for a terminal."""
    spread = (
        ""
        if math.isnan(v.seed_std)
        else f" (seed std {v.seed_std:.4f}, range {fmt_ci(v.seed_range)})"
    )
    verdict = {None: "no interval to judge", True: "INSIDE", False: "OUTSIDE"}[v.inside_interval]
    judged = "" if v.judged_interval is None else f" {fmt_ci(v.judged_interval)}"
    return "\n".join(
        [
            f"verification: predicted {v.predicted.value:.4f} {fmt_ci(v.predicted.ci)}, observed "
            f"{v.observed:.4f}{spread} over {len(v.runs)} seed(s)",
            f"  relative error (pred. - obs.) / obs. = {v.rel_error:+.2%}; {verdict} the judged "
            f"interval{judged}",
        ]
    )


def record(results: Path, v: Verification) -> FitReport:
    """Write the verification into fit.json and report.md (and the parity figure, if drawn)."""
    report = FitReport.load(results)
    report.verification = v
    report.save(results / "fit.json")
    (results / "report.md").write_text(markdown_report(report))
    if (results / "figures").is_dir() and (results / "runs.csv").is_file():
        # matplotlib takes ~1 s to import: only when there are figures to redraw
        from analysis.plots import plot_all

        plot_all(results, only=["parity"])
    return report


def verify(
    results: Path,
    runs: str | Path,
    compute: float,
    *,
    method: str = "auto",
    seeds: int = 1,
    experiment: str = "verify",
    overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Verification:
    """Predict the compute-optimal run at ``compute``, train it (``seeds`` seeds) and record
    predicted against observed loss in ``results`` (see the module docstring)."""
    results = _folder(results)
    p = plan(
        results,
        runs,
        compute,
        method=method,
        seeds=seeds,
        experiment=experiment,
        overrides=overrides,
        log=log,
    )
    log(plan_text(p))
    trained = run_training(p, log)
    v = judge(p, trained)
    record(results, v)
    log(result_text(v))
    return v


def parser() -> argparse.ArgumentParser:
    """The command line of scaling-verify."""
    p = argparse.ArgumentParser(
        prog="scaling-verify",
        description="Verify a fit by a run it predicted: choose the compute-optimal run at a "
        "target compute beyond the fitted budgets, print its predicted loss with the 90%% "
        "interval, train it (k seeds) and record predicted against observed loss in fit.json, "
        "report.md and the parity figure.",
    )
    p.add_argument(
        "results",
        type=Path,
        help="results folder of scaling-fit (fit.json, runs.csv), or its fit.json",
    )
    p.add_argument("--runs", required=True, help="run store root the verification trains into")
    p.add_argument("--compute", required=True, type=float, help="target compute C (FLOPs)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="the allocation: approach 3, 2 or 1 (auto: the first usable of 3, 2, 1)",
    )
    p.add_argument(
        "--seeds", type=int, default=1, help="seeds to train (their spread is the noise)"
    )
    p.add_argument("--experiment", default="verify", help="run-store experiment (default verify)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for scaling-train")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`scaling-verify results/demo --runs runs --compute 1e13 [--seeds 3] [overrides]`."""
    p = parser()
    args = p.parse_args(argv)
    try:
        verify(
            args.results,
            args.runs,
            args.compute,
            method=args.method,
            seeds=args.seeds,
            experiment=args.experiment,
            overrides=args.overrides,
            log=lambda s: print(s, flush=True),
        )
    except VerifyError as err:
        print(f"scaling-verify: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
