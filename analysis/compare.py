"""``scaling-compare``: recipe B against recipe A, as the effective compute multiplier of B over A.

Both ladders are collected and fitted with the machinery of ``scaling-fit`` (``collect``, the
runs' selection and the one ``fit`` with its run bootstrap). Each fitted law gives a compute-
optimal frontier L_opt(C) = E + K C^-gamma (for Chinchilla's law minimised under C = k N D,
gamma = alpha beta / (alpha + beta)). The multiplier at compute C is the compute A needs to
reach the loss B reaches with C, divided by C: M(C) = C_A(L_B(C)) / C (> 1: B is better; +inf:
B reaches a loss below A's irreducible loss). The crossover is the compute where M(C) = 1,
where the ranking flips. Intervals pair each ladder's own bootstrap resamples of its runs (or,
with a shared E, a joint fit whose resamples keep each ladder's run count).

Losses must be in one unit and C in one FLOP convention: ladders whose corpora or vocabularies
differ, or whose FLOPs were counted differently, are refused before anything is fitted unless
the user maps them to a common unit (``unit: bits_per_byte`` with bytes per token,
``flops: 6nd``, or ``flops: as_given`` asserting the C columns agree).

The command line and the results folder are `analysis.compare_cli`; the figure is
`analysis.compare_plot`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from analysis.cli import Selection, fit_parametric, select
from analysis.collect import CSV_TARGETS, Collected
from analysis.fit import FitResult, bootstrap, fit
from analysis.fitconfig import FitConfig
from analysis.laws import get_law
from analysis.optimal import chinchilla_optimum
from analysis.report import fmt, fmt_ci
from analysis.results import (
    Bootstrap,
    Estimate,
    Exclusion,
    LawFit,
    from_plain,
    law_fit_from,
    to_plain,
)
from contract import CONVENTIONS, WandbMode, atomic_write_text

COMPARE_FORMAT = 1
"""Version of the compare.json layout."""
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf" / "compare"
UNITS = ("native", "bits_per_byte")
FLOPS = ("check", "6nd", "as_given")
K_TOLERANCE = 0.02  # FLOP factors C / (N D) further apart than this are different conventions
SIDES = ("a", "b")


class CompareError(ValueError):
    """Two ladders that cannot be compared as asked (units, FLOPs, settings, a corrupt file)."""


# ---- the settings -----------------------------------------------------------------------------


@dataclass
class CompareConfig:
    """The settings of one ``scaling-compare`` run (every field is a flag and a YAML key)."""

    law: str = "chinchilla"
    """Law fitted to each ladder: chinchilla (on N, D; frontier at the compute-optimal
    allocation), saturating_C or power_C (on C, for ladders of compute-optimal runs)."""
    shared_e: bool = False
    """Fit both ladders jointly with one irreducible loss E (chinchilla only)."""
    convention: str = "chinchilla"
    """FLOP convention of C for run stores and W&B: kaplan, 6n or chinchilla."""
    flops: str = "check"
    """check: refuse ladders whose FLOPs were counted differently (conventions, or factors
    C / (N D) more than 2% apart); 6nd: recompute C = 6 N D on both; as_given: assert that the
    C columns are comparable."""
    unit: str = "native"
    """Unit of the losses: native (refuse ladders whose corpora or vocabulary sizes differ) or
    bits_per_byte (convert with --bytes-per-token-a/-b; a CSV side without one is taken as
    already in bits per byte)."""
    bytes_per_token_a: float | None = None
    """Bytes of validation text per token of ladder A's tokenizer (unit bits_per_byte)."""
    bytes_per_token_b: float | None = None
    """Bytes of validation text per token of ladder B's tokenizer (unit bits_per_byte)."""
    bootstrap: int = 500
    """Bootstrap resamples of each ladder's runs for every interval (0: no intervals)."""
    seed: int = 0
    """Seed of the bootstrap resamples (ladder B's use seed + 1)."""
    ci: float = 0.9
    """Coverage of the percentile intervals, in (0, 1)."""
    targets: list[float] = field(default_factory=list)
    """Compute values C at which the multiplier is reported (default: 10x the largest run's C)."""
    c_range: list[float] = field(default_factory=list)
    """[low, high] compute of the multiplier curve and the crossover search (default: the
    smallest run's C to twice the largest of 10x the largest run's C and the targets)."""
    huber_delta: float = 1e-3
    """Huber delta of the robust objective on log loss (> 0)."""
    grid: int | None = None
    """Optimise from a random subset of this many of the law's grid starts (default: all)."""
    drop_highest: int = 0
    """Exclude each ladder's runs with the k highest losses (Besiroglu et al.'s outlier rule)."""
    group_a: str | None = None
    """W&B group of ladder A (for two groups of one wandb: project, or of offline runs)."""
    group_b: str | None = None
    """W&B group of ladder B."""
    columns_a: dict[str, str] | None = None
    """Column mapping of a CSV source A onto N, D, C, loss (and corpus, vocab_size, ...)."""
    columns_b: dict[str, str] | None = None
    """Column mapping of a CSV source B."""
    wandb: bool = False
    """Log the comparison (table, figure, compare.json) to W&B."""
    wandb_project: str | None = None
    """W&B project of the comparison run (default: source A's, else scaling)."""
    wandb_mode: str = "auto"
    """auto (online with credentials and a reachable host, else offline), online, offline or
    disabled."""

    def __post_init__(self) -> None:
        _require(self.law in FRONTIERS, "law", self.law, f"one of {sorted(FRONTIERS)}")
        _require(
            not self.shared_e or self.law == "chinchilla", "shared_e", self.shared_e,
            "false unless law is chinchilla",
        )  # fmt: skip
        _require(self.convention in CONVENTIONS, "convention", self.convention, CONVENTIONS)
        _require(self.flops in FLOPS, "flops", self.flops, f"one of {FLOPS}")
        _require(self.unit in UNITS, "unit", self.unit, f"one of {UNITS}")
        for side in SIDES:
            bpt = getattr(self, f"bytes_per_token_{side}")
            _require(bpt is None or _positive(bpt), f"bytes_per_token_{side}", bpt, "a number > 0")
            _require(
                bpt is None or self.unit == "bits_per_byte", f"bytes_per_token_{side}", bpt,
                "only with unit bits_per_byte",
            )  # fmt: skip
            cols = getattr(self, f"columns_{side}") or {}
            bad = [k for k in cols if k not in CSV_TARGETS]
            _require(not bad, f"columns_{side}", cols, f"a mapping onto {CSV_TARGETS}")
        _require(0 < self.ci < 1, "ci", self.ci, "a coverage in (0, 1)")
        _require(self.bootstrap >= 0, "bootstrap", self.bootstrap, "resamples >= 0")
        _require(_positive(self.huber_delta), "huber_delta", self.huber_delta, "finite and > 0")
        _require(self.grid is None or self.grid >= 1, "grid", self.grid, "a start count >= 1")
        _require(self.drop_highest >= 0, "drop_highest", self.drop_highest, "a count >= 0")
        bad = [t for t in self.targets if not _positive(t)]
        _require(not bad, "targets", self.targets, "finite compute values > 0 (e.g. 1e21)")
        ok = not self.c_range or (
            len(self.c_range) == 2 and all(map(_positive, self.c_range))
            and self.c_range[0] < self.c_range[1]
        )  # fmt: skip
        _require(ok, "c_range", self.c_range, "two computes LOW,HIGH with 0 < LOW < HIGH")
        modes = tuple(m.value for m in WandbMode)
        _require(self.wandb_mode in modes, "wandb_mode", self.wandb_mode, f"one of {modes}")

    @classmethod
    def load(
        cls, name_or_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
    ) -> CompareConfig:
        """The named setting (``conf/compare/<name>.yaml``) or YAML file, with field overrides."""
        try:
            layers = [OmegaConf.structured(cls)]
            if name_or_path is not None:
                layers.append(OmegaConf.load(config_path(name_or_path)))
            layers.append(OmegaConf.create(dict(overrides or {})))
            return OmegaConf.to_object(OmegaConf.merge(*layers))  # type: ignore[return-value]
        except (yaml.YAMLError, OmegaConfBaseException) as err:
            key = getattr(err, "full_key", None) or getattr(err, "key", None)
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise CompareError(
                f"compare setting: {str(err).splitlines()[0]}"
                + (f" (key {key!r}; valid keys: {valid})" if key else "")
            ) from None

    def side(self, which: str) -> FitConfig:
        """The FitConfig that collects and fits ladder ``which`` ('a' or 'b')."""
        return FitConfig(
            approaches=[3],
            convention=self.convention,
            law=self.law,
            bootstrap=self.bootstrap,
            seed=self.seed + SIDES.index(which),
            ci=self.ci,
            huber_delta=self.huber_delta,
            grid=self.grid,
            drop_highest=self.drop_highest,
            group=getattr(self, f"group_{which}"),
            columns=getattr(self, f"columns_{which}"),
        )


