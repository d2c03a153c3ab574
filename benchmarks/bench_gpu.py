"""GPU benchmark: the 10M, 100M and 1B sizes trained for a few hundred steps on prepared shards.

For each size: tokens/s, MFU against the device's bf16 peak, peak memory, torch.compile time
and the data loader's share of step time, from a training loop of the project's model (bf16
autocast, fused AdamW, gradient clipping, torch.compile: what `trainer=gpu` runs) fed by
`TokenBatches` over memory-mapped shards. Then the real `scaling-train trainer=gpu
trainer.compile=true` for a few steps (the Lightning path, end to end), and, when two GPUs
exist, one 2-process DDP step (NCCL) whose gradients must agree across ranks. Targets: MFU >= 40%
for 100M and 1B, loader share < 1%; the whole command within 8 minutes on one H100/H200.

Without a GPU it exits 2 with a message; `--dry-run` checks the same path on CPU with a tiny
size in float32 (no compile, no MFU).

    python benchmarks/bench_gpu.py [--sizes 10M,100M,1B] [--steps 300] [--seq-len 1024]
        [--corpus PREPARED_FOLDER] [--no-compile] [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from scaling.config import ModelConfig, register_configs
from scaling.data import TokenBatches, train_parts
from scaling.family import flops_per_token
from scaling.model import GPT
from scaling.module import _GPU_BF16_PEAK
from scaling.shards import open_corpus
from scaling.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import synthetic_corpus  # noqa: E402  (a sibling script)

ROOT = Path(__file__).resolve().parents[1]
BATCH = {"10M": 64, "100M": 32, "1B": 16}  # sequences per step at seq_len 1024 (H100-sized)
WARMUP = 10
BUDGET_S = 150.0  # per size: stop timing early past this (the 8-minute total)


def model_config(size: str, seq_len: int, vocab: int) -> ModelConfig:
    """conf/model/<size>.yaml as a ModelConfig with this context and vocabulary."""
    path = ROOT / "conf" / "model" / f"{size}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"--sizes: unknown size {size!r}; valid: {valid}")
    node = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(path), {"seq_len": seq_len}
    )
    node.vocab_size = vocab
    return OmegaConf.to_object(node)


def bench_size(size: str, corpus: Path, a: argparse.Namespace, dev: torch.device) -> dict:
    """Train `size` for a.steps steps; tokens/s, MFU, memory, compile time, loader share."""
    prepared = open_corpus(corpus)
    cfg = model_config(size, a.seq_len, prepared.padded_vocab_size)
    batch = a.batch or BATCH.get(size, 8)
    batches = TokenBatches(train_parts(prepared), batch, a.seq_len, seed=0)
    torch.manual_seed(0)
    model = GPT(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=dev.type == "cuda")
    run = torch.compile(model) if a.compile else model
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    load_s, step_s, first_s, t_start = [], [], 0.0, time.perf_counter()
    for k in range(a.steps):
        t0 = time.perf_counter()
        x, y = (t.to(dev, non_blocking=True) for t in batches.batch(k))
        t1 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            _, loss = run(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        t2 = time.perf_counter()
        if k == 0:
            first_s = t2 - t0
        elif k >= WARMUP or a.dry_run:
            load_s.append(t1 - t0)
            step_s.append(t2 - t0)
        if time.perf_counter() - t_start > BUDGET_S and len(step_s) >= 10:
            break
    step = statistics.median(step_s)
    tps = batch * a.seq_len / step
    peak = next((v for k, v in _GPU_BF16_PEAK.items() if k in torch.cuda.get_device_name(dev)),
                None) if cuda else None  # fmt: skip
    fpt = flops_per_token(cfg)["chinchilla"]
    return {
        "size": size,
        "steps": len(step_s) + 1,
        "tokens/step": batch * a.seq_len,
        "tokens/s": tps,
        "MFU": tps * fpt / peak if peak else float("nan"),
        "peak GiB": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan"),
        "compile s": first_s - step,
        "loader share": statistics.median(load_s) / step,
        "loss": float(loss.item()),
    }


def real_train(corpus: Path, runs: Path) -> str:
    """The real Lightning path, trainer=gpu with torch.compile, 10M for 20 steps."""
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3", job_name="bench_gpu"):
        cfg = compose("train", overrides=[
            "model=10M", "train.steps=20", "trainer=gpu", "trainer.compile=true",
            "data=prepared", f"data.path={corpus}", f"runs_dir={runs}",
            "logger.wandb.mode=disabled",
        ])  # fmt: skip
    s = train(cfg).summary
    return f"status {s.status.value}, val_loss {s.final_val_loss}, {s.tokens_per_s:.0f} tokens/s"


def _ddp_worker(rank: int, corpus: str, out: str) -> None:
    """One rank of a 2-process DDP step; rank 0 writes whether the gradients agree."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("nccl", rank=rank, world_size=2)
    dev = torch.device("cuda", rank)
    prepared = open_corpus(corpus)
    torch.manual_seed(0)
    model = GPT(model_config("10M", 1024, prepared.padded_vocab_size)).to(dev)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank])
    x, y = TokenBatches(train_parts(prepared), 16, 1024, seed=rank).batch(0)
    t0 = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = ddp(x.to(dev), y.to(dev))
    loss.backward()
    torch.cuda.synchronize(dev)
    g = torch.cat([p.grad.flatten() for p in model.parameters()])
    gathered = [torch.empty_like(g) for _ in range(2)]
    dist.all_gather(gathered, g)
    if rank == 0:
        agree = torch.equal(gathered[0], gathered[1])
        Path(out).write_text(f"step {time.perf_counter() - t0:.3f} s, gradients agree: {agree}")
    dist.destroy_process_group()


