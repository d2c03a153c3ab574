"""scaling-prepare throughput against the tokenizer's own encode_batch, and peak memory.

    python benchmarks/bench_prepare.py            # a 0.2 GB generated JSONL corpus
    python benchmarks/bench_prepare.py --gb 2     # the 2 GB memory check

Generates a JSONL corpus in a temporary folder (deleted afterwards), trains a byte-level BPE
on a sample, then prints:
- the tokenizer's ``encode_batch`` on one core (TOKENIZERS_PARALLELISM=false), on the first
  ``--ref-mb`` of documents: the reference rate;
- ``scaling-prepare`` with that tokenizer.json on the same documents (as JSONL: parsing, the
  document-hash split, the workers' start-up, IPC and writing included), with 1 worker and with
  ``--workers`` (default 2): its rate per core as a share of the reference (target >= 80%) and
  the speed-up. The reference and each worker count are timed back to back in every repeat
  (best of ``--repeats`` each), and every figure carries the machine's load average, so the
  ratios hold on a shared machine whose load drifts;
- ``scaling-prepare --tokenizer bpe`` (streamed BPE training, then every document) on the whole
  corpus: wall time and the peak resident memory of its process tree (target < 1 GB), sampled
  from /proc every 0.1 s (summed over processes, so shared pages count more than once).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from scaling.prepare import PrepareSettings, prepare

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "it",
    "from",
    "at",
    "this",
    "be",
    "are",
    "an",
    "or",
    "was",
    "have",
    "not",
    "def",
    "return",
    "self",
    "import",
    "class",
    "if",
    "else",
    "elif",
    "for",
    "while",
    "try",
    "except",
    "print",
    "len",
    "range",
    "None",
    "True",
    "über",
    "naïve",
    "café",
    "日本語",
    "данные",
    "λ",
    "data",
    "model",
    "scaling",
    "loss",
    "tokens",
    "compute",
    "parameters",
    "law",
]


def generate(path: Path, gb: float, seed: int = 0) -> int:
    """A JSONL corpus of about `gb` GB of random-word documents; returns its byte count."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    target, n, i = gb * 1e9, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while n < target:
            lengths = rng.integers(20, 600, size=2000)
            picks = words[rng.integers(0, len(words), size=int(lengths.sum()))]
            lines, at = [], 0
            for ln in lengths:
                lines.append(json.dumps({"text": f"{i} " + " ".join(picks[at : at + ln])}) + "\n")
                at += ln
                i += 1
            block = "".join(lines)
            f.write(block)
            n += len(block.encode())
    return n


def first_docs(path: Path, mb: float) -> list[str]:
    """The first `mb` MB of documents of a JSONL file."""
    docs, n = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line)["text"])
            n += len(docs[-1].encode())
            if n >= mb * 1e6:
                break
    return docs


def tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            status = Path(f"/proc/{d}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        children.setdefault(int(fields["PPid"]), []).append(int(d))
        rss[int(d)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def run_prepare(args: list[str]) -> tuple[float, int]:
    """(wall seconds, peak tree RSS bytes) of one scaling-prepare call."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "scaling.prepare", *args, "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    out, err = proc.communicate()
    t.join()
    if proc.returncode:
        raise SystemExit(f"scaling-prepare failed:\n{err}")
    print("   ", out.strip())
    return time.perf_counter() - t0, peak


def load() -> str:
    """The machine's load average (1, 5, 15 min) and core count, printed with every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and of the children it reaped) of one call."""
    t0, c0 = time.perf_counter(), os.times()
    fn()
    c1 = os.times()
    used = sum(getattr(c1, k) - getattr(c0, k) for k in ("user", "system", "children_user"))
    return time.perf_counter() - t0, used + c1.children_system - c0.children_system


def main() -> None:
    """Run the benchmark and print rates, ratios and peak memory."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=0.2, help="size of the generated corpus")
    p.add_argument("--ref-mb", type=float, default=40, help="text for the throughput comparison")
    p.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary")
    p.add_argument("--workers", type=int, default=2, help="workers of the parallel run")
    p.add_argument(
        "--full-tokenizer",
        default="bpe",
        choices=["bpe", "byte"],
        help="tokenizer of the whole-corpus memory run (bpe: trained there on a streamed sample)",
    )
    p.add_argument("--tmp", default=tempfile.gettempdir(), help="where to generate the corpus")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is kept")
    a = p.parse_args()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # encode_batch on one core, like a worker
    work = Path(tempfile.mkdtemp(prefix="bench_prepare-", dir=a.tmp))
    try:
        corpus = work / "corpus.jsonl"
        t0 = time.perf_counter()
        size = generate(corpus, a.gb)
        print(f"corpus: {size / 1e9:.2f} GB JSONL generated in {time.perf_counter() - t0:.0f} s")
        docs = first_docs(corpus, a.ref_mb)
        ref_bytes = sum(len(d.encode()) for d in docs)
        (work / "ref.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(
            docs[:2000],
            trainers.BpeTrainer(
                vocab_size=a.vocab,
                show_progress=False,
                special_tokens=["<|endoftext|>"],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            ),
        )
        tok.save(str(work / "tok.json"))
        counts = sorted({1, a.workers})
        runs: dict[str, Callable[[], object]] = {
            "ref": lambda: tok.encode_batch(docs, add_special_tokens=False)
        }
        for w in counts:
            settings = PrepareSettings(
                inputs=[str(work / "ref.jsonl")],
                out=str(work / f"ref-w{w}"),
                tokenizer=str(work / "tok.json"),
                workers=w,
                progress=False,
            )
            # in this process: one worker runs inline, more are spawned (start-up included)
            runs[f"w{w}"] = lambda s=settings: (shutil.rmtree(s.out, True), prepare(s))
        secs: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(a.repeats):  # interleaved: each repeat times every run back to back
            for k, fn in runs.items():
                wall, used = timed(fn)
                secs[k].append(wall)
                cpu[k].append(used)
        ref = ref_bytes / min(secs["ref"])
        print(
            f"encode_batch, 1 core, {ref_bytes / 1e6:.0f} MB: {ref / 1e6:.2f} MB/s (reference) "
            f"[{load()}]"
        )
        rates = {w: ref_bytes / min(secs[f"w{w}"]) for w in counts}
        for w in counts:
            print(
                f"scaling-prepare, {w} worker(s): {rates[w] / 1e6:.2f} MB/s = "
                f"{rates[w] / w / ref:.0%} of encode_batch per core (target >= 80%), "
                f"{rates[w] / rates[1]:.2f}x one worker (incl. worker start-up) [{load()}]"
            )
        # the same ratios repeat by repeat: how much of the spread is the machine's load
        for i in range(a.repeats):
            r = ref_bytes / secs["ref"][i]
            per_core = ", ".join(
                f"{w} worker(s) {ref_bytes / secs[f'w{w}'][i] / w / r:.0%}" for w in counts
            )
            print(f"  repeat {i + 1}: reference {r / 1e6:.2f} MB/s; per core: {per_core}")
        # CPU seconds (this process and its reaped workers) do not count time spent waiting for
        # a core, so on a loaded machine they show the work per byte that wall time hides
        ref_cpu = ref_bytes / min(cpu["ref"])
        for w in counts:
            rate = ref_bytes / min(cpu[f"w{w}"])
            print(
                f"  CPU time, {w} worker(s): {rate / 1e6:.2f} MB per CPU-second = {rate / ref_cpu:.0%} "
                f"of encode_batch's {ref_cpu / 1e6:.2f} (all work, worker start-up included)"
            )
        secs, peak = run_prepare(
            [
                str(corpus),
                "--out",
                str(work / "full"),
                "--tokenizer",
                a.full_tokenizer,
                "--bpe-vocab-size",
                str(a.vocab),
                "--workers",
                str(a.workers),
            ]
        )
        print(
            f"scaling-prepare --tokenizer {a.full_tokenizer}, {size / 1e9:.2f} GB, {a.workers} workers: "
            f"{secs:.0f} s ({size / secs / 1e6:.1f} MB/s), peak memory {peak / 1e9:.2f} GB "
            f"= {peak / size:.2f}x the corpus (target < 1 GB) [{load()}]"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
