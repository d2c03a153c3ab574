"""Curve laws on our own runs (issue 12): a WSD sweep predicts a grid of cosine runs.

Per size, one warmup-stable-decay run with cooldown branches from its checkpoints
(``sweeps/wsd_curves.yaml``) and, separately, cosine runs of the same three lengths trained
from scratch (``sweeps/cosine_curves.yaml``), all by the real trainer (Hydra multiruns into the
run store ``--runs``; a rerun skips finished runs). A curve law fitted on the WSD sweep's
validation-loss curves alone (per size, and jointly over the sizes) predicts each cosine run's
final validation loss (``--law``, default the multi-power law, and ``--law2``, default Tissue's
law with its run-store momentum window ``curve_decay_window``), against the reference "each
cosine run ends where its WSD twin ends" measured in the same run. Prints the relative errors
(target: mean <= 1%), the twins' run-to-run scatter, and the compute of the
WSD sweep against the cosine grid (the stable run counted once, each branch only for the steps
it trains itself), both measured from the runs' own summaries.

    .venv/bin/python benchmarks/bench_curve_runs.py                 # 3 sizes, a temp store
    .venv/bin/python benchmarks/bench_curve_runs.py --runs /tmp/curve_runs --sizes 10k,20k
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.curve_fit import CurveSet, fit_curves, store_curves  # noqa: E402
from analysis.fitconfig import FitConfig  # noqa: E402
from contract import read_summary  # noqa: E402

CONVENTION = "chinchilla"


def train_sweep(sweep: str, runs: Path, sizes: str, tokens: str, jobs: int) -> float:
    """Launch ``+sweep=<sweep>`` with the real trainer into ``runs``; wall seconds."""
    cmd = [
        sys.executable, "-m", "scaling.train", "-m", f"+sweep={sweep}", f"runs_dir={runs}",
        f"sweep.sizes=[{sizes}]", f"sweep.tokens=[{tokens}]", "logger.wandb.mode=disabled",
        "trainer.progress_every_s=0", f"hydra.launcher.n_jobs={jobs}",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"bench_curve_runs: {sweep} sweep failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    print(f"  {sweep}: {done.stdout.strip().splitlines()[-2]}")
    return time.perf_counter() - start


def sweep_flops(folder: Path) -> float:
    """FLOPs a sweep trained: every run's own steps (a branch's from its branch point)."""
    total = 0.0
    for path in folder.glob("*/summary.json"):
        s = read_summary(path)
        steps = s.steps
        if s.init_from:  # a cooldown branch trains only from its stable run's checkpoint on
            steps -= int(Path(s.init_from).stem.removeprefix("step"))
        total += steps * s.batch_size * s.seq_len * s.flops_per_token[CONVENTION]
    return total


def predict_finals(cset: CurveSet, held: list[str], law: str) -> dict[str, tuple[float, float]]:
    """Fit ``law`` on the curves of ``cset`` not in ``held``; (observed, predicted) final loss
    of each held-out curve, through the same path as ``scaling-fit``."""
    config = FitConfig(law=law, bootstrap=0, held_out_curves=held)
    _, rows = fit_curves(cset, config)
    last = rows[rows["kind"] == "held_out"].groupby("curve").tail(1)
    return {r.curve: (float(r.loss), float(r.predicted)) for r in last.itertuples()}


def subset(cset: CurveSet, keep: np.ndarray) -> CurveSet:
    """The curves of ``cset`` where ``keep``."""
    pick = lambda xs: None if xs is None else [x for x, k in zip(xs, keep) if k]  # noqa: E731
    return dataclasses.replace(
        cset,
        curves=pick(cset.curves),
        sizes=pick(cset.sizes),
        size_labels=pick(cset.size_labels),
        tokens_per_step=pick(cset.tokens_per_step),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", help="run store to train into and reuse (default: a temp dir)")
    ap.add_argument("--sizes", default="10k,20k,50k", help="model sizes (10k-100k)")
    ap.add_argument("--tokens", default="5e5,1e6,1.5e6", help="token counts per size")
    ap.add_argument("--jobs", type=int, default=2, help="parallel training jobs")
    ap.add_argument("--law", default="multipower", help="per-size curve law")
    ap.add_argument("--law2", default="tissue", help="a second per-size law ('' to skip)")
    ap.add_argument("--joint", default="multipower_joint", help="joint law ('' to skip)")
    ap.add_argument("--no-train", action="store_true", help="fit the runs already in --runs")
    args = ap.parse_args()
    runs = Path(args.runs or tempfile.mkdtemp(prefix="curve_runs_"))
    print(f"run store {runs}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    t_train = sum(
        train_sweep(s, runs, args.sizes, args.tokens, args.jobs)
        for s in ("wsd_curves", "cosine_curves")
        if not args.no_train
    )
    wsd, cos = store_curves(runs / "wsd_curves"), store_curves(runs / "cosine_curves")
    names = [f"cosine/{c.name}" for c in cos.curves]
    both = CurveSet(
        [*wsd.curves, *(dataclasses.replace(c, name=n) for c, n in zip(cos.curves, names))],
        wsd.make,
        [],
        sizes=[*wsd.sizes, *cos.sizes],
        size_labels=[*wsd.size_labels, *cos.size_labels],
        tokens_per_step=[*wsd.tokens_per_step, *cos.tokens_per_step],
    )
    labels = np.array(both.size_labels)
    t0 = time.perf_counter()
    per_size: dict[str, tuple[float, float]] = {}
    second: dict[str, tuple[float, float]] = {}
    for label in dict.fromkeys(labels):
        mine = subset(both, labels == label)
        held = [n for n in names if n in {c.name for c in mine.curves}]
        per_size |= predict_finals(mine, held, args.law)
        if args.law2:
            second |= predict_finals(mine, held, args.law2)
    t_size = time.perf_counter() - t0
    t0 = time.perf_counter()
    joint = predict_finals(both, names, args.joint) if args.joint else {}
    t_joint = time.perf_counter() - t0
    # the joint law's own test: the largest size never seen (its WSD runs held out too)
    largest = max(set(zip(both.sizes, both.size_labels)))[1]
    unseen_size = [c.name for c, s in zip(wsd.curves, wsd.size_labels) if s == largest]
    unseen = predict_finals(both, names + unseen_size, args.joint) if args.joint else {}

    # the reference: each cosine run guessed as its WSD twin's final loss (same size and D)
    twin = {f"cosine/{c.name}": float(c.loss[-1]) for c in wsd.curves}
    print("\nfinal validation loss of the cosine runs, predicted from the WSD sweep alone")
    head = f"{'cosine run':<24} {'observed':>9} {args.law:>12} {'err':>7}"
    head += f" {args.law2:>9} {'err':>7}" if second else ""
    print(head + (f" {args.joint:>17} {'err':>7}" if joint else ""))
    errs: dict[str, list[float]] = {"size": [], "second": [], "joint": [], "twin": []}
    for name in names:
        obs, pred = per_size[name]
        errs["size"].append(abs(pred / obs - 1))
        errs["twin"].append(abs(twin[name] / obs - 1))
        line = f"{name:<24} {obs:>9.4f} {pred:>12.4f} {errs['size'][-1]:>7.2%}"
        if second:
            errs["second"].append(abs(second[name][1] / obs - 1))
            line += f" {second[name][1]:>9.4f} {errs['second'][-1]:>7.2%}"
        if joint:
            errs["joint"].append(abs(joint[name][1] / obs - 1))
            line += f" {joint[name][1]:>17.4f} {errs['joint'][-1]:>7.2%}"
        print(line)
    if unseen:
        errs["unseen"] = [
            abs(unseen[n][1] / unseen[n][0] - 1)
            for n in names
            if n.split("/")[1].startswith(largest)
        ]
    for key, law in (
        ("size", f"{args.law} per size"),
        ("second", f"{args.law2} per size"),
        ("joint", args.joint),
        ("unseen", f"{args.joint}, {largest} never seen (its cosine runs)"),
        ("twin", "reference: the WSD run of the same size and D"),
    ):
        if errs.get(key):
            e = np.array(errs[key])
            verdict = "met" if e.mean() <= 0.01 else "MISSED"
            print(
                f"{law}: mean rel. error {e.mean():.2%} (max {e.max():.2%}); target <= 1%: {verdict}"
            )
    signed = np.array([twin[n] / per_size[n][0] - 1 for n in names])
    print(
        f"scatter: a WSD run's final loss against its cosine twin's is {signed.mean():+.2%} on "
        f"average with a spread (std) of {signed.std(ddof=1):.2%} from run to run: a law fitted "
        f"on the WSD runs inherits their noise, and the 1% target is at that scale"
    )
    print(
        "conclusion: on runs of 500-1500 steps, Tissue's law with its momentum window a fixed "
        "fraction of each run's steps (curve_decay_window, 0.05 by default on run stores; the "
        "paper's 0.999 is a 1000-step window, longer than these runs) is the law to use; the "
        "multi-power law's loss-drop saturation (C, beta, gamma) is not identified by WSD "
        "cooldowns alone and its predictions of a cosine run come out too low"
    )
    f_wsd, f_cos = sweep_flops(runs / "wsd_curves"), sweep_flops(runs / "cosine_curves")
    print(
        f"compute: WSD sweep {f_wsd:.3g} FLOPs vs cosine grid {f_cos:.3g} FLOPs "
        f"(ratio {f_wsd / f_cos:.2f}; the WSD sweep also gives every other cooldown length)"
    )
    print(
        f"wall: training {t_train:.0f} s (0 when reused), fits {t_size:.1f} s per size + "
        f"{t_joint:.1f} s joint; load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
