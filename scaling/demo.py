"""`make demo`: the demo sweep on CPU -> collect -> fit approaches 1-3 -> report and figures.

Every step reuses what is already on disk: a second `make demo` skips the finished runs (the
sweep is idempotent) and only refits and redraws, which takes seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo end to end; extra arguments are Hydra overrides for the sweep."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs", help="run store root (default: runs)")
    ap.add_argument("--out", default="results/demo", type=Path, help="results folder")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--no-wandb", action="store_true", help="do not log the analysis to W&B")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for the demo sweep")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    _banner("1/3  demo sweep: training the model family on CPU (runs/demo)")
    cmd = [
        sys.executable,
        "-m",
        "scaling.train",
        "-m",
        "+sweep=demo",
        f"runs_dir={args.runs}",
        *args.overrides,
    ]
    print(" ".join(["scaling-train", *cmd[3:]]), flush=True)
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        print(
            f"demo sweep failed (exit {done.returncode}); finished runs are kept in "
            f"{args.runs}/demo and a rerun resumes from them",
            file=sys.stderr,
        )
        return done.returncode

    _banner("2/3  fit: Chinchilla approaches 1, 2 and 3 with bootstrap intervals")
    from analysis.cli import run_fit

    result = run_fit(
        Path(args.runs) / "demo",
        args.out,
        n_bootstrap=args.bootstrap,
        targets=[1e13, 1e14],
        wandb=False,
    )

    _banner("3/3  figures")
    from analysis.plots import plot_all

    figures = plot_all(args.out)
    for f in figures:
        if f.suffix == ".png":
            print(f"  {f}")
    if not args.no_wandb:
        from analysis.wandb_log import log_analysis

        run_dir = log_analysis(args.out, project="scaling", group="demo", mode="auto")
        print(f"W&B analysis run (job type 'analysis', group 'demo'): {run_dir}")

    a3 = result.get("approach3", {})
    print(f"\nDone in {time.perf_counter() - t0:.0f} s.")
    if "E" in a3:
        print(
            f"Fitted law (approach 3): L(N, D) = {a3['E']:.3f} + {a3['A']:.4g} / N^{a3['alpha']:.3f}"
            f" + {a3['B']:.4g} / D^{a3['beta']:.3f}"
        )
    for k in ("approach1", "approach2", "approach3"):
        r = result.get(k, {})
        if "a" in r:
            ci = r.get("a_ci") or [float("nan")] * 2
            print(
                f"  {k}: N_opt ~ C^{r['a']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}],  D_opt ~ C^{r['b']:.3f}"
            )
        elif "error" in r:
            print(f"  {k}: not computed ({r['error']})")
    print(
        f"Report: {args.out / 'report.md'}   fit: {args.out / 'fit.json'}   "
        f"figures: {args.out / 'figures'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
