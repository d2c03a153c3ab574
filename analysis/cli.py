"""``scaling-fit``: collect runs, fit the scaling laws, write fit.json and the report."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.collect import Collected, CollectError, collect, parse_columns, with_target
from analysis.curve_fit import run_curve_fit
from analysis.curves import CURVE_LAWS
from analysis.expr import ExprError, mask_of, values_of
from analysis.fit import FitError, FitResult, bootstrap, fit
from analysis.fitconfig import FitConfig, FitConfigError, named_configs
from analysis.laws import Law, get_law
from analysis.optimal import (
    approach1,
    approach2,
    approach3,
    band_grid,
    budgets_of,
    flops_factor,
)
from analysis.report import (
    OUTPUTS,
    approach3_line,
    curves_summary,
    fmt_est,
    write_curve_outputs,
    write_outputs,
)
from analysis.results import (
    Approach3Result,
    Bootstrap,
    Exclusion,
    FitReport,
    HoldoutCheck,
    HoldoutRun,
    approach1_from,
    approach2_from,
    approach3_from,
    law_fit_from,
)
from contract import field_docs


def _mark(collected: Collected, mask: np.ndarray, reason: str) -> None:
    runs = collected.runs
    runs.loc[mask & (runs["exclusion_reason"] == ""), "exclusion_reason"] = reason


def drop_highest_losses(collected: Collected, k: int) -> None:
    """Exclude the usable runs whose loss is >= the k-th highest (Besiroglu et al.'s rule)."""
    if k <= 0:
        return
    usable = collected.runs["exclusion_reason"] == ""
    losses = np.sort(collected.runs.loc[usable, "loss"].to_numpy(float))
    if losses.size <= k:
        raise FitError(f"cannot drop the {k} highest losses of only {losses.size} usable runs")
    _mark(
        collected, usable & (collected.runs["loss"] >= losses[-k]), f"among the {k} highest losses"
    )


def apply_holdout(runs: pd.DataFrame, rule: str | None) -> str | None:
    """Mark held-out runs by ``rule``: 'largest-C:FRACTION', 'largest-N' or a condition."""
    if not rule:
        return "heldout flag in the run store" if runs["heldout"].any() else None
    usable = runs["exclusion_reason"] == ""
    if rule.startswith("largest-C"):
        frac = float(rule.split(":", 1)[1]) if ":" in rule else 0.2
        if not 0 < frac < 1:
            raise FitError(f"hold-out fraction must be in (0, 1), got {frac}")
        # Whole IsoFLOP budgets: splitting one would let the fit see half of the profile it is
        # asked to predict. Take budgets from the top until they hold >= frac of the runs.
        c = runs.loc[usable, "C"]
        n_out = max(1, math.ceil(frac * len(c)))
        labels = pd.Series(budgets_of(runs.loc[usable]), index=c.index)
        cut = labels[c.sort_values().index[-n_out]]
        held = runs.index.isin(labels.index[labels >= cut])
        rule = (
            f"largest C {round(100 * frac)}%: whole budgets, "
            f"C >= {c[labels >= cut].min():.3g}, {int(held.sum())} of {len(c)} runs"
        )
    elif rule == "largest-N":
        held = usable & (runs["N"] == runs.loc[usable, "N"].max())
        rule = "largest N"
    else:
        try:
            held = mask_of(rule, runs)
        except ExprError as err:
            raise FitError(
                f"hold-out rule {rule!r} is not 'largest-C:FRACTION', 'largest-N' or a valid "
                f"condition on the runs table: {err}"
            ) from None
    runs["heldout"] = runs["heldout"].to_numpy(bool) | np.asarray(held, bool)
    return rule


def run_weights(runs: pd.DataFrame, expr: str) -> np.ndarray:
    """Per-run weights of the parametric fit: an expression on the runs table (`analysis.expr`),
    e.g. ``"C ** 0.5"`` to favour the large runs the extrapolation depends on."""
    try:
        w = values_of(expr, runs)
    except ExprError as err:
        raise FitError(
            f"--weights {expr!r} is not an expression on the runs table: {err}"
        ) from None
    if w.shape != (len(runs),) or not np.isfinite(w).all() or (w < 0).any() or not w.any():
        raise FitError(
            f"--weights {expr!r} must give one finite, non-negative weight per run, not all "
            f"zero; got {w[:5].tolist()}{'...' if w.size > 5 else ''}"
        )
    return w


@dataclass
class Selection:
    """The runs of one fit after exclusions and the hold-out rule, and what follows from them."""

    fitted: pd.DataFrame
    """Usable runs that are not held out: what every approach fits."""
    held: pd.DataFrame
    """Usable held-out runs: what the extrapolation check predicts."""
    rule: str | None
    """The hold-out rule as resolved (None without one)."""
    weights: np.ndarray | None
    """Per-run weights of the parametric fit (None: equal)."""
    k: float
    """FLOP factor in C = k N D."""
    targets: list[float]
    """Target computes of the predictions."""
    band_c: np.ndarray
    """Compute values of the interval bands."""


def check_paths(source: str | Path, out_dir: str | Path) -> None:
    """Refuse an output folder that is a file, or that would overwrite or sit inside the source."""
    out = Path(out_dir)
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise FitError(f"--out {out}: {existing} is an existing file; give a folder")
    if str(source).startswith("wandb:"):
        return
    src, res = Path(source).resolve(), out.resolve()
    if res == src or src in {res / name for name in OUTPUTS}:
        raise FitError(f"--out {out} would overwrite the source {source}; write elsewhere")
    if src.is_dir() and res.is_relative_to(src):
        raise FitError(
            f"--out {out} is inside the source {source}, which scaling-fit would then read as "
            "runs; write elsewhere"
        )


def select(collected: Collected, config: FitConfig) -> Selection:
    """Drop outliers, hold out runs by the rule, weigh the rest; refuse an empty fit."""
    drop_highest_losses(collected, config.drop_highest)
    runs = collected.runs
    rule = apply_holdout(runs, config.holdout)
    usable = runs["exclusion_reason"] == ""
    fitted = runs[usable & ~runs["heldout"]].reset_index(drop=True)
    held = runs[usable & runs["heldout"]].reset_index(drop=True)
    if fitted.empty:
        raise FitError(
            f"no runs left to fit in {collected.source}: {len(runs)} collected, "
            f"{int((~usable).sum())} excluded, {len(held)} held out"
        )
    targets = list(config.targets) or [10 * float(runs.loc[usable, "C"].max())]
    return Selection(
        fitted=fitted,
        held=held,
        rule=rule,
        weights=run_weights(fitted, config.weights) if config.weights else None,
        k=flops_factor(fitted),
        targets=targets,
        band_c=band_grid(runs.loc[usable, "C"].to_numpy(float), targets),
    )


def _starts(law: Law, grid: int | None, seed: int) -> np.ndarray | None:
    if grid is None:
        return None
    full = law.start_grid()
    if grid >= len(full):
        return full
    return full[np.random.default_rng(seed).choice(len(full), grid, replace=False)]


def collect_for(source: str | Path, config: FitConfig) -> Collected:
    """The runs of ``source`` collected as ``config`` says, with its loss target (fit_on)."""
    collected = collect(
        source,
        convention=config.convention,
        group=config.group,
        sweep=config.sweep,
        columns=config.columns,
        curves=config.curves,
        curve_columns=config.curve_columns,
    )
    return with_target(collected, config.fit_on)


def fit_parametric(sel: Selection, config: FitConfig) -> tuple[FitResult, np.ndarray | None]:
    """The law of ``config`` fitted to the selected runs, and its bootstrap parameters."""
    law = get_law(config.law)
    result = fit(
        law,
        sel.fitted,
        starts=_starts(law, config.grid, config.seed),
        delta=config.huber_delta,
        asymmetry=config.asymmetry,
        weights=sel.weights,
    )
    if not config.bootstrap:
        return result, None
    groups = sel.fitted["run"].to_numpy()
    boot = bootstrap(
        result, sel.fitted, n=config.bootstrap, seed=config.seed, groups=groups, weights=sel.weights
    )
    return result, boot


def holdout_check(result: FitResult, sel: Selection) -> HoldoutCheck:
    """Observed against predicted loss of the held-out runs."""
    if sel.held.empty:
        return HoldoutCheck(rule=sel.rule or "", error="the hold-out rule selected no usable runs")
    pred = result.predict(sel.held)
    obs = sel.held["loss"].to_numpy(float)
    rel = (pred - obs) / obs
    return HoldoutCheck(
        rule=sel.rule or "",
        runs=[
            HoldoutRun(str(r), float(o), float(p), float(e))
            for r, o, p, e in zip(sel.held["run"], obs, pred, rel)
        ],
        mean_abs_rel_error=float(np.mean(np.abs(rel))),
        max_abs_rel_error=float(np.max(np.abs(rel))),
    )


def fit_approaches(report: FitReport, collected: Collected, sel: Selection) -> None:
    """Fill ``report`` with each approach asked for, the law fit and the hold-out check."""
    config = report.config
    common = dict(targets=sel.targets, band_c=sel.band_c)
    if 3 in config.approaches or sel.rule:
        result, boot = fit_parametric(sel, config)
        law_fit = law_fit_from(result, boot, config.ci)
        if config.law == "chinchilla":
            block, rows = approach3(result, sel.k, boot, config.ci, **common)
            report.approach3 = approach3_from(law_fit, block, rows)
        else:
            why = f"approach 3 needs the chinchilla law, not {config.law!r}"
            report.approach3, report.law_fit = Approach3Result(error=why), law_fit
        if sel.rule:
            report.holdout = holdout_check(result, sel)
    boot_args = (config.bootstrap, config.seed, config.ci)
    if 1 in config.approaches:
        cur = collected.curves
        cur = cur[cur["run"].isin(set(sel.fitted["run"]))] if not cur.empty else cur
        report.approach1 = approach1_from(approach1(cur, sel.fitted, sel.k, *boot_args, **common))
    if 2 in config.approaches:
        block = approach2(
            sel.fitted, sel.k, *boot_args, config.budget_tol_dex, heldout=sel.held, **common
        )
        report.approach2 = approach2_from(block)


def report_warnings(report: FitReport) -> list[str]:
    """What a reader must not miss: implausible exponents, a hold-out that selected nothing."""
    out = []
    if report.approach3 is not None and (why := report.approach3.implausible()):
        out.append(why)
    if report.holdout is not None and report.holdout.error:
        out.append(f"hold-out rule {report.config.holdout!r}: {report.holdout.error}")
    return out


def run_fit(
    source: str | Path, out_dir: str | Path, config: FitConfig | None = None, *, quiet: bool = False
) -> FitReport:
    """Collect ``source``, fit as ``config`` says, write ``out_dir``; the fit report."""
    config = FitConfig() if config is None else config
    check_paths(source, out_dir)
    collected = collect_for(source, config)
    sel = select(collected, config)
    report = FitReport(
        source=str(source),
        config=config,
        convention=collected.convention,
        k=sel.k,
        n_runs=len(collected.runs),
        n_fitted=len(sel.fitted),
        excluded=[Exclusion(**e) for e in collected.excluded],
        heldout_runs=[str(r) for r in sel.held["run"]],
        bootstrap=Bootstrap(n=config.bootstrap, seed=config.seed, ci=config.ci),
        targets=sel.targets,
    )
    fit_approaches(report, collected, sel)
    report.warnings = [*collected.warnings, *report_warnings(report)]
    paths = write_outputs(out_dir, report, collected)
    for warning in report.warnings:
        print(f"scaling-fit: warning: {warning}", file=sys.stderr)
    if not quiet:
        print(summary_text(report, paths))
    if config.wandb:
        _log_to_wandb(Path(out_dir), str(source), config)
    return report


def run_curves_fit(
    sources: Sequence[str],
    out_dir: str | Path,
    config: FitConfig,
    *,
    quiet: bool = False,
    figure: bool = True,
) -> FitReport:
    """Fit a law of whole loss curves (``config.law`` a curve law: multipower, tissue or a joint form) to the curves of a
    run store or of curve files; write fit.json, report.md, curves.csv and the figure."""
    for source in sources:
        check_paths(source, out_dir)
    report, table = run_curve_fit(sources, out_dir, config)
    paths = write_curve_outputs(out_dir, report, table)
    if figure:
        # Imported only when drawing: matplotlib takes ~1 s to import.
        from analysis.plots import plot_curve_results

        paths.update(
            {p.name: p for p in plot_curve_results(Path(out_dir), Path(out_dir) / "figures")}
        )
    for warning in report.warnings:
        print(f"scaling-fit: warning: {warning}", file=sys.stderr)
    if not quiet:
        print(f"{curves_summary(report)}\nwrote {', '.join(str(p) for p in paths.values())}")
    return report


def _log_to_wandb(out_dir: Path, source: str, config: FitConfig) -> None:
    # Imported only when asked for: wandb and matplotlib take ~2 s to import.
    from analysis.wandb_log import log_analysis

    default = source[len("wandb:") :] if source.startswith("wandb:") else "scaling"
    log_analysis(out_dir, config.wandb_project or default, config.group, config.wandb_mode)


def summary_text(report: FitReport, paths: dict[str, Path]) -> str:
    """A few lines for the terminal: the law, the exponents with intervals, the files."""
    pct = f"  ({round(100 * report.bootstrap.ci)}% intervals)" if report.bootstrap.n else ""
    lines = [
        f"{report.n_fitted} runs fitted ({len(report.excluded)} excluded, "
        f"{len(report.heldout_runs)} held out); FLOPs: {report.convention}"
    ]
    a3 = report.approach3
    if a3 is not None and a3.fit is not None:
        lines.append(
            f"{approach3_line(a3.fit)}   ({a3.fit.n_best}/{a3.fit.n_starts} starts reached the "
            "best optimum)"
        )
    if (lf := report.law_fit) is not None:
        params = ", ".join(f"{name} = {fmt_est(est)}" for name, est in lf.params.items())
        lines.append(f"{lf.law}: {lf.registry_law.formula}; {params}{pct}")
    for i, ap in report.approaches().items():
        if ap.allocation is None:
            lines.append(f"approach {i}: {ap.error}")
        else:
            lines.append(
                f"approach {i}: a = {fmt_est(ap.allocation.a)}, b = {fmt_est(ap.allocation.b)}{pct}"
            )
    ho = report.holdout
    if ho is not None and not ho.error:
        lines.append(f"hold-out ({ho.rule}): mean |relative error| {ho.mean_abs_rel_error:.2%}")
    lines.append(f"wrote {', '.join(str(p) for p in paths.values())}")
    return "\n".join(lines)


# ---- the command line: one option per FitConfig field, generated from the dataclass ----

ALIASES = {"targets": ("--target",)}  # the flag names of earlier releases


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _list_of(item: type) -> Callable[[str], list]:
    kind = "integers" if item is int else "numbers"

    def parse(text: str) -> list:
        try:
            return [item(v) for v in (p.strip() for p in text.split(",")) if v]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {kind}"
            ) from None

    return parse


