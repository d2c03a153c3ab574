"""The fit result (``fit.json``) as typed dataclasses, written and read in one place.

A `FitReport` holds how the fit was made (its `FitConfig`, the runs fitted, excluded and held
out), one result per approach (`Approach1Result`, `Approach2Result`, `Approach3Result`), the
``--law`` fit (`LawFit`), the extrapolation check (`HoldoutCheck`), the fit of a law of
whole loss curves (`CurvesResult`) and the closed-loop check of a run the fit predicted before
it was trained (`Verification`, written by ``scaling-verify``). Every number with an
interval is an `Estimate`. Laws are named by their registry name (`analysis.laws.LAWS`), whose
``predict_natural`` and ``labels`` every reader uses. Non-finite numbers are stored as JSON null
and read back as NaN; a corrupt file or an unknown format version raises `FitReportError`
naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.fit import interval
from analysis.fitconfig import FitConfig
from analysis.laws import Law, get_law
from contract import atomic_write_text

FIT_FORMAT = 2
"""Version of the fit.json layout. 1 (no ``format`` key): the nested dict literal of the first
releases, not read any more; 2: `FitReport`."""


class FitReportError(ValueError):
    """A fit.json that cannot be read as a `FitReport` (corrupt, partial, other version)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read fit result {path}: {reason}")


@dataclass
class Estimate:
    """A fitted or derived number with its bootstrap percentile interval."""

    value: float
    """The estimate from all fitted runs (NaN where it is not defined)."""
    ci: list[float] | None = None
    """[low, high] percentile interval over the bootstrap resamples; None without bootstrap."""

    @property
    def finite(self) -> bool:
        """Whether the estimate is a finite number."""
        return math.isfinite(self.value)


@dataclass
class Allocation:
    """The compute-optimal power laws N_opt = N_coef C^a and D_opt = D_coef C^b."""

    a: Estimate
    """Exponent of N_opt(C)."""
    b: Estimate
    """Exponent of D_opt(C)."""
    N_coef: Estimate
    """Coefficient of N_opt(C)."""
    D_coef: Estimate
    """Coefficient of D_opt(C)."""

    def n_opt(self, c: np.ndarray | float) -> np.ndarray:
        """N_opt at compute ``c``."""
        return self.N_coef.value * np.asarray(c, float) ** self.a.value

    def d_opt(self, c: np.ndarray | float) -> np.ndarray:
        """D_opt at compute ``c``."""
        return self.D_coef.value * np.asarray(c, float) ** self.b.value

    @property
    def finite(self) -> bool:
        """Whether exponents and coefficients are all finite (a drawable power law)."""
        return all(e.finite for e in (self.a, self.b, self.N_coef, self.D_coef))


@dataclass
class Target:
    """The compute-optimal allocation predicted at one target compute."""

    C: float
    """The target compute (FLOPs, in the fit's convention)."""
    N_opt: Estimate
    """Compute-optimal parameters at C."""
    D_opt: Estimate
    """Compute-optimal training tokens at C."""
    tokens_per_param: Estimate
    """D_opt / N_opt."""
    loss: Estimate | None = None
    """Predicted loss at (N_opt, D_opt); approach 3 only."""


@dataclass
class Band:
    """Pointwise bootstrap intervals of N_opt(C) and D_opt(C) on a grid of C."""

    C: list[float]
    """Compute values: half the smallest run's C to twice the largest target, targets included."""
    N_opt_ci: list[list[float]]
    """[lows, highs] of N_opt at each C."""
    D_opt_ci: list[list[float]]
    """[lows, highs] of D_opt at each C."""


@dataclass
class EnvelopePoint:
    """One point of approach 1's lower envelope: the run with the lowest loss at compute C."""

    C: float
    """Compute (FLOPs)."""
    N_opt: float
    """Parameters of the run lowest at C."""
    D_opt: float
    """Its tokens at C."""
    loss: float
    """Its (interpolated) loss at C."""
    run: str
    """The run's name."""


@dataclass
class Envelope:
    """Approach 1's lower envelope on its grid of C: the lowest loss and its run at each C."""

    C: list[float]
    """Compute values of the grid where some fitted run's curve reaches."""
    loss: list[float]
    """The lowest (interpolated) loss of the fitted runs at each C."""
    run: list[str]
    """The run reaching that loss."""


