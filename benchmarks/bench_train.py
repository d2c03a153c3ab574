"""Training speed and start-up: the framework's Lightning step against a hand-written loop.

Throughput: the real `train()` (Lightning loop, run recorder, checkpoint callback, data stream)
and a hand-written PyTorch loop over the same model, data, fused AdamW, gradient clipping and
LR schedule, in one process with the same threads, alternated (hand-written first on even
repeats, framework first on odd ones) so machine noise hits both alike; the median of the
repeats. Both time the same optimiser steps WARMUP_STEPS+1..steps, and no evaluation falls
inside the framework's timed windows (the hand-written loop evaluates nothing). Target:
ratio >= 0.98.

Start-up: wall time from process launch to the end of the first optimiser step, for
`scaling-train` and for a plain PyTorch process that imports torch and runs one step of the
same model, then where the time goes (`python -X importtime`, self time by package).

    python benchmarks/bench_train.py [--size 1M] [--steps 40] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from scaling.config import register_configs
from scaling.data import TokenBatches
from scaling.model import GPT
from scaling.module import lr_multiplier, measured_cpu_peak_flops
from scaling.train import plan_run, train

ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 5  # excluded from both timings (allocator warm-up, first-step overheads)
FIRST_STEP = "first step done"  # what the plain start-up process prints after its step

# -X importtime self time is attributed to a module's top-level package, then to these groups
IMPORT_GROUPS = {
    "torch": ("torch", "torchgen", "functorch"),  # listed first: its own imports are its own
    "lightning": (
        "lightning",
        "lightning_fabric",
        "lightning_utilities",
        "pytorch_lightning",
        "torchmetrics",
    ),
    "hydra+omegaconf": ("hydra", "omegaconf", "antlr4", "yaml"),
    "numpy": ("numpy",),
    "wandb": ("wandb",),
    "ours": ("scaling", "analysis", "hydra_plugins"),
}

# A plain PyTorch process: import torch and the model file, build the model (config pickled by
# the benchmark), run one fused-AdamW step with clipping on random tokens.
PLAIN_STEP = f"""
import pickle, sys, torch
from scaling.model import GPT
torch.set_num_threads(int(sys.argv[2]))
cfg, batch = pickle.load(open(sys.argv[1], "rb"))
model = GPT(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
x = torch.randint(cfg.vocab_size, (batch, cfg.seq_len))
_, loss = model(x, x)
loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
opt.step()
print("{FIRST_STEP}", loss.item(), file=sys.stderr, flush=True)
"""


def compose_cfg(size: str, steps: int, runs: Path, threads: int, extra: list[str]) -> DictConfig:
    """The benchmark's run config: real composition, W&B off, rows every WARMUP_STEPS steps."""
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
                "train.n_evals=1",  # evaluations at step 1 and the last step, outside the timing
                f"train.checkpoint_every={10 * steps}",
                *extra,
            ],
        )


def framework_tokens_per_s(cfg: DictConfig) -> float:
    """Run the real `train()`; its own throughput over the windows after WARMUP_STEPS."""
    train(cfg)
    metrics = next((Path(cfg.runs_dir) / cfg.experiment).glob("*/metrics.csv"))
    with metrics.open() as f:
        rows = [r for r in csv.DictReader(f) if r["tokens_per_s"] and r["train_loss"]]
    steps = [int(r["step"]) for r in rows]
    tps = [float(r["tokens_per_s"]) for r in rows]
    # window (a, b] is timed from the end of step a's row to the end of step b's row; the
    # first windows hold the warm-up steps and the evaluation at step 1, so they are left out
    spans = [(b - a, t) for a, b, t in zip(steps, steps[1:], tps[1:]) if a >= WARMUP_STEPS]
    tokens = sum(n for n, _ in spans) * cfg.train.batch_size * cfg.model.seq_len
    seconds = sum(n * cfg.train.batch_size * cfg.model.seq_len / t for n, t in spans)
    return tokens / seconds


def plain_tokens_per_s(cfg: DictConfig) -> float:
    """A hand-written loop: the same model, data, optimiser, clipping and schedule."""
    plan = plan_run(cfg)
    conf = plan.conf
    torch.manual_seed(conf.train.seed)
    model = GPT(conf.model)
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
    tokens = (steps - WARMUP_STEPS) * conf.train.batch_size * conf.model.seq_len
    return tokens / (time.perf_counter() - t0)