def config_path(name_or_path: str | Path) -> Path:
    """The YAML file of a named setting (``conf/compare/<name>.yaml``) or an explicit path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        if not path.is_file():
            raise CompareError(f"compare config file {path} does not exist")
        return path
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if not named.is_file():
        raise CompareError(
            f"unknown compare config {str(name_or_path)!r}; named settings in {CONFIG_DIR}: "
            f"{named_configs()} (or give a path to a .yaml file)"
        )
    return named


def named_configs() -> list[str]:
    """The named settings shipped in conf/compare/."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def _require(ok: bool, name: str, value: Any, valid: Any) -> None:
    if not ok:
        raise CompareError(f"{name} = {value!r} is not valid; use {valid}")


# ---- frontiers: L_opt(C) = E + K C^-gamma of each law a comparison accepts ---------------------


@dataclass(frozen=True)
class Frontier:
    """Compute-optimal loss L_opt(C) = E + K C^-gamma; arrays hold one value per parameter set."""

    E: np.ndarray
    """Irreducible loss (the frontier's floor)."""
    K: np.ndarray
    """Coefficient of the reducible part."""
    gamma: np.ndarray
    """Exponent of compute in the reducible part."""

    def loss(self, c: np.ndarray) -> np.ndarray:
        """L_opt at computes ``c`` (shape (..., len(c)))."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return (
                self.E[..., None]
                + self.K[..., None] * np.asarray(c, float) ** -self.gamma[..., None]
            )

    def compute_for(self, loss: np.ndarray) -> np.ndarray:
        """The compute at which the frontier reaches ``loss`` (+inf at or below E)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            gap = loss - self.E[..., None]
            out = (self.K[..., None] / gap) ** (1 / self.gamma[..., None])
        return np.where(gap > 0, out, np.inf)


