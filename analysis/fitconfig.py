"""Every choice of one fit, as a typed dataclass; named settings are YAML files in conf/fit/.

``FitConfig.load("chinchilla_reference")`` reads ``conf/fit/chinchilla_reference.yaml`` onto the
dataclass with OmegaConf (a typo'd or unknown key fails naming the key), applies field
overrides (the ``scaling-fit`` flags, which are generated from these fields) and checks the
whole configuration before anything is collected, fitted or written. The resolved config is
stored in fit.json, so every report says exactly how it was made.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

import analysis.curve_joint  # noqa: F401  (registers the joint curve laws in CURVE_LAWS)
from analysis.collect import CSV_TARGETS, CURVE_TARGETS, TARGETS
from analysis.curves import CURVE_LAWS
from analysis.laws import LAWS
from contract import CONVENTIONS, WandbMode
from contract.schedule import parse_spec

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf" / "fit"
APPROACHES = (1, 2, 3)


class FitConfigError(ValueError):
    """A fit setting that is not valid (names the setting, the value and what would be)."""


@dataclass
class FitConfig:
    """The settings of one ``scaling-fit`` run (every field is a flag and a YAML key)."""

    approaches: list[int] = field(default_factory=lambda: [1, 2, 3])
    """Which of Chinchilla's approaches to compute: a subset of 1 (envelope), 2 (IsoFLOP),
    3 (parametric)."""
    convention: str = "chinchilla"
    """FLOP convention for C: kaplan, 6n or chinchilla."""
    law: str = "chinchilla"
    """Parametric law of the fit, a name of the registry (analysis/laws.py); approach 3 needs
    chinchilla, any other law is fitted and reported as the law fit. multipower or tissue: a
    law of whole loss curves (analysis/curves.py) fitted to each run's curve; multipower_joint
    (and the other forms of analysis/curve_joint.py): one curve law across model sizes."""
    fit_on: str = "loss"
    """What the fit calls loss: 'loss' (validation nats per token) or 'bpb' (bits per byte of
    validation text, comparable across tokenizers; runs without a byte count are excluded)."""
    bootstrap: int = 1000
    """Bootstrap resamples of runs for every interval (0: no intervals)."""
    seed: int = 0
    """Seed of the bootstrap resamples and of the --grid start subset."""
    ci: float = 0.9
    """Coverage of the percentile intervals, in (0, 1)."""
    holdout: str | None = None
    """Runs held out of the fit and predicted: 'largest-C:FRACTION' (whole IsoFLOP budgets),
    'largest-N', or an expression on the runs table such as "N > 1e9"."""
    targets: list[float] = field(default_factory=list)
    """Target compute(s) C for the predictions, e.g. 1e21,1e23 (default: 10x the largest run's C)."""
    huber_delta: float = 1e-3
    """Huber delta of the robust objective on log loss (> 0)."""
    asymmetry: float = 1.0
    """Weight of over-predictions against under-predictions (> 0; > 1: a lower-envelope fit)."""
    weights: str | None = None
    """Per-run weights of the parametric fit, an expression on the runs table (e.g. 'C ** 0.5');
    default: equal."""
    grid: int | None = None
    """Optimise from a random subset of this many of the law's grid starts (default: all)."""
    drop_highest: int = 0
    """Exclude the runs with the k highest losses (Besiroglu et al.'s outlier rule)."""
    group: str | None = None
    """W&B group (the sweep's name) of a wandb: source, and of the analysis run."""
    sweep: str | None = None
    """W&B sweep id of a wandb: source."""
    columns: dict[str, str] | None = None
    """Column mapping of a CSV source onto N, D, C, loss (and S, run, size, ...), e.g.
    'N=Model Size,C=Training FLOP,loss=loss'."""
    curves: str | None = None
    """Learning curves of a CSV source: a CSV file or glob, one file per run named by the run."""
    curve_columns: dict[str, str] | None = None
    """Column mapping of the curve files, e.g. 'tokens=total_tokens,loss=val_loss'."""
    held_out_curves: list[str] = field(default_factory=list)
    """Curve laws: curves (run names, or curve-file stems) held out of the fit and predicted
    from the others."""
    predict: list[str] = field(default_factory=list)
    """Curve laws: schedules to predict without training, e.g. cosine:24000,wsd:24000:0.2
    (constant:STEPS, cosine:STEPS[:FINAL_LR_FRAC], wsd:STEPS[:COOLDOWN_FRAC[:SHAPE]])."""
    curve_loss: str = "val_loss"
    """Curve laws on a run store: the loss each curve follows, val_loss or train_loss."""
    curve_decay: float = 0.999
    """Curve laws: Tissue's momentum factor lambda of the annealing area, in [0, 1) (curve
    files; a run store's curves take theirs from curve_decay_window unless that is null)."""
    curve_decay_window: float | None = 0.05
    """Tissue's law on a run store: each curve's momentum window 1/(1 - lambda) as a fraction
    of its own optimiser steps T (lambda = 1 - 1/(window x T)), in place of curve_decay. The
    paper's 0.999 is a 1000-step window, a few percent of its runs of 10^4-10^5 steps; our runs
    of 500-1500 steps would not fill it by their end (benchmarks/bench_curve_runs.py: cosine
    finals predicted from WSD runs to 12.7% mean error with 0.999, 0.8% with 0.05).
    null: curve_decay for run stores too."""
    curve_warmup_drop: bool = True
    """Multi-power law: its loss drop sums every LR change from step 1, the warmup's rises as
    negative drops, as the paper's code does (the paper's parameters give its reported scores
    only so); false: only the changes after the peak."""
    curve_block: int = 10
    """Curve laws: consecutive logged steps of one curve resampled together by the bootstrap."""
    budget_tol_dex: float = 0.05
    """Runs whose log10 C lie within this of a neighbour form one IsoFLOP budget (approach 2)."""
    wandb: bool = False
    """Log the analysis (tables, figures, fit.json) to W&B."""
    wandb_project: str | None = None
    """W&B project of the analysis run (default: the source's, else scaling)."""
    wandb_mode: str = "auto"
    """auto (online when W&B credentials exist and the host answers, else offline), online,
    offline or disabled."""

    def __post_init__(self) -> None:
        for check in (self._check_choices, self._check_numbers, self._check_holdout):
            check()

    def _check_choices(self) -> None:
        _require(
            bool(self.approaches) and all(a in APPROACHES for a in self.approaches),
            "approaches", self.approaches, "a non-empty subset of 1, 2, 3",
        )  # fmt: skip
        _require(self.convention in CONVENTIONS, "convention", self.convention, CONVENTIONS)
        laws = sorted([*LAWS, *CURVE_LAWS])
        _require(self.law in LAWS or self.law in CURVE_LAWS, "law", self.law, f"one of {laws}")
        curves = ("val_loss", "train_loss")
        _require(self.curve_loss in curves, "curve_loss", self.curve_loss, f"one of {curves}")
        for spec in self.predict:
            try:
                parse_spec(spec)
            except ValueError as err:
                raise FitConfigError(f"predict: {err}") from None
        _require(self.fit_on in TARGETS, "fit_on", self.fit_on, f"one of {TARGETS}")
        modes = tuple(m.value for m in WandbMode)
        _require(self.wandb_mode in modes, "wandb_mode", self.wandb_mode, f"one of {modes}")
        for name, targets in (("columns", CSV_TARGETS), ("curve_columns", CURVE_TARGETS)):
            unknown = [k for k in getattr(self, name) or {} if k not in targets]
            _require(not unknown, name, getattr(self, name), f"a mapping onto {targets}")

    def _check_numbers(self) -> None:
        _require(0 < self.ci < 1, "ci", self.ci, "a coverage in (0, 1)")
        _require(self.bootstrap >= 0, "bootstrap", self.bootstrap, "resamples >= 0")
        _require(_positive(self.huber_delta), "huber_delta", self.huber_delta, "finite and > 0")
        _require(_positive(self.asymmetry), "asymmetry", self.asymmetry, "finite and > 0")
        _require(_positive(self.budget_tol_dex), "budget_tol_dex", self.budget_tol_dex, "> 0")
        _require(self.grid is None or self.grid >= 1, "grid", self.grid, "a start count >= 1")
        _require(self.drop_highest >= 0, "drop_highest", self.drop_highest, "a count >= 0")
        _require(0 <= self.curve_decay < 1, "curve_decay", self.curve_decay, "a factor in [0, 1)")
        window = self.curve_decay_window
        if window is not None:
            _require(window > 0, "curve_decay_window", window, "a fraction of the steps > 0")
        _require(self.curve_block >= 1, "curve_block", self.curve_block, "logged steps >= 1")
        bad = [t for t in self.targets if not _positive(t)]
        _require(not bad, "targets", self.targets, "finite compute values > 0 (e.g. 1e21)")

    def _check_holdout(self) -> None:
        rule = self.holdout
        if rule is None or not rule.startswith("largest-"):
            return
        if rule == "largest-N" or rule == "largest-C":
            return
        head, _, frac = rule.partition(":")
        valid = "'largest-C:FRACTION' with FRACTION in (0, 1), 'largest-N' or an expression"
        _require(head == "largest-C" and _fraction(frac), "holdout", rule, valid)

    @classmethod
    def load(
        cls, name_or_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
    ) -> FitConfig:
        """The named setting (``conf/fit/<name>.yaml``) or YAML file, with field overrides."""
        schema = OmegaConf.structured(cls)
        try:
            layers = [schema]
            if name_or_path is not None:
                layers.append(OmegaConf.load(config_path(name_or_path)))
            layers.append(OmegaConf.create(dict(overrides or {})))
            merged = OmegaConf.merge(*layers)
            return OmegaConf.to_object(merged)  # type: ignore[return-value]
        except yaml.YAMLError as err:
            where = config_path(name_or_path) if name_or_path is not None else "overrides"
            raise FitConfigError(f"fit config {where} is not YAML: {err}") from None
        except OmegaConfBaseException as err:
            where = f" in {config_path(name_or_path)}" if name_or_path is not None else ""
            key = getattr(err, "full_key", None) or getattr(err, "key", None)
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise FitConfigError(
                f"fit setting{where}: {str(err).splitlines()[0]}"
                + (f" (key {key!r}; valid keys: {valid})" if key else "")
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings) of every field."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML, loadable by ``FitConfig.load``."""
        return OmegaConf.to_yaml(OmegaConf.structured(self))


def config_path(name_or_path: str | Path) -> Path:
    """The YAML file of a named setting (``conf/fit/<name>.yaml``) or an explicit path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        if not path.is_file():
            raise FitConfigError(f"fit config file {path} does not exist")
        return path
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if not named.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FitConfigError(
            f"unknown fit config {str(name_or_path)!r}; named settings in {CONFIG_DIR}: {known} "
            "(or give a path to a .yaml file)"
        )
    return named


def named_configs() -> list[str]:
    """The named settings shipped in conf/fit/."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _positive(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def _fraction(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return 0 < value < 1


def _require(ok: bool, name: str, value: Any, valid: Any) -> None:
    if not ok:
        raise FitConfigError(f"{name} = {value!r} is not valid; use {valid}")