@dataclass
class Approach1Result:
    """Approach 1: the lower envelope of the fitted runs' learning curves over C."""

    error: str | None = None
    """Why the approach could not be computed (then no numbers); None when it was."""
    allocation: Allocation | None = None
    """N_opt(C), D_opt(C) fitted to the envelope's minima."""
    points: list[EnvelopePoint] = field(default_factory=list)
    """The envelope minima the power laws were fitted to."""
    envelope: Envelope | None = None
    """The whole lower envelope, from the fitted runs only (what figures draw); None when only
    final points were given."""
    runs: list[str] = field(default_factory=list)
    """The runs whose curves formed the envelope (fitted runs only, never held out or excluded)."""
    targets: list[Target] = field(default_factory=list)
    """Predictions at the target computes."""
    band: Band | None = None
    """Pointwise intervals of N_opt(C), D_opt(C)."""
    n_degenerate: int = 0
    """Bootstrap resamples that gave no usable fit (counted, left out of the intervals)."""


@dataclass
class IsoflopBudget:
    """One IsoFLOP budget of approach 2: a parabola of loss against log10 N."""

    C: float
    """The budget (geometric mean of its runs' C)."""
    N_opt: float
    """Parameters at the parabola's minimum (NaN without an interior minimum)."""
    D_opt: float
    """Tokens at the minimum, C / (k N_opt)."""
    loss_opt: float
    """Loss at the minimum."""
    coeffs: list[float]
    """[c2, c1, c0] of loss = c2 x^2 + c1 x + c0, x = log10 N."""
    N_range: list[float]
    """Smallest and largest N of the budget's runs."""
    n_points: int
    """Runs in the budget."""
    edge: bool
    """The minimum is at or beyond the sampled sizes (the budget only bounds the optimum)."""
    runs: list[str] = field(default_factory=list)
    """The fitted runs of this budget."""
    heldout_runs: list[str] = field(default_factory=list)
    """Held-out runs whose C falls in this budget (drawn on its profile, not fitted)."""


@dataclass
class Approach2Result:
    """Approach 2: IsoFLOP parabolas per budget, power laws through their minima."""

    error: str | None = None
    """Why the approach could not be computed; None when it was."""
    allocation: Allocation | None = None
    """N_opt(C), D_opt(C) fitted to the budgets' minima."""
    budgets: list[IsoflopBudget] = field(default_factory=list)
    """Every budget with enough model sizes, edge ones included."""
    n_edge: int = 0
    """Budgets whose minimum is at the edge of the sampled sizes."""
    targets: list[Target] = field(default_factory=list)
    """Predictions at the target computes."""
    band: Band | None = None
    """Pointwise intervals of N_opt(C), D_opt(C)."""
    n_degenerate: int = 0
    """Bootstrap resamples that gave no usable fit (counted, left out of the intervals)."""


@dataclass
class LawFit:
    """One law of the registry fitted to the runs: parameters, intervals and the optimiser's run."""

    law: str
    """The law's registry name (analysis/laws.py): its formula, labels and prediction."""
    params: dict[str, Estimate]
    """Fitted parameters in natural units (E, A, alpha, ...), in the law's order."""
    objective: float
    """The best Huber objective reached."""
    n_starts: int
    """Starts of the multi-start optimiser."""
    n_best: int
    """Starts that reached the best objective (relative tolerance 1e-4)."""
    n_points: int
    """Runs fitted."""
    huber_delta: float
    """Huber delta on log loss."""
    asymmetry: float = 1.0
    """Weight of over-predictions (1: symmetric)."""
    derived: dict[str, Estimate] = field(default_factory=dict)
    """Quantities derived from the parameters (chinchilla: a, b, N_coef, D_coef)."""

    @property
    def registry_law(self) -> Law:
        """The law of the registry."""
        return get_law(self.law)

    def values(self) -> dict[str, float]:
        """The natural parameters' estimates by name."""
        return {name: est.value for name, est in self.params.items()}

    def predict(self, cols: typing.Mapping[str, np.ndarray]) -> np.ndarray:
        """Predicted loss at the data columns, by the law's own prediction."""
        return self.registry_law.predict_natural(self.values(), cols)