def _chinchilla_frontier(theta: np.ndarray, k: float) -> Frontier:
    """Chinchilla's law minimised under C = k N D: gamma = alpha beta / (alpha + beta)."""
    theta = np.asarray(theta, float)
    opt = chinchilla_optimum(theta, k)
    alpha, beta = theta[..., 3], theta[..., 4]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        coef = np.exp(theta[..., 0]) * opt["N_coef"] ** -alpha
        coef = coef + np.exp(theta[..., 1]) * opt["D_coef"] ** -beta
        return Frontier(np.exp(theta[..., 2]), coef, alpha * beta / (alpha + beta))


def _saturating_frontier(theta: np.ndarray, k: float) -> Frontier:
    """L = E + A / C^alpha fitted to compute-optimal runs is its own frontier."""
    theta = np.asarray(theta, float)
    return Frontier(np.exp(theta[..., 0]), np.exp(theta[..., 1]), theta[..., 2])


def _power_frontier(theta: np.ndarray, k: float) -> Frontier:
    """L = A / C^alpha fitted to compute-optimal runs: the frontier with E = 0."""
    theta = np.asarray(theta, float)
    return Frontier(np.zeros(theta.shape[:-1]), np.exp(theta[..., 0]), theta[..., 1])


FRONTIERS: dict[str, Callable[[np.ndarray, float], Frontier]] = {
    "chinchilla": _chinchilla_frontier,
    "saturating_C": _saturating_frontier,
    "power_C": _power_frontier,
}
"""The laws a comparison accepts, each with its frontier from log-space parameters and k."""


# ---- the result (compare.json) -----------------------------------------------------------------


@dataclass
class LadderFit:
    """One ladder of the comparison: what was collected and fitted, and its frontier."""

    source: str
    """What was collected: a run store, wandb:entity/project, W&B offline folder or CSV."""
    group: str | None
    """The W&B group the ladder was taken from (None: all runs of the source)."""
    convention: str
    """FLOP convention of C as collected (before any --flops 6nd)."""
    k: float
    """FLOP factor in C = k N D (median over the fitted runs)."""
    unit: str
    """Unit of the fitted losses, e.g. 'nats/token (corpus stdlib, vocab 256)' or 'bits/byte'."""
    n_runs: int
    """Runs collected."""
    n_fitted: int
    """Runs fitted."""
    excluded: list[Exclusion]
    """Runs left out, with the reason."""
    C_range: list[float]
    """[smallest, largest] compute of the fitted runs."""
    fit: LawFit
    """The law fitted to this ladder (with a shared E: its part of the joint fit)."""
    frontier: dict[str, Estimate]
    """E, K and gamma of L_opt(C) = E + K C^-gamma."""


