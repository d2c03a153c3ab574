"""Training speed: the framework's Lightning step against a hand-written PyTorch loop.

Same model, batch, data, optimiser (fused AdamW, grad clipping, LR schedule) and threads, in
one process, alternated A/B/A/B so machine noise hits both alike. Prints tokens/s, MFU and the
ratio (target >= 0.95 on CPU for a ~1e6-parameter model), then the process start-up time of
`scaling-train` to the end of a one-step run.

    python benchmarks/bench_train.py [--size 1M] [--steps 40] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from scaling.config import register_configs
from scaling.data import TokenBatches
from scaling.module import LitGPT, lr_multiplier, measured_cpu_peak_flops
from scaling.train import plan_run, train

ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 5  # excluded from both timings (allocator warm-up, first-step overheads)


def compose_cfg(size: str, steps: int, runs: Path, threads: int, extra: list[str]):  # noqa: ANN201
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3", job_name="bench"):
        return compose(
            "train",
            overrides=[
                f"model={size}",
                f"train.steps={steps}",
                f"runs_dir={runs}",
                "logger.wandb.mode=disabled",
                f"trainer.num_threads={threads}",
                "trainer.progress_every_s=0",
                f"train.log_every={WARMUP_STEPS}",
                "train.n_evals=1",
                f"train.checkpoint_every={10 * steps}",
                *extra,
            ],
        )


def framework_tokens_per_s(cfg) -> float:  # noqa: ANN001
    """Run the real `train()` and read its throughput after the warm-up window."""
    summary = train(cfg).summary
    run = Path(cfg.runs_dir) / cfg.experiment / summary.run
    with (run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["tokens_per_s"] and r["train_loss"]]
    steps = [int(r["step"]) for r in rows]
    tps = [float(r["tokens_per_s"]) for r in rows]
    # windows after the first: total tokens / total time
    spans = [(b - a, t) for a, b, t in zip(steps, steps[1:], tps[1:])]
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    total_tokens = sum(s for s, _ in spans) * tokens_per_step
    return total_tokens / sum(s * tokens_per_step / t for s, t in spans)


def plain_tokens_per_s(cfg) -> float:  # noqa: ANN001
    """A hand-written loop: the same model, data, optimiser, clipping and schedule."""
    plan = plan_run(cfg)
    conf = plan.conf
    torch.manual_seed(conf.train.seed)
    model = LitGPT(conf, conf.model, plan.budget, plan.lr).model
    o = conf.optim
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": o.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=plan.lr,
        betas=tuple(o.betas),
        eps=o.eps,
        fused=o.fused or None,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, functools.partial(lr_multiplier, total_steps=plan.budget.steps, sched=conf.schedule)
    )
    batches = TokenBatches(
        plan.corpus.train_tokens(), conf.train.batch_size, conf.model.seq_len, conf.train.seed
    )
    steps = plan.budget.steps
    for k in range(steps):
        if k == WARMUP_STEPS:
            t0 = time.perf_counter()
        x, y = batches.batch(k)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        sched.step()
    loss.item()
    return (
        (steps - WARMUP_STEPS)
        * conf.train.batch_size
        * conf.model.seq_len
        / (time.perf_counter() - t0)
    )


def startup_seconds(size: str, runs: Path, extra: list[str]) -> float:
    """Wall time of `python -m scaling.train` for a one-step run: imports + set-up + 1 step."""
    cmd = [
        sys.executable,
        "-m",
        "scaling.train",
        f"model={size}",
        "train.steps=1",
        f"runs_dir={runs}",
        "logger.wandb.mode=disabled",
        "train.n_evals=1",
        "experiment=startup",
        *extra,
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    """Print the comparison table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1M")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.seq_len=256")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        fw, plain = [], []
        for r in range(args.repeats):
            cfg = compose_cfg(
                args.size, args.steps, runs, args.threads, [f"experiment=bench{r}", *args.overrides]
            )
            plain.append(plain_tokens_per_s(cfg))
            fw.append(framework_tokens_per_s(cfg))
        plan = plan_run(cfg)
        fpt = plan.fpt["chinchilla"]
        peak = measured_cpu_peak_flops()
        start = startup_seconds(args.size, runs, args.overrides)
    f, p = statistics.median(fw), statistics.median(plain)
    print(
        f"model {args.size}: N={plan.counts.non_embedding:,} (total {plan.counts.total:,}), "
        f"batch {plan.conf.train.batch_size}x{plan.conf.model.seq_len} tokens, {args.threads} threads, "
        f"{args.steps} steps (first {WARMUP_STEPS} excluded), median of {args.repeats}"
    )
    print(
        f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (MFU denominator; chinchilla FLOPs)"
    )
    print(f"{'':<22}{'tokens/s':>12}{'MFU':>8}")
    print(f"{'hand-written loop':<22}{p:>12,.0f}{p * fpt / peak:>8.1%}")
    print(f"{'scaling (Lightning)':<22}{f:>12,.0f}{f * fpt / peak:>8.1%}")
    print(f"ratio framework / hand-written: {f / p:.3f}  (target >= 0.95)")
    print(
        f"all repeats: framework {[round(x) for x in fw]}, hand-written {[round(x) for x in plain]}"
    )
    print(
        f"process start-up to the end of a 1-step run (scaling-train, model={args.size}): {start:.1f} s"
    )


if __name__ == "__main__":
    main()