@dataclass
class Approach3Result:
    """Approach 3: the parametric Chinchilla fit, minimised under C = k N D."""

    error: str | None = None
    """Why the approach could not be computed; None when it was."""
    fit: LawFit | None = None
    """The chinchilla law fit; its ``derived`` holds a, b, N_coef, D_coef."""
    targets: list[Target] = field(default_factory=list)
    """Predictions at the target computes (with the loss there)."""
    band: Band | None = None
    """Pointwise intervals of N_opt(C), D_opt(C)."""
    n_degenerate: int = 0
    """Bootstrap resamples that gave no usable fit (counted, left out of the intervals)."""

    @property
    def allocation(self) -> Allocation | None:
        """N_opt(C), D_opt(C) of the fitted law (None without a fit)."""
        if self.fit is None or not self.fit.derived:
            return None
        return Allocation(**{k: self.fit.derived[k] for k in ("a", "b", "N_coef", "D_coef")})

    def implausible(self) -> str | None:
        """Why the fitted exponents are not a usable scaling law (alpha or beta <= 0, ...)."""
        if self.fit is None:
            return None
        p = self.fit.values()
        bad = [f"{n} = {v:.4g}" for n, v in p.items() if not math.isfinite(v)]
        bad += [f"{n} = {p[n]:.4g}" for n in ("alpha", "beta") if not p[n] > 0 and n not in bad]
        a = self.fit.derived.get("a")
        if not bad and a is not None and not 0 <= a.value <= 1:
            bad.append(f"a = beta/(alpha+beta) = {a.value:.4g} outside [0, 1]")
        if not bad:
            return None
        return (
            f"implausible approach-3 exponents: {', '.join(bad)}; the loss does not fall with "
            "both N and D, so N_opt(C) and D_opt(C) are undefined"
        )


@dataclass
class HoldoutRun:
    """One held-out run: observed against predicted final loss."""

    run: str
    """The run's name."""
    observed: float
    """Its final loss."""
    predicted: float
    """The fitted law's prediction."""
    rel_error: float
    """(predicted - observed) / observed."""


@dataclass
class HoldoutCheck:
    """The extrapolation check on the held-out runs."""

    rule: str
    """The hold-out rule as resolved (e.g. "largest C 20%: whole budgets, C >= 1e20, ...")."""
    runs: list[HoldoutRun] = field(default_factory=list)
    """Every held-out run."""
    mean_abs_rel_error: float = math.nan
    """Mean |relative error| over the held-out runs."""
    max_abs_rel_error: float = math.nan
    """Largest |relative error|."""
    error: str | None = None
    """Why the check could not be made (e.g. the rule selected no usable run)."""


@dataclass
class Exclusion:
    """A run left out of every fit."""

    run: str
    """The run's name."""
    status: str
    """Its status (completed, diverged, failed, corrupt, unfinished, ...)."""
    reason: str
    """Why it is excluded."""


@dataclass
class Bootstrap:
    """How the intervals were made."""

    n: int
    """Resamples of runs (0: no intervals)."""
    seed: int
    """Seed of the resamples."""
    ci: float
    """Interval coverage."""


@dataclass
class CurveScore:
    """How one loss curve's prediction meets its observed loss (the contract's four names)."""

    held_out: bool
    """Whether the curve was held out of the fit (predicted, never fitted)."""
    r2: float
    """R^2 of the predicted against the observed loss over the curve's logged steps."""
    mean_rel_err: float
    """Mean |predicted - observed| / observed over the curve's logged steps."""
    max_rel_err: float
    """Largest |predicted - observed| / observed over the curve's logged steps."""


@dataclass
class CurvePrediction:
    """The predicted loss of a schedule nobody trained (``scaling-fit --predict``)."""

    schedule: str
    """The schedule as the user described it, e.g. "cosine:24000" or "wsd:24000:0.2"."""
    total_steps: int
    """Optimiser steps of the schedule."""
    final_loss: Estimate
    """Predicted loss after the last step, with its bootstrap interval."""


