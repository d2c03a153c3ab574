"""``scaling-compare``: collect and fit two ladders, compare them, write the results folder.

The comparison itself (settings, frontiers, multiplier, crossover, the typed result and its
report section) is `analysis.compare`; the figure is `analysis.compare_plot`; this module runs
them in order and is the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.cli import _option, _Parser, check_paths
from analysis.collect import CollectError, collect
from analysis.compare import (
    SIDES,
    CompareConfig,
    CompareError,
    CompareReport,
    FittedLadder,
    common_units,
    compare_fits,
    fit_ladders,
    markdown_report,
    named_configs,
    summary_text,
)
from analysis.compare_plot import plot_compare
from analysis.fit import FitError
from analysis.fitconfig import FitConfigError
from analysis.results import to_plain
from contract import atomic_write_text, field_docs
from contract import resolve_wandb_mode as resolve_mode


def write_outputs(out_dir: Path, report: CompareReport, sides: list[FittedLadder]) -> list[Path]:
    """compare.json, report.md, each ladder's runs table and the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [report.save(out_dir / "compare.json")]
    atomic_write_text(out_dir / "report.md", markdown_report(report))
    paths.append(out_dir / "report.md")
    for s, name in zip(sides, SIDES):
        s.collected.runs.to_csv(out_dir / f"runs_{name}.csv", index=False)
        paths.append(out_dir / f"runs_{name}.csv")
    runs = [s.selection.fitted for s in sides]
    paths += plot_compare(report, runs, out_dir / "figures" / "compare")
    return paths


def run_compare(
    source_a: str | Path,
    source_b: str | Path,
    out_dir: str | Path,
    config: CompareConfig | None = None,
    *,
    quiet: bool = False,
) -> CompareReport:
    """Collect and fit both ladders, compare them, write ``out_dir``; the comparison."""
    config = CompareConfig() if config is None else config
    for source in (source_a, source_b):
        check_paths(source, out_dir)
    collected = []
    for source, which in ((source_a, "a"), (source_b, "b")):
        side = config.side(which)
        collected.append(
            collect(source, convention=config.convention, group=side.group, columns=side.columns)
        )
    unit_a, unit_b, warnings = common_units(*collected, config)
    sides, joint = fit_ladders(*collected, config)
    report = compare_fits(sides, config, (unit_a, unit_b), joint)
    report.warnings = [*warnings, *report.warnings]
    paths = write_outputs(Path(out_dir), report, sides)
    for warning in report.warnings:
        print(f"scaling-compare: warning: {warning}", file=sys.stderr)
    if not quiet:
        print(summary_text(report, paths))
    if config.wandb:
        log_compare(Path(out_dir), report, config)
    return report


def log_compare(out_dir: Path, report: CompareReport, config: CompareConfig) -> Path:
    """Log the comparison (multiplier table, figure, summary, compare.json) as a W&B run."""
    # Imported only when asked for: wandb takes ~2 s to import.
    import wandb

    source = str(report.a.source)
    project = config.wandb_project or (source[6:] if source.startswith("wandb:") else "scaling")
    groups = [g for g in (config.group_a, config.group_b) if g]
    curve = report.multiplier
    table = pd.DataFrame(
        {"C": curve.C, "multiplier": curve.value, "loss_a": curve.loss_a, "loss_b": curve.loss_b}
    )
    if curve.ci is not None:
        table["multiplier_low"], table["multiplier_high"] = curve.ci
    run = wandb.init(
        project=project,
        group=groups[0] if len(groups) == 1 else None,
        job_type="compare",
        name="compare-" + "-vs-".join(groups or ["A", "B"]),
        dir=str(out_dir),
        mode=resolve_mode(config.wandb_mode),
        config=to_plain(config) | {"source_a": report.a.source, "source_b": report.b.source},
        settings=wandb.Settings(init_timeout=30),
    )
    try:
        png = out_dir / "figures" / "compare.png"
        run.log(
            {
                "multiplier": wandb.Table(dataframe=table.fillna(float("inf"))),
                "figures/compare": wandb.Image(str(png)),
            }
        )
        summary = {f"multiplier/C={t.C:.3g}": t.multiplier.value for t in report.targets}
        summary["crossover/C"] = report.crossover.C[0] if report.crossover.C else None
        run.summary.update(summary)
        artifact = wandb.Artifact("compare", type="compare")
        artifact.add_file(str(out_dir / "compare.json"))
        run.log_artifact(artifact)
        run_dir = Path(run.dir).parent
    finally:
        wandb.finish()
    return run_dir


# ---- the command line: one option per CompareConfig field, generated from the dataclass ----


def parser() -> argparse.ArgumentParser:
    """The command-line interface of scaling-compare: two sources, --out, --config and one option
    per `CompareConfig` field (given options override the chosen config field by field)."""
    p = _Parser(
        prog="scaling-compare",
        description="Recipe B against recipe A: fit both ladders and report the effective compute "
        "multiplier of B over A against C (with bootstrap intervals), its value at targets and the "
        "crossover compute where the ranking flips. Sources as for scaling-fit.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "source_a",
        help="ladder A (the reference): run store, wandb:entity/project, W&B offline folder or CSV",
    )
    p.add_argument("source_b", help="ladder B (the new recipe), the same kinds of source")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--config",
        default=None,
        help=f"named settings in conf/compare/ ({', '.join(named_configs())}) or a YAML file; "
        "the options below override its fields",
    )
    docs, hints = field_docs(CompareConfig), typing.get_type_hints(CompareConfig)
    for f in dataclasses.fields(CompareConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f"{docs[f.name]} (default: {default})".replace("%", "%%")
        p.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f.name, help=help_text, **_option(hints[f.name])
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scaling-compare``."""
    args = vars(parser().parse_args(argv))
    a, b, out, name = (
        args.pop("source_a"),
        args.pop("source_b"),
        args.pop("out"),
        args.pop("config"),
    )
    try:
        run_compare(a, b, out, CompareConfig.load(name, args))
    except (CompareError, FitError, CollectError, FitConfigError) as err:
        print(f"scaling-compare: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
