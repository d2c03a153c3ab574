"""The data loader's share of a training step: batches from memory-mapped token shards against
a training step of the `1M` model on CPU, measured in the same run, step by step.

A corpus of generated text (`--mb` megabytes of random words, byte tokens) is prepared with
`scaling-prepare` into several shards (or `--corpus` names a prepared folder); then, for each
of `--steps` steps, the time of `TokenBatches.batch(k)` fetched through the trainer's own
`BatchStream` + `DataLoader`, and of one optimiser step (forward, backward, clipping, fused
AdamW) of the model on that batch. Prints the medians and the loader's share. Target: < 1%.

    python benchmarks/bench_loader.py [--size 1M] [--steps 60] [--threads 2] [--mb 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from scaling import prepare as prep
from scaling.config import register_configs
from scaling.data import BatchStream, TokenBatches, train_parts
from scaling.model import GPT
from scaling.shards import open_corpus
from scaling.train import plan_run

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 5
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "return",
    "def",
    "self",
    "if",
    "else",
    "import",
    "from",
    "while",
    "class",
    "with",
    "as",
    "not",
]


def synthetic_corpus(folder: Path, mb: float, seed: int = 0) -> Path:
    """Prepare `mb` megabytes of random-word documents (byte tokens) into shards at `folder`."""
    rng = np.random.default_rng(seed)
    src = folder / "docs.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    words, written = np.array(WORDS), 0
    with src.open("w") as f:
        while written < mb * (1 << 20):  # documents of about 2 KB, 1,000 at a time
            block = rng.choice(words, (1000, 400))
            lines = "".join(json.dumps({"text": " ".join(row)}) + "\n" for row in block)
            f.write(lines)
            written += len(lines)
    settings = prep.PrepareSettings(
        inputs=[str(src)], out=str(folder / "corpus"), chunk_bytes=1 << 20,
        chunks_per_shard=4, workers=1, progress=False, val_fraction=0.02,
    )  # fmt: skip
    prep.prepare(settings)
    return folder / "corpus"


def compose_cfg(size: str, corpus: Path, runs: Path, threads: int, extra: list[str]):
    """The real training config of `size` on the prepared corpus (W&B off)."""
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3", job_name="bench"):
        return compose(
            "train",
            overrides=[
                f"model={size}", "train.steps=100", f"runs_dir={runs}", "data=prepared",
                f"data.path={corpus}", "logger.wandb.mode=disabled",
                f"trainer.num_threads={threads}", *extra,
            ],
        )  # fmt: skip


def measure(size: str, corpus: Path, steps: int, threads: int, tmp: Path) -> dict[str, float]:
    """Per step: the loader's batch time and the optimiser step's time (medians, seconds)."""
    conf = plan_run(compose_cfg(size, corpus, tmp / "runs", threads, [])).conf
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batches = TokenBatches(
        train_parts(open_corpus(corpus)), conf.train.batch_size, conf.model.seq_len, 0
    )
    loader = iter(DataLoader(BatchStream(batches, lambda: 0), batch_size=None, num_workers=0))
    model = GPT(conf.model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    load_s, step_s = [], []
    for k in range(steps + WARMUP):
        t0 = time.perf_counter()
        x, y = next(loader)
        t1 = time.perf_counter()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        t2 = time.perf_counter()
        if k >= WARMUP:
            load_s.append(t1 - t0)
            step_s.append(t2 - t1)
    return {
        "load": statistics.median(load_s),
        "step": statistics.median(step_s),
        "tokens_per_step": conf.train.batch_size * conf.model.seq_len,
        "shards": len(batches.shards),
        "windows": batches.n_windows,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the loader's share of a training step."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", default="1M", help="model size (conf/model/<size>.yaml)")
    ap.add_argument("--steps", type=int, default=60, help="timed steps (after 5 warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--mb", type=float, default=20, help="generated corpus size, megabytes")
    ap.add_argument("--corpus", help="a scaling-prepare folder to use instead")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.mb <= 0:
        print(f"bench_loader: --steps {args.steps} / --mb {args.mb} must be > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench_loader-") as tmp:
        corpus = Path(args.corpus) if args.corpus else synthetic_corpus(Path(tmp), args.mb)
        r = measure(args.size, corpus, args.steps, args.threads, Path(tmp))
    share = r["load"] / (r["load"] + r["step"])
    print(f"corpus: {corpus.name}, {r['shards']} shards, {r['windows']} windows")
    print(f"model {args.size}, {r['tokens_per_step']} tokens/step, {args.threads} threads")
    print(f"loader (BatchStream -> DataLoader): {r['load'] * 1e6:9.1f} us/batch (median)")
    print(f"training step:                      {r['step'] * 1e3:9.2f} ms/step (median)")
    print(f"loader share of step time:          {share:9.3%}  (target < 1%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