@dataclass
class MultiplierCurve:
    """The effective compute multiplier of B over A on a grid of compute."""

    C: list[float]
    """Compute values (log-spaced over c_range, targets included)."""
    value: list[float]
    """M(C) from the full fits (null: +inf, B below A's irreducible loss)."""
    ci: list[list[float]] | None
    """[lows, highs] of M(C) over the bootstrap resamples (None without bootstrap)."""
    loss_a: list[float]
    """A's frontier L_opt(C)."""
    loss_b: list[float]
    """B's frontier L_opt(C)."""


@dataclass
class TargetMultiplier:
    """The multiplier and both frontiers' losses at one target compute."""

    C: float
    """The target compute."""
    multiplier: Estimate
    """C_A(L_B(C)) / C (> 1: B is better; NaN in the file where it is +inf)."""
    loss_a: Estimate
    """A's compute-optimal loss at C."""
    loss_b: Estimate
    """B's compute-optimal loss at C."""


@dataclass
class Crossover:
    """Where the ranking of the two recipes flips (M(C) = 1) inside c_range."""

    C: list[float]
    """Crossover computes of the full fits, in increasing order (empty: none in c_range)."""
    first: Estimate | None
    """The first crossover with its interval over the resamples that have one (None: none)."""
    fraction: float
    """Share of bootstrap resamples with a crossover in c_range (NaN without bootstrap)."""
    better_at_high: str
    """'A' or 'B': the recipe with the lower loss at the top of c_range ('' if equal)."""


@dataclass
class CompareReport:
    """Everything ``scaling-compare`` decided (compare.json)."""

    config: CompareConfig
    """The resolved settings."""
    a: LadderFit
    """Recipe A, the reference."""
    b: LadderFit
    """Recipe B, the recipe whose worth is measured."""
    shared_law: LawFit | None
    """The joint chinchilla_shared_e fit (shared_e only)."""
    bootstrap: Bootstrap
    """Bootstrap settings of the intervals (resamples of each ladder's runs)."""
    multiplier: MultiplierCurve
    """M(C) of B over A on the compute grid, with its band."""
    targets: list[TargetMultiplier]
    """M at the target computes."""
    crossover: Crossover
    """Where the ranking flips, if it does."""
    warnings: list[str] = field(default_factory=list)
    """What a reader must know: collect warnings, losses taken as comparable without proof."""
    format: int = COMPARE_FORMAT
    """Version of this layout."""

    def to_json(self) -> str:
        """compare.json text (NaN and inf as null)."""
        return json.dumps(to_plain(self), indent=2, allow_nan=False) + "\n"

    def save(self, path: Path | str) -> Path:
        """Write compare.json atomically."""
        atomic_write_text(Path(path), self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: Path | str) -> CompareReport:
        """Read a compare.json (or the compare.json of a results folder)."""
        path = Path(path)
        path = path / "compare.json" if path.is_dir() else path
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("format") != COMPARE_FORMAT:
                raise ValueError(f"not a compare.json of format {COMPARE_FORMAT}")
            return from_plain(cls, data, "")
        except (OSError, UnicodeDecodeError, TypeError, ValueError, KeyError) as err:
            raise CompareError(f"cannot read comparison {path}: {err}") from None


# ---- units: refuse what is not comparable, before fitting --------------------------------------


def _recipe(runs: pd.DataFrame, name: str) -> tuple[set[str], set[str]]:
    """The corpora and vocabulary sizes a ladder's usable runs name (empty: not recorded)."""
    usable = runs[runs["exclusion_reason"] == ""]
    corpora = {str(c) for c in usable["corpus"].dropna()}
    vocabs = {str(int(float(v))) for v in usable["vocab_size"].dropna()}
    if len(corpora) > 1 or len(vocabs) > 1:
        raise CompareError(
            f"ladder {name} mixes corpora {sorted(corpora)} / vocabulary sizes {sorted(vocabs)}: "
            "its losses are not in one unit; give each recipe's runs as one ladder"
        )
    return corpora, vocabs