@dataclass
class CurvesResult:
    """A law of the whole loss curve (``--law multipower`` or ``tissue``) fitted to curves."""

    law: str
    """The curve law: multipower (Luo et al. 2025) or tissue (Tissue et al. 2024)."""
    formula: str
    """The law's formula."""
    params: dict[str, Estimate]
    """Fitted parameters in natural units (L0, A, alpha, ...), with bootstrap intervals."""
    per_curve: dict[str, CurveScore]
    """Per curve (by name): held_out, r2, mean_rel_err, max_rel_err."""
    loss: str
    """The loss the curves follow: val_loss or train_loss of a run store, loss of a CSV."""
    objective: float
    """The best Huber objective reached."""
    n_starts: int
    """Starts of the multi-start optimiser."""
    n_best: int
    """Starts that reached the best objective."""
    n_points: int
    """Logged steps fitted (over the curves not held out)."""
    bootstrap_block: int
    """Consecutive logged steps of one curve resampled together by the bootstrap."""
    decay: float | None = None
    """Tissue's momentum factor lambda (None for the multi-power law)."""
    predictions: list[CurvePrediction] = field(default_factory=list)
    """Final losses of the --predict schedules (their curves are in curves.csv)."""


@dataclass
class VerificationRun:
    """One trained seed of a verification run."""

    run: str
    """The run's name (its folder name)."""
    path: str
    """The run folder."""
    seed: int
    """Its train.seed."""
    loss: float
    """Its final validation loss."""


@dataclass
class Verification:
    """A run predicted before it was trained (``scaling-verify``), against its observed loss.

    The run is the compute-optimal one at a target compute beyond the fitted budgets; the
    prediction and its interval are made and printed before it trains."""

    method: str
    """The allocation that chose the run: approach3, approach2 or approach1."""
    C: float
    """The target compute (FLOPs, the fit's convention)."""
    C_trained: float
    """Compute of the trained run, k N D (D rounded to whole optimiser steps)."""
    extrapolation: float
    """C over the largest fitted run's C (NaN when runs.csv is missing)."""
    model: str
    """The model's size name (a new shape is named by its nominal N)."""
    family: bool
    """Whether the model is a named family size (else a new shape of the shape rule)."""
    N: int
    """Non-embedding parameters of the trained model."""
    D: int
    """Training tokens: steps x batch_size x seq_len."""
    steps: int
    """Optimiser steps."""
    batch_size: int
    """Sequences per step."""
    seq_len: int
    """Tokens per sequence."""
    lr: float
    """Peak LR the run trained with (from its summary.json)."""
    predicted: Estimate
    """Predicted final loss at (N, D), printed before training, with its interval."""
    interval: str
    """How the predicted interval was made."""
    observed: float
    """Final validation loss, mean over the seeds."""
    seed_std: float
    """Standard deviation of the seeds' losses (ddof 1; NaN with one seed)."""
    seed_range: list[float]
    """[min, max] of the seeds' losses."""
    judged_interval: list[float] | None
    """The predicted interval widened by the seed noise of the mean (in quadrature, at the
    interval's coverage); the observed mean is judged against it; None without an interval."""
    rel_error: float
    """(predicted - observed) / observed."""
    inside_interval: bool | None
    """Whether the observed mean lies in judged_interval; None without an interval."""
    runs: list[VerificationRun] = field(default_factory=list)
    """Every seed trained."""
    notes: list[str] = field(default_factory=list)
    """What a reader must know (not an extrapolation, a rounded size, the LR's origin)."""


