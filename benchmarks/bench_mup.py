"""muP transfer check (the classic plot of Yang et al. 2022, Fig. 1): does the best learning
rate stay put as the model widens?

One learning-rate grid (factor 2 apart) over four widths at fixed depth, batch and tokens,
under standard parametrisation and under muP (base width = the narrowest), each run the real
`scaling-train` path (`train()`) into a run store. Prints the final validation loss of every
run, the best learning rate per width and how many factor-2 grid steps it moves across the
widths (target under muP: at most one), and draws the two panels (SP left, muP right) into
docs/figures/mup_transfer.{png,pdf}. Completed runs are skipped on a rerun, so the figure
redraws from the run store in seconds.

    python benchmarks/bench_mup.py [--widths 32 64 128 256] [--lr-exponents -12 ... -6]
        [--steps 300] [--jobs 2] [--runs-dir runs]   # the runs land in runs/bench_mup/
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from hydra import compose, initialize_config_dir  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.style import paper_style, save, size_colors, width_inches  # noqa: E402
from scaling.config import register_configs  # noqa: E402
from scaling.train import plan_run, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ("sp", "mup")
TITLES = {"sp": "Standard parametrisation", "mup": "muP"}


def overrides(param: str, width: int, lr: float, args: argparse.Namespace) -> list[str]:
    """The scaling-train overrides of one run of the grid."""
    mup = ["model.parametrization=mup", f"model.base_width={args.widths[0]}"]
    return [
        "model=10k",
        f"model.name={param}-w{width}",
        f"model.n_layer={args.layers}",
        f"model.n_head={args.heads}",
        f"model.d_model={width}",
        f"model.seq_len={args.seq_len}",
        *(mup if param == "mup" else []),
        f"optim.lr={lr!r}",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        "train.n_evals=1",
        f"train.eval_tokens={args.eval_tokens}",
        f"train.log_every={args.steps}",
        "train.checkpoint_every=0",
        "data=stdlib",
        f"data.max_bytes={args.max_bytes}",
        f"runs_dir={args.runs_dir}",
        "experiment=bench_mup",
        f"run_name={param}-w{width}-lr{lr:.3g}",
        "logger.wandb.mode=disabled",
        "trainer.num_threads=1",
        "trainer.progress_every_s=0",
    ]


def compose_run(ov: list[str]):  # noqa: ANN201
    """The composed train config for `ov`, as `scaling-train` would build it."""
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3", job_name="bench_mup"):
        return compose("train", overrides=ov)


def quiet() -> None:
    """No warning that checkpoint_every=0 saves no checkpoint: short runs, meant."""
    logging.getLogger("scaling.train").setLevel(logging.ERROR)


def run_one(job: tuple[str, int, float, list[str]]) -> tuple[str, int, float, float]:
    """Train (or skip, if done) one run; its final validation loss (nan if it diverged)."""
    quiet()
    param, width, lr, ov = job
    s = train(compose_run(ov)).summary
    loss = s.final_val_loss if s.status.value == "completed" else None
    return param, width, lr, float("nan") if loss is None else float(loss)


def best_lrs(losses: dict[tuple[str, int, float], float], param: str, widths, lrs) -> dict:
    """width -> the grid LR of the lowest final loss (nan losses never win)."""
    best = {}
    for w in widths:
        finite = [(losses[param, w, lr], lr) for lr in lrs if math.isfinite(losses[param, w, lr])]
        best[w] = min(finite)[1] if finite else float("nan")
    return best


def grid_steps(best: dict[int, float]) -> float:
    """How far the best LR moves across the widths, in factor-2 grid steps (max over min)."""
    v = [x for x in best.values() if math.isfinite(x)]
    return math.log2(max(v) / min(v)) if v else float("nan")


def print_table(losses: dict, param: str, widths, lrs, best: dict[int, float]) -> None:
    """Final losses of one parametrisation, a row per width, the best marked with '*'."""
    print(f"\n{TITLES[param]}: final val loss (nats/token); * = best LR of the width")
    print("width  " + " ".join(f"{lr:>9.2e}" for lr in lrs))
    for w in widths:
        cells = [f"{losses[param, w, lr]:>8.4f}{'*' if lr == best[w] else ' '}" for lr in lrs]
        print(f"{w:>5}  " + " ".join(cells))
    edge = [w for w in widths if best[w] in (lrs[0], lrs[-1])]
    if edge:
        print(f"warning: best LR at the edge of the grid for widths {edge}; widen --lr-exponents")


def draw(losses: dict, widths, lrs, best: dict[str, dict[int, float]], stem: Path, base: int):
    """The two-panel figure: loss vs LR per width, SP left, muP right, best LRs marked."""
    colors = size_colors(widths)
    finite = [v for v in losses.values() if math.isfinite(v)]
    lo = min(finite)
    hi = min(max(finite), lo + 1.5)  # the interesting basin; blown-up runs leave the top
    with paper_style():
        fig = Figure(figsize=(width_inches("double"), 2.6))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, param in zip(axes, PARAMS):
            for w in widths:
                y = [losses[param, w, lr] for lr in lrs]
                ax.plot(lrs, y, "-o", color=colors[w], ms=2.5, lw=1.0, label=f"{w}")
                b = best[param][w]
                if math.isfinite(b):
                    ax.plot([b], [losses[param, w, b]], "*", color=colors[w], ms=8, mec="k",
                            mew=0.4, zorder=5)  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xlabel("peak learning rate")
            moved = grid_steps(best[param])
            title = TITLES[param] + (f" (base width {base})" if param == "mup" else "")
            ax.set_title(f"{title}\nbest LR moves {moved:.0f} factor-2 steps")
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        axes[0].set_ylabel("final validation loss (nats/token)")
        axes[1].legend(title="width", loc="upper right")
        return save(fig, stem)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256],
                   help="d_model of each width; the first is muP's base width")  # fmt: skip
    p.add_argument("--lr-exponents", type=int, nargs="+", default=list(range(-12, -5)),
                   help="the LR grid as powers of two (default 2^-12 .. 2^-6)")  # fmt: skip
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-tokens", type=int, default=8192)
    p.add_argument("--max-bytes", type=int, default=3_000_000, help="stdlib corpus bytes")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "mup_transfer",
                   help="figure path without suffix (PNG and PDF are written)")  # fmt: skip
    args = p.parse_args(argv)
    if len(args.lr_exponents) < 2 or len(args.widths) < 2:
        p.error("need at least two widths and two learning rates")
    if sorted(args.widths) != args.widths or args.widths[0] < 1:
        p.error(f"--widths {args.widths} must be increasing positive integers")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or reuse) the grid, print the tables and the movement, draw the figure."""
    args = parse_args(argv)
    quiet()
    widths = args.widths
    lrs = [2.0**k for k in sorted(args.lr_exponents)]
    jobs = [(p, w, lr, overrides(p, w, lr, args)) for p in PARAMS for w in widths for lr in lrs]
    for *_, ov in jobs:  # every setting checked (and the corpus prepared) before any training
        plan = plan_run(compose_run(ov))
        prev = plan.store.read_summary()
        if prev is not None and prev.config_hash != plan.config_hash:
            print(
                f"bench_mup: error: {plan.store.root} holds a run of another config (a setting "
                "or the config schema changed since); pass another --runs-dir or move it aside",
                file=sys.stderr,
            )
            return 2
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        losses = {(p, w, lr): loss for p, w, lr, loss in pool.map(run_one, jobs)}
    print(f"{len(jobs)} runs ({args.steps} steps of {args.batch_size}x{args.seq_len} tokens, "
          f"{args.layers} layers) in {time.perf_counter() - t0:.0f} s, {args.jobs} jobs")  # fmt: skip
    best = {p: best_lrs(losses, p, widths, lrs) for p in PARAMS}
    for p in PARAMS:
        print_table(losses, p, widths, lrs, best[p])
    print("\nbest LR per width, and how far it moves across the widths:")
    for p in PARAMS:
        cells = ", ".join(f"{w}: {best[p][w]:.2e}" for w in widths)
        print(f"  {p:>3}: {cells}; moves {grid_steps(best[p]):.0f} factor-2 steps")
    ok = grid_steps(best["mup"]) <= 1
    print(f"target (muP moves <= 1 step): {'met' if ok else 'NOT met'}")
    paths = draw(losses, widths, lrs, best, args.figure, widths[0])
    print("figure:", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
