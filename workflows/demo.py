"""`scaling-demo` (`make demo`): the demo sweep on CPU -> fit approaches 1-3 -> report, figures.

Every step reuses what is already on disk: a second `scaling-demo` skips the finished runs (the
sweep is idempotent) and only refits and redraws, which takes seconds. The fit settings are
conf/fit/demo.yaml; the sweep is sweeps/demo.yaml.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from analysis.cli import run_fit
from analysis.fitconfig import FitConfig
from analysis.plots import plot_all
from analysis.results import FitReport
from analysis.wandb_log import log_analysis


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def parser() -> argparse.ArgumentParser:
    """The command line of scaling-demo."""
    ap = argparse.ArgumentParser(
        prog="scaling-demo",
        description="The demo end to end: train the demo sweep (sweeps/demo.yaml, 12 tiny "
        "GPTs on CPU), fit Chinchilla approaches 1-3 with bootstrap intervals "
        "(conf/fit/demo.yaml), write the report and draw the figures. A rerun trains nothing "
        "that is already done.",
    )
    ap.add_argument("--runs", default="runs", help="run store root (default: runs)")
    ap.add_argument("--out", default="results/demo", type=Path, help="results folder")
    ap.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples")
    ap.add_argument("--no-wandb", action="store_true", help="do not log the analysis to W&B")
    ap.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides for the demo sweep (e.g. trainer.num_threads=1)",
    )
    return ap


def run_sweep(runs: str, overrides: Sequence[str]) -> int:
    """Train the demo sweep in a child process (a Hydra multirun); its exit status."""
    cmd = [sys.executable, "-m", "scaling.train", "-m", "+sweep=demo", f"runs_dir={runs}"]
    cmd += list(overrides)
    print(" ".join(["scaling-train", *cmd[3:]]), flush=True)
    return subprocess.run(cmd, check=False).returncode


def print_summary(report: FitReport) -> None:
    """The fitted law and each approach's compute-optimal exponents, one line each."""
    a3 = report.approach3
    if a3 is not None and a3.fit is not None:
        params = ", ".join(f"{k}={v:.4g}" for k, v in a3.fit.values().items())
        print(f"Fitted law (approach 3, {a3.fit.law}): {params}")
    for i, res in report.approaches().items():
        alloc = res.allocation
        if alloc is not None:
            lo, hi = alloc.a.ci or (float("nan"), float("nan"))
            print(
                f"  approach{i}: N_opt ~ C^{alloc.a.value:.3f} [{lo:.3f}, {hi:.3f}],  "
                f"D_opt ~ C^{alloc.b.value:.3f}"
            )
        elif res.error:
            print(f"  approach{i}: not computed ({res.error})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo end to end; extra arguments are Hydra overrides for the sweep."""
    args = parser().parse_args(argv)
    t0 = time.perf_counter()

    _banner("1/3  demo sweep: training the model family on CPU (runs/demo)")
    code = run_sweep(args.runs, args.overrides)
    if code != 0:
        print(
            f"demo sweep failed (exit {code}); finished runs are kept in {args.runs}/demo and "
            "a rerun resumes from them",
            file=sys.stderr,
        )
        return code

    _banner("2/3  fit: Chinchilla approaches 1, 2 and 3 with bootstrap intervals")
    overrides = {} if args.bootstrap is None else {"bootstrap": args.bootstrap}
    report = run_fit(Path(args.runs) / "demo", args.out, FitConfig.load("demo", overrides))

    _banner("3/3  figures")
    for f in plot_all(args.out):
        if f.suffix == ".png":
            print(f"  {f}")
    if not args.no_wandb:
        run_dir = log_analysis(args.out, project="scaling", group="demo", mode="auto")
        print(f"W&B analysis run (job type 'analysis', group 'demo'): {run_dir}")

    print(f"\nDone in {time.perf_counter() - t0:.0f} s.")
    print_summary(report)
    print(
        f"Report: {args.out / 'report.md'}   fit: {args.out / 'fit.json'}   "
        f"figures: {args.out / 'figures'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