@dataclass
class FitReport:
    """Everything ``scaling-fit`` decided (fit.json): settings, runs, one result per approach."""

    source: str
    """What was collected: a run store, wandb:entity/project, W&B offline folder or CSV."""
    config: FitConfig
    """The resolved settings of the fit."""
    convention: str
    """FLOP convention of C."""
    k: float
    """The FLOP factor in C = k N D (median over runs)."""
    n_runs: int
    """Runs collected."""
    n_fitted: int
    """Runs fitted (not excluded, not held out)."""
    excluded: list[Exclusion]
    """Runs left out of every fit, with the reason."""
    heldout_runs: list[str]
    """Runs held out of the fit and predicted."""
    bootstrap: Bootstrap
    """Bootstrap settings of the intervals."""
    targets: list[float]
    """Target computes of the predictions."""
    approach1: Approach1Result | None = None
    """Approach 1 (None when not asked for)."""
    approach2: Approach2Result | None = None
    """Approach 2 (None when not asked for)."""
    approach3: Approach3Result | None = None
    """Approach 3 (None when not asked for)."""
    law_fit: LawFit | None = None
    """The fit of a --law other than chinchilla."""
    holdout: HoldoutCheck | None = None
    """The extrapolation check (None without a hold-out rule)."""
    curves: CurvesResult | None = None
    """The fit of a law of whole loss curves (None unless --law is a curve law)."""
    verification: Verification | None = None
    """A run predicted before it was trained, against its observed loss (``scaling-verify``;
    None until it runs; a refit drops it, and a rerun of scaling-verify reuses the trained run)."""
    warnings: list[str] = field(default_factory=list)
    """What a reader must know: implausible exponents, a hold-out rule that selected nothing."""
    format: int = FIT_FORMAT
    """Version of this layout."""

    def approaches(self) -> dict[int, Approach1Result | Approach2Result | Approach3Result]:
        """The computed approaches by number."""
        found = {1: self.approach1, 2: self.approach2, 3: self.approach3}
        return {i: ap for i, ap in found.items() if ap is not None}

    def parametric(self) -> LawFit | None:
        """The law fit the report tabulates: the --law fit, else approach 3's."""
        if self.law_fit is not None:
            return self.law_fit
        return self.approach3.fit if self.approach3 is not None else None

    def to_json(self) -> str:
        """fit.json text (NaN and inf as null)."""
        return json.dumps(to_plain(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path | str = "fit.json") -> FitReport:
        """Parse fit.json text; FitReportError naming ``path`` when it is not a FitReport."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise FitReportError(path, f"not JSON: {err}") from None
        if not isinstance(data, dict):
            raise FitReportError(path, f"expected an object, got {type(data).__name__}")
        version = data.get("format")
        if version != FIT_FORMAT:
            raise FitReportError(
                path,
                f"format {version!r} is not {FIT_FORMAT} (an older or newer scaling-fit wrote "
                "it); rerun scaling-fit to rewrite it",
            )
        try:
            return from_plain(cls, data, "")
        except (TypeError, ValueError, KeyError) as err:
            raise FitReportError(path, str(err)) from None

    def save(self, path: Path | str) -> Path:
        """Write fit.json atomically."""
        path = Path(path)
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: Path | str) -> FitReport:
        """Read a fit.json (or the fit.json of a results folder)."""
        path = Path(path)
        path = path / "fit.json" if path.is_dir() else path
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise FitReportError(path, f"{type(err).__name__}: {err}") from None
        return cls.from_json(text, path)


# ---- one codec for every dataclass above: plain JSON data <-> typed objects ----


def to_plain(obj: Any) -> Any:
    """Plain JSON data of a dataclass tree (non-finite floats -> None, numpy -> Python)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [to_plain(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def from_plain(tp: Any, data: Any, where: str) -> Any:
    """The typed value of JSON ``data`` for type ``tp``; errors name the key path ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return None if data is None else from_plain(inner[0], data, where)
    if dataclasses.is_dataclass(tp):
        return _dataclass_from_plain(tp, data, where)
    if origin is list:
        _expect(isinstance(data, list), where, "a list", data)
        return [from_plain(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        _expect(isinstance(data, dict), where, "an object", data)
        return {k: from_plain(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        _expect(data is None or _is_number(data), where, "a number", data)
        return math.nan if data is None else float(data)
    if tp is int:
        _expect(_is_number(data) and float(data).is_integer(), where, "an integer", data)
        return int(data)
    if tp is bool:
        _expect(isinstance(data, bool), where, "true or false", data)
        return data
    if tp is str:
        _expect(isinstance(data, str), where, "a string", data)
        return data
    return data


def _dataclass_from_plain(cls: type, data: Any, where: str) -> Any:
    _expect(isinstance(data, dict), where, f"a {cls.__name__} object", data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or 'top level'}: unknown keys {unknown} of {cls.__name__}")
    if cls is FitConfig:
        return FitConfig.load(overrides=data)
    kwargs = {k: from_plain(hints[k], v, f"{where}.{k}".lstrip(".")) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{where or 'top level'}: {cls.__name__} {err}") from None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _expect(ok: bool, where: str, what: str, data: Any) -> None:
    if not ok:
        raise ValueError(f"{where or 'top level'}: expected {what}, got {data!r:.60}")


# ---- typed results from what the fitter (analysis/fit.py, analysis/optimal.py) returns ----


def estimate(block: typing.Mapping[str, Any], name: str) -> Estimate:
    """``block[name]`` with its interval ``block[name + "_ci"]``."""
    ci = block.get(f"{name}_ci")
    return Estimate(float(block[name]), None if ci is None else [float(v) for v in ci])


def allocation_from(block: typing.Mapping[str, Any]) -> Allocation:
    """The a, b, N_coef, D_coef entries of an approach."""
    return Allocation(*(estimate(block, n) for n in ("a", "b", "N_coef", "D_coef")))


def targets_from(rows: list[typing.Mapping[str, Any]]) -> list[Target]:
    """Target predictions of an approach."""
    return [
        Target(
            C=float(r["C"]),
            N_opt=estimate(r, "N_opt"),
            D_opt=estimate(r, "D_opt"),
            tokens_per_param=estimate(r, "tokens_per_param"),
            loss=estimate(r, "loss") if "loss" in r else None,
        )
        for r in rows
    ]


def band_from(band: typing.Mapping[str, Any] | None) -> Band | None:
    """The pointwise interval band of an approach."""
    return None if band is None else from_plain(Band, dict(band), "band")


def approach1_from(block: typing.Mapping[str, Any]) -> Approach1Result:
    """Approach 1 as ``optimal.approach1`` computed it."""
    if "error" in block:
        return Approach1Result(error=str(block["error"]))
    plain = {k: block[k] for k in ("points", "envelope", "runs", "n_degenerate") if k in block}
    out = from_plain(Approach1Result, plain, "approach1")
    out.allocation = allocation_from(block)
    out.targets = targets_from(block.get("targets", []))
    out.band = band_from(block.get("band"))
    return out


def approach2_from(block: typing.Mapping[str, Any]) -> Approach2Result:
    """Approach 2 as ``optimal.approach2`` computed it."""
    plain = {k: block[k] for k in ("budgets", "n_edge", "n_degenerate") if k in block}
    out = from_plain(Approach2Result, plain, "approach2")
    if "error" in block:
        out.error = str(block["error"])
        return out
    out.allocation = allocation_from(block)
    out.targets = targets_from(block.get("targets", []))
    out.band = band_from(block.get("band"))
    return out


def law_fit_from(result: Any, boot: np.ndarray | None, ci: float) -> LawFit:
    """A `LawFit` of an `analysis.fit.FitResult` with intervals from bootstrap parameters."""
    from_boot = result.law.to_natural(boot) if boot is not None else {}
    values = result.params
    params = {  # in the law's order of natural parameters (E, A, B, alpha, beta)
        name: Estimate(values[name], interval(from_boot[name], ci) if name in from_boot else None)
        for name in result.law.natural_names
    }
    return LawFit(
        law=result.law.name,
        params=params,
        objective=float(result.objective),
        n_starts=int(result.n_starts),
        n_best=int(result.n_best),
        n_points=int(result.n_points),
        huber_delta=float(result.huber_delta),
        asymmetry=float(result.asymmetry),
    )


def approach3_from(
    fit: LawFit, block: typing.Mapping[str, Any], rows: list[typing.Mapping[str, Any]]
) -> Approach3Result:
    """Approach 3 from its law fit and what ``optimal.approach3`` derived from it."""
    fit.derived = {n: estimate(block, n) for n in ("a", "b", "N_coef", "D_coef")}
    return Approach3Result(
        fit=fit,
        targets=targets_from(rows),
        band=band_from(block.get("band")),
        n_degenerate=int(block.get("n_degenerate", 0)),
    )
