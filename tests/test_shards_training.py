"""Training on memory-mapped token shards: batches over shards, uint32 tokens, bits per byte,
unique tokens, and fitting on bits per byte."""

from __future__ import annotations

import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, compose_train
from omegaconf import OmegaConf

from analysis.collect import CollectError, collect, with_target
from analysis.fitconfig import FitConfig, FitConfigError
from scaling import data as scaling_data
from scaling import prepare as prep
from scaling.config import ConfigError, DataConfig, SweepSpec
from scaling.data import TokenBatches, load_corpus, train_parts, val_tokens_per_byte
from scaling.family import SIZES
from scaling.module import RunRecorder
from scaling.shards import DataError
from scaling.sweep.kinds import kind_of
from scaling.sweep.plan import plan_sweep
from scaling.sweep.spec import parse_spec
from scaling.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_gpu  # noqa: E402  (a script under benchmarks/)

SEQ = 16
SWEEP_TINY = tuple(o for o in TINY if not o.startswith("model="))


def _prepared(tmp_path: Path, n_docs: int = 400, chunks_per_shard: int = 2) -> Path:
    """A real scaling-prepare folder of byte tokens, several shards."""
    rng = random.Random(0)
    words = ["alpha", "beta", "über", "naïve", "def", "return", "x", "日本"]
    docs = [
        f"doc {i}: " + " ".join(rng.choices(words, k=rng.randint(5, 60))) for i in range(n_docs)
    ]
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    settings = prep.PrepareSettings(
        inputs=[str(src)], out=str(tmp_path / "ready"), chunk_bytes=2000,
        chunks_per_shard=chunks_per_shard, workers=1, progress=False, val_fraction=0.1,
    )  # fmt: skip
    prep.prepare(settings)
    return tmp_path / "ready"


def test_batches_over_shards_visit_every_window_once_per_epoch(tmp_path):
    corpus = load_corpus(DataConfig(name="text", path=str(_prepared(tmp_path))))
    parts = train_parts(corpus)
    assert len(parts) > 2 and all(isinstance(p, np.memmap) for p in parts)
    tb = TokenBatches(parts, 8, SEQ, seed=3)
    # every window of every shard, none spanning two shards
    want = sorted(tuple(p[i : i + SEQ + 1]) for p in parts for i in range(0, len(p) - SEQ, SEQ))
    assert tb.n_windows == len(want)
    per_epoch = tb.n_windows // 8
    seen = []
    for k in range(per_epoch):
        x, y = tb.batch(k)
        assert x.dtype == y.dtype and x.shape == (8, SEQ)
        assert np.array_equal(x[:, 1:].numpy(), y[:, :-1].numpy())
        seen += [tuple(r) + (int(y[i, -1]),) for i, r in enumerate(x.numpy().tolist())]
    # the epoch's windows are shard windows, none more often than the shards hold it
    assert not Counter(seen) - Counter(want) and len(seen) == per_epoch * 8


def test_batch_k_is_a_pure_function_of_seed_and_k(tmp_path):
    corpus = load_corpus(DataConfig(name="text", path=str(_prepared(tmp_path))))
    a = TokenBatches(train_parts(corpus), 8, SEQ, seed=1)
    b = TokenBatches(train_parts(corpus), 8, SEQ, seed=1)  # a resumed run: a fresh loader
    other = TokenBatches(train_parts(corpus), 8, SEQ, seed=2)
    for k in (0, 5, 3 * a.n_windows // 8 + 1, 1000):  # into later epochs too
        assert all(np.array_equal(u, v) for u, v in zip(a.batch(k), b.batch(k)))
    assert not np.array_equal(a.batch(0)[0], other.batch(0)[0])


def test_one_part_batches_as_the_single_array_did():
    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8)
    one, listed = TokenBatches(tokens, 4, SEQ, seed=0), TokenBatches([tokens], 4, SEQ, seed=0)
    for k in range(0, 200, 7):
        assert np.array_equal(one.batch(k)[0], listed.batch(k)[0])