def _to_bits_per_byte(col: Collected, name: str, bytes_per_token: float | None) -> str:
    """Convert a ladder's losses to bits per byte (or check they are); the unit's description."""
    runs = col.runs
    if bytes_per_token is None:
        if runs["vocab_size"].notna().any():
            raise CompareError(
                f"unit bits_per_byte: ladder {name}'s losses are nats per token of its "
                f"tokenizer (vocab {_recipe(runs, name)[1]}); give --bytes-per-token-{name.lower()}"
                " (bytes of validation text per token) to convert them"
            )
        return "bits/byte (as given)"
    runs["loss"] = runs["loss"] / (math.log(2) * bytes_per_token)
    if "loss" in col.curves and not col.curves.empty:
        col.curves["loss"] = col.curves["loss"] / (math.log(2) * bytes_per_token)
    return f"bits/byte (nats/token / (ln 2 x {bytes_per_token:g} bytes/token))"


def common_units(a: Collected, b: Collected, config: CompareConfig) -> tuple[str, str, list[str]]:
    """Put both ladders' losses and C in one unit, or refuse; each side's unit and warnings."""
    warnings = _common_flops(a, b, config)
    if config.unit == "bits_per_byte":
        units = [
            _to_bits_per_byte(col, name, getattr(config, f"bytes_per_token_{side}"))
            for col, name, side in ((a, "A", "a"), (b, "B", "b"))
        ]
        return units[0], units[1], warnings
    (corp_a, voc_a), (corp_b, voc_b) = _recipe(a.runs, "A"), _recipe(b.runs, "B")
    if (corp_a and corp_b and corp_a != corp_b) or (voc_a and voc_b and voc_a != voc_b):
        raise CompareError(
            f"ladder A is corpus {sorted(corp_a)} with vocabulary size {sorted(voc_a)}, ladder B "
            f"corpus {sorted(corp_b)} with vocabulary size {sorted(voc_b)}: losses per token of "
            "different tokenizers or corpora are not comparable. Map both to bits per byte: "
            "--unit bits_per_byte --bytes-per-token-a X --bytes-per-token-b Y (bytes of "
            "validation text per token), or CSV loss columns already in bits per byte"
        )
    if not (corp_a or voc_a) or not (corp_b or voc_b):
        warnings.append(
            "a ladder records no corpus or vocabulary size: its losses are assumed to be in the "
            "other's unit"
        )
    units = [
        "nats/token" + (f" (corpus {', '.join(c)}, vocab {', '.join(v)})" if c or v else "")
        for c, v in ((corp_a, voc_a), (corp_b, voc_b))
    ]
    return units[0], units[1], warnings


def _k_of(runs: pd.DataFrame) -> float:
    usable = runs[runs["exclusion_reason"] == ""]
    k = np.asarray(usable["C"] / (usable["N"] * usable["D"]), float)
    k = k[np.isfinite(k) & (k > 0)]
    return float(np.median(k)) if k.size else float("nan")


def _common_flops(a: Collected, b: Collected, config: CompareConfig) -> list[str]:
    """C in one FLOP convention on both ladders (recomputed, checked or asserted)."""
    if config.flops == "6nd":
        for col in (a, b):
            col.runs["C"] = 6 * col.runs["N"] * col.runs["D"]
            if not col.curves.empty:
                col.curves["C"] = 6 * col.curves["N"] * col.curves["tokens"]
        return []
    if config.flops == "as_given":
        return [f"FLOPs taken as comparable (A: {a.convention}, B: {b.convention})"]
    k_a, k_b = _k_of(a.runs), _k_of(b.runs)
    named = a.convention in CONVENTIONS and a.convention == b.convention
    if not named and (a.convention != b.convention or abs(k_a / k_b - 1) > K_TOLERANCE):
        raise CompareError(
            f"ladder A counts FLOPs as {a.convention} (C / (N D) = {k_a:.4g}), ladder B as "
            f"{b.convention} (C / (N D) = {k_b:.4g}): compute in different conventions is not "
            "comparable. Give --flops 6nd (recompute C = 6 N D on both) or --flops as_given "
            "(assert that the C columns are comparable)"
        )
    return []


# ---- fitting both ladders ----------------------------------------------------------------------


@dataclass
class FittedLadder:
    """One ladder while it is fitted (in memory only): its runs, selection, fit and resamples."""

    collected: Collected
    """The collected runs and curves (losses and C already in the common unit)."""
    selection: Selection
    """The runs fitted after exclusions, and the FLOP factor k."""
    result: FitResult
    """The fitted law (with a shared E: this ladder's part of the joint fit)."""
    boot: np.ndarray | None
    """Bootstrap parameters (n, P) from resamples of this ladder's runs (None: no bootstrap)."""