def ddp_step(corpus: Path, tmp: Path) -> str:
    """Spawn the 2-process DDP step; its one-line result."""
    out = tmp / "ddp.txt"
    torch.multiprocessing.spawn(_ddp_worker, args=(str(corpus), str(out)), nprocs=2)
    return out.read_text()


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, checked (ValueError names the bad one)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default=None, help="comma-separated sizes (default 10M,100M,1B)")
    ap.add_argument("--steps", type=int, default=None, help="steps per size (default 300)")
    ap.add_argument("--seq-len", type=int, default=None, help="context length (default 1024)")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default by size)")
    ap.add_argument("--corpus", help="a scaling-prepare folder (default: 64 MB generated)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip compile")
    ap.add_argument("--no-real", dest="real", action="store_false", help="skip scaling-train")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny size, float32: the path only")
    a = ap.parse_args(argv)
    tiny = a.dry_run
    a.sizes = (a.sizes or ("10k" if tiny else "10M,100M,1B")).split(",")
    a.steps = a.steps or (3 if tiny else 300)
    a.seq_len = a.seq_len or (32 if tiny else 1024)
    a.batch = a.batch or (4 if tiny else None)
    a.compile = a.compile and not tiny
    for name in ("steps", "seq_len", "batch"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} {v} must be >= 1")
    if a.corpus and not Path(a.corpus).is_dir():
        raise ValueError(f"--corpus {a.corpus} is not a folder (give a scaling-prepare folder)")
    for s in a.sizes:
        model_config(s, a.seq_len, 256)  # an unknown size fails here, before any work
    return a


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran, 2 for bad arguments or no GPU."""
    try:
        a = parse(argv)
    except ValueError as err:
        print(f"bench_gpu: {err}", file=sys.stderr)
        return 2
    if not a.dry_run and not torch.cuda.is_available():
        print(
            "bench_gpu: no CUDA GPU found; this benchmark measures GPUs. "
            "Run it on a GPU machine, or add --dry-run to check the path on CPU.",
            file=sys.stderr,
        )
        return 2
    dev = torch.device("cpu" if a.dry_run else "cuda")
    name = "CPU (dry run)" if a.dry_run else torch.cuda.get_device_name(dev)
    with tempfile.TemporaryDirectory(prefix="bench_gpu-") as tmp:
        t0 = time.perf_counter()
        corpus = Path(a.corpus) if a.corpus else synthetic_corpus(Path(tmp), 1 if a.dry_run else 64)
        print(
            f"device: {name}; corpus {corpus} prepared/opened in {time.perf_counter() - t0:.0f} s"
        )
        head = f"{'size':>5} {'steps':>5} {'tok/step':>8} {'tokens/s':>10} {'MFU':>6} "
        print(head + f"{'peak GiB':>8} {'compile s':>9} {'loader':>7} {'loss':>6}")
        for size in a.sizes:
            r = bench_size(size, corpus, a, dev)
            print(
                f"{r['size']:>5} {r['steps']:>5} {r['tokens/step']:>8} {r['tokens/s']:>10.4g} "
                f"{r['MFU']:>6.1%} {r['peak GiB']:>8.1f} {r['compile s']:>9.1f} "
                f"{r['loader share']:>7.2%} {r['loss']:>6.3f}",
                flush=True,
            )
        if not a.dry_run and a.real:
            print(
                f"scaling-train trainer=gpu compile, 10M x 20 steps: {real_train(corpus, Path(tmp))}"
            )
        if not a.dry_run and torch.cuda.device_count() >= 2:
            print(f"DDP, 2 processes, 10M: {ddp_step(corpus, Path(tmp))}")
        elif not a.dry_run:
            print("DDP: skipped (one GPU)")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