def test_uint32_shards_one_epoch_is_every_window_once():
    """Token ids unique by position (beyond uint16): an epoch is exactly the shards' windows."""
    ends = np.cumsum([0, 20 * SEQ + 1, 7 * SEQ + 5, 9 * SEQ + 1])  # 20 + 7 + 9 = 36 windows
    shards = [np.arange(70_000 + a, 70_000 + b, dtype="<u4") for a, b in zip(ends, ends[1:])]
    tb = TokenBatches(shards, 4, SEQ, seed=0)
    assert tb.n_windows == 36
    rows = []
    for k in range(9):
        x, y = tb.batch(k)
        assert x.dtype.is_floating_point is False and int(x.min()) >= 70_000
        rows += [tuple(r) + (int(t[-1]),) for r, t in zip(x.tolist(), y.tolist())]
    want = [tuple(s[i : i + SEQ + 1].tolist()) for s in shards for i in range(0, len(s) - SEQ, SEQ)]
    assert sorted(rows) == sorted(want)


def test_training_on_shards_records_bits_per_byte_and_unique_tokens(tmp_path, tiny_cfg):
    folder = _prepared(tmp_path, n_docs=1500, chunks_per_shard=4)
    corpus = load_corpus(DataConfig(name="text", path=str(folder)))
    tpb = val_tokens_per_byte(corpus)
    meta = corpus.prepared.meta
    assert tpb == meta.n_tokens["val"] / meta.n_bytes["val"]
    assert 1.0 < tpb < 1.05  # a token per byte, plus one EOD token per document
    result = train(
        tiny_cfg(
            "train.steps=16", "data=prepared", f"data.path={folder}", "data.unique_tokens=2048"
        )
    )
    s = result.summary
    assert s.val_tokens_per_byte == pytest.approx(tpb)
    assert s.final_val_bpb == pytest.approx(s.final_val_loss * tpb / math.log(2))
    assert s.best_val_bpb == pytest.approx(s.best_val_loss * tpb / math.log(2))
    # U capped at 2,048 tokens = 63 windows of 32 (tiny_cfg: seq_len 32, batch 8): 2 epochs
    assert s.unique_tokens == 63 * 32
    assert s.epochs == pytest.approx(16 * 8 / 63)
    runs_dir = tmp_path / "runs"
    metrics = pd.concat(pd.read_csv(p) for p in runs_dir.rglob("metrics.csv"))
    evals = metrics[metrics["val_loss"].notna()]
    assert len(evals) and evals["val_bpb"].notna().all()
    np.testing.assert_allclose(evals["val_bpb"], evals["val_loss"] * tpb / math.log(2))
    # collect: the bpb column, and the fit target switched to it
    col = collect(runs_dir)
    assert col.runs["loss_bpb"].iloc[0] == pytest.approx(s.final_val_bpb)
    assert col.runs["U"].iloc[0] == s.unique_tokens
    on_bpb = with_target(col, "bpb")
    assert on_bpb.runs["loss"].iloc[0] == pytest.approx(s.final_val_bpb)
    assert on_bpb.curves["loss"].to_numpy() == pytest.approx(evals["val_bpb"].to_numpy())


def test_fit_on_is_checked():
    assert FitConfig(fit_on="bpb").fit_on == "bpb"
    with pytest.raises(FitConfigError, match="fit_on.*'nats'.*'loss', 'bpb'"):
        FitConfig(fit_on="nats")


def test_a_run_without_bytes_is_excluded_when_fitting_on_bpb(tmp_path, tiny_cfg):
    """A Markov corpus has no text: its runs have no bpb, and fit_on=bpb names why."""
    result = train(tiny_cfg("train.steps=2", "data=markov"))
    assert result.summary.final_val_bpb is None and result.summary.val_tokens_per_byte is None
    col = with_target(collect(tmp_path / "runs"), "bpb")
    assert col.runs["exclusion_reason"].iloc[0].startswith("no bits per byte")
    with pytest.raises(CollectError, match="unknown fit target 'x'"):
        with_target(col, "x")