def _split(theta: np.ndarray, i: int) -> np.ndarray:
    """Ladder i's chinchilla parameters (a, b, e, alpha, beta) from chinchilla_shared_e's."""
    j = 4 * i
    return np.stack(
        [theta[..., j], theta[..., j + 1], theta[..., 8], theta[..., j + 2], theta[..., j + 3]],
        axis=-1,
    )


def _fit_shared_e(
    sides: list[FittedLadder], config: CompareConfig
) -> tuple[FitResult, np.ndarray | None]:
    """Refit both ladders jointly with one E; each side gets its part (and resamples)."""
    law = get_law("chinchilla_shared_e")
    data = pd.concat(
        [s.selection.fitted.assign(ladder=float(i + 1)) for i, s in enumerate(sides)],
        ignore_index=True,
    )
    ta, tb = (s.result.theta for s in sides)
    per = [
        np.r_[ta[[0, 1, 3, 4]], tb[[0, 1, 3, 4]], e] for e in (ta[2], tb[2], (ta[2] + tb[2]) / 2)
    ]
    # The separate fits are close to the joint optimum: start there, with E at each side's value.
    joint = fit(law, data, starts=np.array(per), delta=config.huber_delta)
    boot = None
    if config.bootstrap:
        groups = (data["ladder"].astype(int).astype(str) + ":" + data["run"].astype(str)).to_numpy()
        boot = bootstrap(
            joint, data, n=config.bootstrap, seed=config.seed, groups=groups,
            strata=data["ladder"].to_numpy(), n_warm=1,
        )  # fmt: skip
    for i, s in enumerate(sides):
        s.result = dataclasses.replace(
            s.result, theta=_split(joint.theta, i), objective=joint.objective,
            n_starts=joint.n_starts, n_best=joint.n_best,
        )  # fmt: skip
        s.boot = None if boot is None else _split(boot, i)
    return joint, boot


def fit_ladders(
    a: Collected, b: Collected, config: CompareConfig
) -> tuple[list[FittedLadder], LawFit | None]:
    """Select and fit both ladders (jointly with a shared E if asked)."""
    sides = []
    for col, which in ((a, "a"), (b, "b")):
        side_config = config.side(which)
        sel = select(col, side_config)
        result, boot = fit_parametric(sel, side_config)
        sides.append(FittedLadder(col, sel, result, boot))
    if not config.shared_e:
        return sides, None
    joint, boot = _fit_shared_e(sides, config)
    return sides, law_fit_from(joint, boot, config.ci)


# ---- the multiplier, its targets and the crossover ---------------------------------------------


def multiplier(front_a: Frontier, front_b: Frontier, c: np.ndarray) -> np.ndarray:
    """M(C) = C_A(L_B(C)) / C: compute A needs for B's loss at C, per C (+inf: never)."""
    c = np.asarray(c, float)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return front_a.compute_for(front_b.loss(c)) / c


def _percentiles(samples: np.ndarray, ci: float) -> np.ndarray:
    """[low, high] percentiles over axis 0, +inf kept (counted as larger than any number)."""
    s = np.where(np.isposinf(samples), np.finfo(float).max, samples)
    with np.errstate(invalid="ignore"):
        lo_hi = np.nanpercentile(s, [50 * (1 - ci), 50 * (1 + ci)], axis=0, method="lower")
    return np.where(lo_hi >= np.finfo(float).max, np.inf, lo_hi)