def _mapping(text: str) -> dict[str, str]:
    try:
        return parse_columns(text, tuple(p.split("=", 1)[0].strip() for p in text.split(",")))
    except CollectError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _option(tp: Any) -> dict[str, Any]:
    """argparse keywords for a FitConfig field of type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _option(next(a for a in args if a is not type(None)))
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is list:
        return {"type": _list_of(args[0]), "metavar": "V1,V2"}
    if origin is dict:
        return {"type": _mapping, "metavar": "KEY=VALUE,..."}
    return {"type": tp}


def parser() -> argparse.ArgumentParser:
    """The command-line interface of scaling-fit: source, --out, --config and one option per
    `FitConfig` field (given options override the chosen config field by field)."""
    p = _Parser(
        prog="scaling-fit",
        description="Fit Chinchilla/Kaplan scaling laws to a run store, a W&B project or a CSV; "
        "or, with a curve law (--law multipower, tissue, multipower_joint, ...), a law of whole loss curves to its runs' curves.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "source",
        nargs="+",
        help="run-store folder, wandb:entity/project, W&B offline folder or CSV; with --law "
        "curve laws (multipower, tissue, multipower_joint, ...): a run-store folder or curve CSV files (step, lr, loss)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--config",
        default=None,
        help=f"named fit settings in conf/fit/ ({', '.join(named_configs())}) or a YAML file; "
        "the options below override its fields",
    )
    docs, hints = field_docs(FitConfig), typing.get_type_hints(FitConfig)
    for f in dataclasses.fields(FitConfig):
        flags = (f"--{f.name.replace('_', '-')}", *ALIASES.get(f.name, ()))
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f"{docs[f.name]} (default: {default})".replace("%", "%%")
        p.add_argument(*flags, dest=f.name, help=help_text, **_option(hints[f.name]))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scaling-fit``."""
    args = vars(parser().parse_args(argv))
    sources, out, name = args.pop("source"), args.pop("out"), args.pop("config")
    try:
        config = FitConfig.load(name, args)
        if config.law in CURVE_LAWS:
            run_curves_fit(sources, out, config)
        elif len(sources) > 1:
            raise FitError(
                f"{len(sources)} sources {sources}: give one (several only as curve files of "
                f"--law {' or '.join(CURVE_LAWS)})"
            )
        else:
            run_fit(sources[0], out, config)
    except (FitError, CollectError, FitConfigError) as err:
        message = " ".join(str(err).split())
        print(f"scaling-fit: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