def test_repeat_sweep_plans_epochs_over_fixed_unique_tokens(tmp_path, data_cache):
    folder = _prepared(tmp_path, n_docs=1500, chunks_per_shard=4)
    overrides = (
        "+sweep=repeat", *SWEEP_TINY, f"runs_dir={tmp_path / 'runs'}",
        f"data.cache_dir={data_cache}", "data=prepared", f"data.path={folder}",
        "sweep.sizes=[10k,20k]", "sweep.unique_tokens=[4096]", "sweep.epochs=[1,2,4]",
        "sweep.min_steps=1",
    )  # fmt: skip
    base = compose_train(*overrides)
    sp = plan_sweep(
        parse_spec(base.sweep), lambda ov: compose_train(*overrides, *ov), list(SIZES),
        OmegaConf.create({}), base,
    )  # fmt: skip
    assert len(sp.runs) == 6 and len({r.name for r in sp.runs}) == 6
    for r in sp.runs:
        assert "data.unique_tokens=4096" in r.overrides and r.name.endswith("-U4096")
    assert sorted({r.D for r in sp.runs}) == [4096, 8192, 16384]  # whole batches of 256 tokens


def test_unique_tokens_beyond_the_split_is_refused_before_training(tmp_path, tiny_cfg):
    folder = _prepared(tmp_path)
    with pytest.raises(DataError, match="data.unique_tokens=10000000 exceeds the training split"):
        train(
            tiny_cfg(
                "train.steps=3",
                "data=prepared",
                f"data.path={folder}",
                "data.unique_tokens=10000000",
            )
        )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("summary.json"))


def test_repeat_sweep_needs_positive_epochs():
    with pytest.raises(ConfigError, match="epochs must be > 0"):
        kind_of(SweepSpec(kind="repeat", sizes=["10k"], unique_tokens=[1e6], epochs=[0, 2]))


def test_bench_gpu_dry_run_trains_a_tiny_size_on_cpu(capsys):
    assert bench_gpu.main(["--dry-run", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("10k"))
    steps, tokens_per_step = row.split()[1:3]
    assert steps == "3" and tokens_per_step == str(4 * 32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_bench_gpu_without_a_gpu_says_so(capsys):
    assert bench_gpu.main([]) == 2
    assert "no CUDA GPU found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dry-run", "--sizes", "3M"], "unknown size '3M'; valid: ['100M', '100k'"),
        (["--dry-run", "--steps", "-1"], "--steps -1 must be >= 1"),
        (["--dry-run", "--corpus", "/nonexistent"], "--corpus /nonexistent is not a folder"),
    ],
)
def test_bench_gpu_refuses_bad_arguments(argv, message, capsys):
    assert bench_gpu.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_data_text_trains_on_shards_reuses_them_and_resumes_exactly(
    tmp_path, tiny_cfg, monkeypatch
):
    """data=text on a JSONL folder: prepared by scaling-prepare into the cache (shards, no
    whole-corpus array), a second run reuses it, and a crashed run resumes to the same losses."""
    folder = tmp_path / "jsonl"
    folder.mkdir()
    for k in range(3):
        docs = [
            f"part {k} doc {i}: " + " ".join(["alpha", "beta", "日本"] * (i % 40))
            for i in range(300)
        ]
        (folder / f"{k}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    cache = tmp_path / "cache"
    args = ("data=text", f"data.path={folder}", f"data.cache_dir={cache}", "data.val_fraction=0.1")
    args += ("train.steps=12", "train.checkpoint_every=4", "train.log_every=2")
    ref = train(tiny_cfg(*args, "experiment=ref")).summary
    (prepared,) = cache.glob("text-*")
    corpus = load_corpus(DataConfig(name="text", path=str(prepared)))
    assert ref.status.value == "completed" and ref.corpus_hash == corpus.content_hash
    assert list(prepared.glob("*.train.bin")) and not list(prepared.glob("train.bin"))
    assert ref.val_tokens_per_byte == pytest.approx(val_tokens_per_byte(corpus))

    def refuse(*a: object) -> None:
        raise AssertionError("prepared again")

    monkeypatch.setattr(scaling_data, "prepare", refuse)  # every later run reuses the shards
    real = RunRecorder.on_train_batch_end

    def crash_at_6(self, trainer, *a, **k):  # noqa: ANN001
        real(self, trainer, *a, **k)
        if trainer.global_step == 6:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(RunRecorder, "on_train_batch_end", crash_at_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cfg(*args, "experiment=crash"))
    monkeypatch.setattr(RunRecorder, "on_train_batch_end", real)
    resumed = train(tiny_cfg(*args, "experiment=crash")).summary
    assert resumed.resumed_from_step == 4 and resumed.corpus_hash == ref.corpus_hash
    assert resumed.final_val_loss == pytest.approx(ref.final_val_loss, abs=1e-4)
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [prepared.name]