def crossings(log_m: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
    """Per row of log M on grid ``c``: the computes where it changes sign (log-interpolated)."""
    log_c = np.log(c)
    out = []
    for row in np.atleast_2d(log_m):
        ok = np.isfinite(row[:-1]) & np.isfinite(row[1:])
        idx = np.flatnonzero(ok & (np.sign(row[:-1]) * np.sign(row[1:]) < 0))
        t = row[idx] / (row[idx] - row[idx + 1])
        out.append(np.exp(log_c[idx] + t * (log_c[idx + 1] - log_c[idx])))
    return out


def _crossover(fronts: tuple, boots: tuple | None, c: np.ndarray, ci: float) -> Crossover:
    """The crossovers of the full fits and the interval of the first over the resamples."""
    with np.errstate(divide="ignore"):
        full = crossings(np.log(multiplier(*fronts, c)), c)[0]
    diff = fronts[0].loss(c[-1:]) - fronts[1].loss(c[-1:])
    better = "B" if diff.item() > 0 else "A" if diff.item() < 0 else ""
    first, fraction = None, float("nan")
    if boots is not None:
        with np.errstate(divide="ignore"):
            each = crossings(np.log(multiplier(*boots, c)), c)
        firsts = np.array([x[0] for x in each if x.size])
        fraction = firsts.size / len(each)
        if full.size:
            lo_hi = _percentiles(firsts, ci).tolist() if firsts.size else None
            first = Estimate(float(full[0]), lo_hi)
    elif full.size:
        first = Estimate(float(full[0]))
    return Crossover(C=full.tolist(), first=first, fraction=fraction, better_at_high=better)


def _estimate(value: np.ndarray, samples: np.ndarray | None, ci: float) -> Estimate:
    lo_hi = None if samples is None else _percentiles(samples, ci).tolist()
    return Estimate(float(value), lo_hi)


def _grid(sides: list[FittedLadder], config: CompareConfig, targets: list[float]) -> np.ndarray:
    """Log-spaced computes of the curve and the crossover search, targets included."""
    c_all = np.concatenate([s.selection.fitted["C"].to_numpy(float) for s in sides])
    lo, hi = config.c_range or (c_all.min(), 2 * max(10 * c_all.max(), *targets))
    return np.unique(np.r_[np.geomspace(lo, hi, 400), [t for t in targets if lo <= t <= hi]])


def _ladder(
    side: FittedLadder, config: CompareConfig, which: str, unit: str, front: Frontier
) -> LadderFit:
    """The LadderFit of one fitted side."""
    fitted, ci = side.selection.fitted, config.ci
    boot_front = (
        FRONTIERS[config.law](side.boot, side.selection.k) if side.boot is not None else None
    )
    return LadderFit(
        source=side.collected.source,
        group=getattr(config, f"group_{which}"),
        convention=side.collected.convention,
        k=side.selection.k,
        unit=unit,
        n_runs=len(side.collected.runs),
        n_fitted=len(fitted),
        excluded=[Exclusion(**e) for e in side.collected.excluded],
        C_range=[float(fitted["C"].min()), float(fitted["C"].max())],
        fit=law_fit_from(side.result, side.boot, ci),
        frontier={
            name: _estimate(
                getattr(front, name), None if boot_front is None else getattr(boot_front, name), ci
            )
            for name in ("E", "K", "gamma")
        },
    )


def compare_fits(
    sides: list[FittedLadder], config: CompareConfig, units: tuple[str, str], joint: LawFit | None
) -> CompareReport:
    """The comparison of two fitted ladders: multiplier curve, targets, crossover."""
    k = [s.selection.k for s in sides]
    fronts = tuple(FRONTIERS[config.law](s.result.theta, ki) for s, ki in zip(sides, k))
    boots = None
    if all(s.boot is not None for s in sides):
        boots = tuple(FRONTIERS[config.law](s.boot, ki) for s, ki in zip(sides, k))
    largest = max(float(s.selection.fitted["C"].max()) for s in sides)
    targets = list(config.targets) or [10 * largest]
    c = _grid(sides, config, targets)
    m = multiplier(*fronts, c)
    curve = MultiplierCurve(
        C=c.tolist(),
        value=np.ravel(m).tolist(),
        ci=None if boots is None else _percentiles(multiplier(*boots, c), config.ci).tolist(),
        loss_a=np.ravel(fronts[0].loss(c)).tolist(),
        loss_b=np.ravel(fronts[1].loss(c)).tolist(),
    )
    rows = []
    for t in targets:
        tc = np.array([t])
        rows.append(
            TargetMultiplier(
                C=float(t),
                multiplier=_estimate(
                    multiplier(*fronts, tc).item(),
                    None if boots is None else multiplier(*boots, tc)[:, 0],
                    config.ci,
                ),
                loss_a=_estimate(
                    fronts[0].loss(tc).item(),
                    None if boots is None else boots[0].loss(tc)[:, 0],
                    config.ci,
                ),
                loss_b=_estimate(
                    fronts[1].loss(tc).item(),
                    None if boots is None else boots[1].loss(tc)[:, 0],
                    config.ci,
                ),
            )
        )
    warnings = [
        w for s, n in zip(sides, "AB") for w in (f"ladder {n}: {x}" for x in s.collected.warnings)
    ]
    return CompareReport(
        config=config,
        a=_ladder(sides[0], config, "a", units[0], fronts[0]),
        b=_ladder(sides[1], config, "b", units[1], fronts[1]),
        shared_law=joint,
        bootstrap=Bootstrap(n=config.bootstrap, seed=config.seed, ci=config.ci),
        multiplier=curve,
        targets=rows,
        crossover=_crossover(fronts, boots, c, config.ci),
        warnings=warnings,
    )


# ---- outputs: compare.json, report.md, the figure, the terminal --------------------------------


def _fmt_m(est: Estimate) -> str:
    """A multiplier with its interval: '2.01x [1.8x, 2.3x]' (inf: A never reaches B's loss)."""

    def one(x: float) -> str:
        return "inf" if math.isinf(x) else "n/a" if math.isnan(x) else f"{x:.3g}x"

    ci = f" [{one(est.ci[0])}, {one(est.ci[1])}]" if est.ci else ""
    return one(est.value) + ci


def markdown_report(report: CompareReport) -> str:
    """The comparison section of report.md."""
    pct = f"{round(100 * report.bootstrap.ci)}%"
    lines = [
        "## Recipe against recipe: effective compute multiplier of B over A",
        "",
        "M(C) = the compute A needs to reach the loss B reaches with C, divided by C "
        f"(> 1: B is better). Intervals: {pct} percentile, {report.bootstrap.n} bootstrap "
        "resamples of each ladder's runs.",
        "",
        "| ladder | source | runs fitted | C range | unit | E | K | gamma |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, lad in (("A", report.a), ("B", report.b)):
        f = lad.frontier
        lines.append(
            f"| {name} | `{lad.source}`{f' (group {lad.group})' if lad.group else ''} | "
            f"{lad.n_fitted} of {lad.n_runs} | {lad.C_range[0]:.3g} - {lad.C_range[1]:.3g} | "
            f"{lad.unit} | "
            + " | ".join(f"{fmt(f[n].value)} {fmt_ci(f[n].ci)}" for n in ("E", "K", "gamma"))
            + " |"
        )
    if report.shared_law is not None:
        lines += [
            "",
            f"Both ladders share one irreducible loss E = {fmt(report.shared_law.params['E'].value)} "
            f"{fmt_ci(report.shared_law.params['E'].ci)} (joint fit chinchilla_shared_e).",
        ]
    lines += ["", "| target C | multiplier | loss A | loss B |", "|---|---|---|---|"]
    for t in report.targets:
        lines.append(
            f"| {t.C:.3g} | {_fmt_m(t.multiplier)} | {fmt(t.loss_a.value)} {fmt_ci(t.loss_a.ci)} "
            f"| {fmt(t.loss_b.value)} {fmt_ci(t.loss_b.ci)} |"
        )
    lines += ["", crossover_text(report)]
    if report.warnings:
        lines += ["", "Warnings:", *(f"- {w}" for w in report.warnings)]
    return "\n".join(lines) + "\n"


def crossover_text(report: CompareReport) -> str:
    """One sentence: where the ranking flips, if it does."""
    cr, lo, hi = report.crossover, report.multiplier.C[0], report.multiplier.C[-1]
    share = "" if math.isnan(cr.fraction) else f"; {cr.fraction:.0%} of resamples cross"
    if not cr.C:
        best = cr.better_at_high or "neither"
        return f"No crossover in C = {lo:.3g} - {hi:.3g}: {best} is better throughout{share}."
    first = cr.first
    ci = f" {fmt_ci(first.ci)}" if first is not None and first.ci else ""
    more = f" (also at {', '.join(f'{x:.3g}' for x in cr.C[1:])})" if len(cr.C) > 1 else ""
    return (
        f"Crossover at C = {cr.C[0]:.3g}{ci}{more}: above it {cr.better_at_high or 'neither'} "
        f"is better{share}."
    )


def summary_text(report: CompareReport, paths: Sequence[Path]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"A: {report.a.n_fitted} runs of {report.a.source}; B: {report.b.n_fitted} runs of "
        f"{report.b.source}; law {report.config.law}"
        + (" with one shared E" if report.config.shared_e else "")
    ]
    lines += [
        f"multiplier of B over A at C = {t.C:.3g}: {_fmt_m(t.multiplier)}" for t in report.targets
    ]
    lines.append(crossover_text(report))
    lines.append(f"wrote {', '.join(str(p) for p in paths)}")
    return "\n".join(lines)