def seconds_to_line(cmd: list[str], marker: str) -> tuple[float, str]:
    """Run cmd; seconds from launch until a stderr line contains marker, and all of stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen, lines = None, []
    for line in proc.stderr:
        lines.append(line)
        if seen is None and marker in line:
            seen = time.perf_counter() - t0
    if proc.wait() != 0 or seen is None:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{''.join(lines[-30:])}")
    return seen, "".join(lines)


def startup_commands(size: str, threads: int, tmp: Path, overrides: list[str]) -> dict:
    """The two start-up commands: `scaling-train` for one step, and the plain PyTorch step."""
    script = Path(sys.executable).parent / "scaling-train"
    train_cmd = [sys.executable, *([str(script)] if script.exists() else ["-m", "scaling.train"])]
    train_cmd += [
        f"model={size}",
        "train.steps=1",
        f"runs_dir={tmp / 'startup'}",
        "experiment=run{i}",  # a fresh run folder per launch, so none is skipped as done
        "logger.wandb.mode=disabled",
        "train.n_evals=1",
        "train.eval_tokens=1",  # one held-out window: the step-1 evaluation costs nothing
        "trainer.progress_every_s=1",  # the recorder's progress line marks the first step
        f"trainer.num_threads={threads}",
        *overrides,
    ]
    cfg = compose_cfg(size, 1, tmp, threads, list(overrides))
    conf = plan_run(cfg).conf
    cfg_file = tmp / "model.pkl"
    cfg_file.write_bytes(pickle.dumps((conf.model, conf.train.batch_size)))
    plain_cmd = [sys.executable, "-c", PLAIN_STEP, str(cfg_file), str(threads)]
    return {"scaling-train": (train_cmd, " step 1/1 "), "plain PyTorch": (plain_cmd, FIRST_STEP)}


def import_split(stderr: str) -> Counter[str]:
    """Seconds of import self time per IMPORT_GROUPS group, from `-X importtime` output.

    A module counts for the outermost third-party group in its chain of importers (so sympy,
    pulled in through torch._dynamo by lightning, is lightning's; torchmetrics, scipy and
    matplotlib are too), else for ours if we import it; "other" is the rest.
    """
    split: Counter[str] = Counter()
    stack: list[tuple[int, str | None, str]] = []  # (indent, outermost third-party, nearest)
    rows = re.findall(r"import time:\s+(\d+) \|\s+\d+ \|( *)([\w.]+)", stderr)
    for us, indent, name in reversed(
        rows
    ):  # children print before parents: reversed, parents first
        while stack and stack[-1][0] >= len(indent):
            stack.pop()
        root = name.split(".")[0]
        own = next((g for g, roots in IMPORT_GROUPS.items() if root in roots), None)
        outer, near = stack[-1][1:] if stack else (None, "other")
        outer = outer or (own if own != "ours" else None)
        near = own or near
        stack.append((len(indent), outer, near))
        split[outer or near] += int(us) / 1e6
    return split


def print_startup(size: str, threads: int, tmp: Path, overrides: list[str], repeats: int) -> None:
    """Time both start-up commands (median of repeats) and split their imports by package."""
    print(f"\nstart-up to the end of the first optimiser step (model={size}, median of {repeats}):")
    groups = [*IMPORT_GROUPS, "other"]
    print(f"{'':<15}{'to step 1':>10}{'imports':>9}{'rest':>7}   imports by package (s)")
    launches = iter(range(10**6))
    for name, (cmd, marker) in startup_commands(size, threads, tmp, overrides).items():

        def launch(*flags: str, cmd: list[str] = cmd, marker: str = marker) -> tuple[float, str]:
            i = next(launches)
            return seconds_to_line([cmd[0], *flags, *(c.format(i=i) for c in cmd[1:])], marker)

        wall = statistics.median(launch()[0] for _ in range(repeats))
        traced, err = launch("-X", "importtime")
        split = import_split(err)
        # tracing slows the imports down, not the rest: rest = traced - traced imports
        imports = max(0.0, wall - (traced - sum(split.values())))
        scale = imports / sum(split.values())
        parts = ", ".join(f"{g} {split[g] * scale:.2f}" for g in groups)
        print(f"{name:<15}{wall:>9.2f}s{imports:>8.2f}s{wall - imports:>6.2f}s   {parts}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(
        f"(python itself starts in {time.perf_counter() - t0:.2f} s; 'rest' is start-up, "
        "config, corpus, model, Lightning's Trainer and the first step)"
    )


def throughput(args: argparse.Namespace, runs: Path) -> tuple[list[float], list[float]]:
    """Tokens/s of the framework and the hand-written loop, alternated, one pair per repeat."""
    fw, plain = [], []
    for r in range(args.repeats):
        cfg = compose_cfg(
            args.size, args.steps, runs, args.threads, [f"experiment=bench{r}", *args.overrides]
        )
        if r % 2 == 0:
            plain.append(plain_tokens_per_s(cfg))
            fw.append(framework_tokens_per_s(cfg))
        else:
            fw.append(framework_tokens_per_s(cfg))
            plain.append(plain_tokens_per_s(cfg))
    return fw, plain


def main() -> None:
    """Print the throughput table and the start-up split."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1M")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-startup", action="store_true", help="throughput only")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.seq_len=256")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    peak = measured_cpu_peak_flops()
    t_peak = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        fw, plain = throughput(args, Path(tmp))
        cfg = compose_cfg(args.size, args.steps, Path(tmp), args.threads, args.overrides)
        plan = plan_run(cfg)
        fpt = plan.fpt["chinchilla"]
        f, p = statistics.median(fw), statistics.median(plain)
        print(
            f"model {args.size}: N={plan.counts.non_embedding:,} (total {plan.counts.total:,}), "
            f"batch {plan.conf.train.batch_size}x{plan.conf.model.seq_len} tokens, "
            f"{args.threads} threads, {args.steps} steps (first {WARMUP_STEPS} excluded), "
            f"median of {args.repeats} alternated repeats; load average {load:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end, {os.cpu_count()} cores"
        )
        print(
            f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s in {t_peak:.2f} s "
            "(the MFU denominator, measured once per CPU training process; chinchilla FLOPs)"
        )
        print(f"{'':<22}{'tokens/s':>12}{'MFU':>8}")
        print(f"{'hand-written loop':<22}{p:>12,.0f}{p * fpt / peak:>8.1%}")
        print(f"{'scaling (Lightning)':<22}{f:>12,.0f}{f * fpt / peak:>8.1%}")
        print(f"ratio framework / hand-written: {f / p:.3f}  (target >= 0.98)")
        print(
            f"all repeats: framework {[round(x) for x in fw]}, "
            f"hand-written {[round(x) for x in plain]}, "
            f"ratios {[round(a / b, 3) for a, b in zip(fw, plain)]}"
        )
        if not args.no_startup:
            print_startup(args.size, args.threads, Path(tmp), args.overrides, args.repeats)


if __name__ == "__main__":
    main()
