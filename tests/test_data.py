"""Corpora, token files and batches: determinism, exact Markov entropy, clear errors."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer

from scaling import data as data_module
from scaling.config import ConfigError, DataConfig, MarkovConfig, Tokenizer
from scaling.data import (
    TEXT_DOC_BYTES,
    BatchStream,
    DataError,
    MarkovSource,
    TokenBatches,
    load_corpus,
    markov_source,
    val_batches,
)

SMALL = 300_000  # bytes of stdlib: big enough to batch, small enough to prepare in ~0.1 s


def stdlib_cfg(cache: Path, **kw: object) -> DataConfig:
    return DataConfig(name="stdlib", max_bytes=SMALL, cache_dir=str(cache), **kw)


def markov_cfg(cache: Path, **kw: object) -> DataConfig:
    m = MarkovConfig(**{"vocab_size": 8, "branching": 3, "n_tokens": 50_000, **kw})
    return DataConfig(name="markov", markov=m, cache_dir=str(cache))


# --------------------------------------------------------------------------- preparation


def test_stdlib_is_deterministic_and_cached(tmp_path: Path) -> None:
    a = load_corpus(stdlib_cfg(tmp_path / "a"))
    b = load_corpus(stdlib_cfg(tmp_path / "b"))
    assert a.content_hash == b.content_hash
    assert a.path != b.path
    for split in ("train.bin", "val.bin"):
        assert (a.path / split).read_bytes() == (b.path / split).read_bytes()
    assert a.vocab_size == 256 and a.dtype == "uint8" and a.entropy_rate is None
    assert a.n_train + a.n_val == SMALL
    assert a.n_val == round(SMALL * 0.02)
    meta = a.meta()
    assert meta["content_hash"] == a.content_hash and "standard library" in meta["source"]

    # second call: a cache hit that reads meta.json only, not the token files
    mtime = (a.path / "train.bin").stat().st_mtime_ns
    t0 = time.perf_counter()
    again = load_corpus(stdlib_cfg(tmp_path / "a"))
    assert time.perf_counter() - t0 < 1.0
    assert again == a
    assert (a.path / "train.bin").stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")] == [
        a.path.name
    ]


def test_stdlib_excludes_tests_and_site_packages(tmp_path: Path) -> None:
    from scaling.data import _stdlib_files

    _, rels = _stdlib_files()
    assert rels == sorted(rels) and all(r.endswith(".py") for r in rels)
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test"}
    assert not any(skip & set(r.split("/")) for r in rels)
    assert "os.py" in rels and "json/decoder.py" in rels


def test_corrupt_cache_is_reported(tmp_path: Path) -> None:
    c = load_corpus(stdlib_cfg(tmp_path))
    with open(c.path / "val.bin", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError, match="delete"):
        load_corpus(stdlib_cfg(tmp_path))


def test_settings_change_the_cache_key(tmp_path: Path) -> None:
    a = load_corpus(stdlib_cfg(tmp_path))
    b = load_corpus(stdlib_cfg(tmp_path, val_fraction=0.05))
    assert a.path != b.path
    # the same bytes, split elsewhere: the stream is a prefix-preserving re-cut
    assert bytes(a.train_tokens()[: b.n_train]) == bytes(b.train_tokens())


# --------------------------------------------------------------------------- markov


def two_state(a: float, b: float) -> MarkovSource:
    """P = [[1-a, a], [b, 1-b]]: pi = (b, a) / (a + b)."""
    succ = np.array([[0, 1], [0, 1]])
    probs = np.array([[1 - a, a], [b, 1 - b]])
    return MarkovSource(vocab_size=2, order=1, successors=succ, probs=probs)


def h2(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_markov_entropy_two_state_by_hand() -> None:
    a, b = 0.1, 0.4
    src = two_state(a, b)
    np.testing.assert_allclose(src.stationary, [b / (a + b), a / (a + b)], rtol=1e-12)
    want = b / (a + b) * h2(a) + a / (a + b) * h2(b)
    assert src.entropy_rate() == pytest.approx(want, rel=1e-12)


def empirical(tokens: np.ndarray, order: int, v: int) -> tuple[np.ndarray, float]:
    """Counts of (state, next symbol) and the plug-in conditional entropy (nats/token)."""
    t = tokens.astype(np.int64)
    state = np.zeros(len(t) - order, dtype=np.int64)
    for j in range(order):
        state = state * v + t[j : len(t) - order + j]
    counts = np.zeros((v**order, v))
    np.add.at(counts, (state, t[order:]), 1)
    p_joint = counts / counts.sum()
    p_cond = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    nz = counts > 0
    return counts, float(-(p_joint[nz] * np.log(p_cond[nz])).sum())


@pytest.mark.parametrize("order", [1, 2])
def test_markov_sample_matches_source(order: int) -> None:
    cfg = MarkovConfig(vocab_size=6, order=order, branching=3, seed=7)
    src = markov_source(cfg)
    n = 400_000
    tokens = src.sample(n, np.random.default_rng(0))
    counts, h_emp = empirical(tokens, order, 6)
    assert h_emp == pytest.approx(src.entropy_rate(), abs=0.01)
    # bigram (state -> symbol) frequencies match the transition matrix, zero off its support
    p_true = np.zeros((src.n_states, 6))
    np.put_along_axis(p_true, src.successors, src.probs, axis=1)
    freq = counts / counts.sum(axis=1, keepdims=True)
    assert np.abs(freq - p_true).max() < 0.03
    assert counts[p_true == 0].sum() == 0
    # and the states are visited in proportion to the stationary distribution
    np.testing.assert_allclose(counts.sum(axis=1) / counts.sum(), src.stationary, atol=0.01)


def test_markov_source_is_irreducible_aperiodic_and_seeded() -> None:
    cfg = MarkovConfig(vocab_size=5, order=2, branching=2, seed=3)
    src = markov_source(cfg)
    assert (src.stationary > 0).all()  # irreducible: every state recurrent
    assert 0 in src.successors[0]  # the self-loop on state 0 that makes it aperiodic
    assert all(len(set(row)) == 2 for row in src.successors.tolist())
    np.testing.assert_allclose(src.probs.sum(axis=1), 1.0)
    same = markov_source(cfg)
    assert np.array_equal(same.successors, src.successors)
    assert np.array_equal(same.probs, src.probs)
    other = markov_source(MarkovConfig(vocab_size=5, order=2, branching=2, seed=4))
    assert not np.array_equal(other.probs, src.probs)


def test_markov_corpus(tmp_path: Path) -> None:
    c = load_corpus(markov_cfg(tmp_path))
    src = markov_source(MarkovConfig(vocab_size=8, branching=3, n_tokens=50_000))
    assert c.entropy_rate == pytest.approx(src.entropy_rate(), rel=1e-12)
    assert c.vocab_size == 8 and c.n_train + c.n_val == 50_000 and c.n_val == 1000
    assert int(c.train_tokens().max()) < 8
    assert c.meta()["entropy_rate"] == c.entropy_rate
    assert load_corpus(markov_cfg(tmp_path)).content_hash == c.content_hash
    assert load_corpus(markov_cfg(tmp_path, seed=99)).content_hash != c.content_hash


def test_markov_config_checks() -> None:
    with pytest.raises(ConfigError, match="branching"):
        MarkovConfig(vocab_size=4, branching=5)
    with pytest.raises(ConfigError, match="states"):
        MarkovConfig(vocab_size=4096, order=2)
    with pytest.raises(ConfigError, match="tokenizer"):
        DataConfig(name="markov", tokenizer=Tokenizer.bpe)


# --------------------------------------------------------------------------- user text


def text_cfg(cache: Path, path: Path, **kw: object) -> DataConfig:
    return DataConfig(name="text", path=str(path), cache_dir=str(cache), **kw)


def _docs(corpus: object) -> list[bytes]:
    """Every document of a data=text corpus (train then val), cut at its EOD tokens."""
    prepared = corpus.prepared  # type: ignore[attr-defined]
    out = []
    for split in ("train", "val"):
        for tokens, offsets in zip(prepared.shard_tokens(split), prepared.doc_offsets(split)):
            assert all(tokens[b - 1] == prepared.eod_id for b in offsets[1:])
            out += [bytes(tokens[a : b - 1].astype(np.uint8)) for a, b in zip(offsets, offsets[1:])]
    return out


def _lines(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = np.array(["héllo", "wörld", "def", "return", "x", "日本", "data"], dtype=object)
    return [f"{i} " + " ".join(rng.choice(words, size=rng.integers(2, 20))) for i in range(n)]


def test_text_file_is_cut_into_documents_at_line_ends(tmp_path: Path) -> None:
    text = "\n".join(_lines(8000)) + "\n"  # ~300 KB: ~75 documents of ~4 KB
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    c = load_corpus(text_cfg(tmp_path / "cache", tmp_path / "a.txt", val_fraction=0.05))
    docs = _docs(c)
    assert c.prepared is not None and c.vocab_size == 320 and c.dtype == "uint16"  # 256 + EOD
    assert sorted(docs) == sorted(_pieces(text.encode(), TEXT_DOC_BYTES))
    assert all(d.endswith(b"\n") for d in docs)  # cut at line ends
    assert c.n_val == c.prepared.n_tokens("val") > 0  # the split: by a hash of each document
    assert c.n_train + c.n_val == len(text.encode()) + len(docs)  # a byte per token, plus EOD


def _pieces(data: bytes, size: int) -> list[bytes]:
    """Lines gathered into pieces of at least `size` bytes (the last one: what is left)."""
    out, piece = [], b""
    for line in data.splitlines(keepends=True):
        piece += line
        if len(piece) >= size:
            out, piece = [*out, piece], b""
    return out + ([piece] if piece else [])


def test_text_folder(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    files = {f"f{i:02d}.py": "\n".join(_lines(20, seed=i)) for i in range(30)}
    files |= {"sub/c.md": "third " * 300}
    for rel, text in files.items():
        (root / rel).write_text(text)
    (root / ".hidden").write_text("never")
    c = load_corpus(text_cfg(tmp_path / "cache", root, val_fraction=0.2))
    assert sorted(_docs(c)) == sorted(t.encode() for t in files.values())  # a file: a document
    assert c.prepared is not None and c.prepared.meta.n_docs["val"] > 0
    (root / "blob.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"blob\.bin is not UTF-8"):  # named, not skipped
        load_corpus(text_cfg(tmp_path / "cache", root, val_fraction=0.2))


def test_text_jsonl_files_and_folders_read_their_text_field(tmp_path: Path) -> None:
    docs = [f"document number {i} " * 20 for i in range(200)]
    root = tmp_path / "shards"
    root.mkdir()
    for k in range(2):
        rows = [
            json.dumps({"id": i, "body": d}) for i, d in enumerate(docs[100 * k : 100 * k + 100])
        ]
        (root / f"part-{k}.jsonl").write_text("\n".join(rows) + "\n\n")
    c = load_corpus(text_cfg(tmp_path / "cache", root, jsonl_key="body", val_fraction=0.1))
    assert sorted(_docs(c)) == sorted(d.encode() for d in docs)
    one = load_corpus(text_cfg(tmp_path / "cache", root / "part-0.jsonl", jsonl_key="body"))
    assert sorted(_docs(one)) == sorted(d.encode() for d in docs[:100])


def test_capped_corpus_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a.txt").write_text("\n".join(_lines(4000)))
    whole = load_corpus(text_cfg(tmp_path / "c1", tmp_path / "a.txt", val_fraction=0.2))
    assert "capped at" not in capsys.readouterr().err
    cut = load_corpus(
        text_cfg(tmp_path / "c2", tmp_path / "a.txt", val_fraction=0.2, max_bytes=50_000)
    )
    n_bytes = sum(cut.prepared.meta.n_bytes.values())
    assert 50_000 - 4 < n_bytes <= 50_000 < sum(whole.prepared.meta.n_bytes.values())
    assert "capped at data.max_bytes=50000" in capsys.readouterr().err


def test_second_load_reuses_the_cache_and_a_changed_file_is_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.txt"
    path.write_text("\n".join(_lines(4000)))
    cfg = text_cfg(tmp_path / "cache", path, val_fraction=0.2)
    first = load_corpus(cfg)

    def refuse(*a: object) -> None:
        raise AssertionError("prepared again")

    monkeypatch.setattr(data_module, "prepare", refuse)
    assert load_corpus(cfg).content_hash == first.content_hash
    path.write_text("\n".join(_lines(4000, seed=1)))
    with pytest.raises(AssertionError, match="prepared again"):
        load_corpus(cfg)


def test_text_errors(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not exist.*jsonl"):
        load_corpus(text_cfg(cache, tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        load_corpus(text_cfg(cache, tmp_path / "empty.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .*files"):
        load_corpus(text_cfg(cache, tmp_path / "empty"))
    (tmp_path / "bad.jsonl").write_text('{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1 is not valid JSON"):
        load_corpus(text_cfg(cache, tmp_path / "bad.jsonl"))
    (tmp_path / "key.jsonl").write_text('{"body": "ok"}\n')
    with pytest.raises(DataError, match=r"key\.jsonl:1 has no string field 'text'.*body"):
        load_corpus(text_cfg(cache, tmp_path / "key.jsonl"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00" * 100)
    with pytest.raises(DataError, match=r"bin\.txt is not UTF-8"):
        load_corpus(text_cfg(cache, tmp_path / "bin.txt"))
    (tmp_path / "one.txt").write_text("a single short document\n")
    with pytest.raises(DataError, match="1 training and 0 validation documents.*val_fraction"):
        load_corpus(text_cfg(cache, tmp_path / "one.txt"))
    with pytest.raises(ConfigError, match="data.path"):
        DataConfig(name="text")
    with pytest.raises(ConfigError, match="valid.*stdlib.*markov.*text"):
        DataConfig(name="wiki")


# --------------------------------------------------------------------------- bpe


def test_bpe_round_trip(tmp_path: Path) -> None:
    cfg = stdlib_cfg(tmp_path, tokenizer=Tokenizer.bpe, bpe_vocab_size=600)
    c = load_corpus(cfg)
    assert 256 < c.vocab_size <= 600 and c.dtype == "uint16"
    tok = HFTokenizer.from_file(str(c.path / "tokenizer.json"))
    assert tok.get_vocab_size() == c.vocab_size
    raw = load_corpus(stdlib_cfg(tmp_path))  # the same text, byte tokens
    for bpe_split, byte_split in (
        (c.train_tokens(), raw.train_tokens()),
        (c.val_tokens(), raw.val_tokens()),
    ):
        assert int(bpe_split.max()) < c.vocab_size
        assert tok.decode(bpe_split.tolist()) == bytes(byte_split).decode()
    assert c.n_train < raw.n_train / 1.5  # merges compress the text
    # deterministic: a second preparation elsewhere gives the same tokens and tokenizer
    again = load_corpus(stdlib_cfg(tmp_path / "b", tokenizer=Tokenizer.bpe, bpe_vocab_size=600))
    assert again.content_hash == c.content_hash


# --------------------------------------------------------------------------- batches


def test_token_batches() -> None:
    tokens = np.arange(10_000, dtype=np.uint16)  # every token names its own position
    B, T = 4, 16
    tb = TokenBatches(tokens, B, T, seed=1)
    assert tb.n_windows == (10_000 - 1) // T
    x, y = tb.batch(5)
    assert x.shape == y.shape == (B, T) and x.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    assert (x[:, 0] % T == 0).all()  # windows start at multiples of seq_len

    # a pure function of (seed, k), whatever was asked before
    fresh = TokenBatches(tokens, B, T, seed=1)
    for k in (7, 0, 300, 5):
        assert all(torch.equal(a, b) for a, b in zip(tb.batch(k), fresh.batch(k)))
    assert not torch.equal(TokenBatches(tokens, B, T, seed=2).batch(5)[0], x)

    # one epoch visits every window once; the next epoch reorders them
    per_epoch = tb.n_windows // B + 1
    starts = [int(s) for k in range(3 * per_epoch) for s in tb.batch(k)[0][:, 0]]
    epoch0 = starts[: tb.n_windows]
    assert sorted(epoch0) == [i * T for i in range(tb.n_windows)]
    assert starts[tb.n_windows : 2 * tb.n_windows] != epoch0
    assert sorted(starts[tb.n_windows : 2 * tb.n_windows]) == sorted(epoch0)
    assert tb.epoch_at(0) == 0.0
    assert tb.epoch_at(per_epoch) == pytest.approx(per_epoch * B / tb.n_windows)
    assert tb.epoch_at(tb.n_windows) == B


def test_token_batches_speed(tmp_path: Path) -> None:
    c = load_corpus(stdlib_cfg(tmp_path))
    tb = TokenBatches(c.train_tokens(), 32, 128, seed=0)
    tb.batch(0)
    t0 = time.perf_counter()
    for k in range(200):
        tb.batch(k)
    assert (time.perf_counter() - t0) / 200 < 1e-3  # ~20 us measured; generous for CI noise


def test_token_batches_too_small() -> None:
    with pytest.raises(DataError, match="100 tokens = 6 windows.*batch_size=8"):
        TokenBatches(np.zeros(100, dtype=np.uint8), 8, 16, seed=0)
    with pytest.raises(DataError, match="0 windows"):
        TokenBatches(np.zeros(10, dtype=np.uint8), 1, 16, seed=0)


def test_val_batches(tmp_path: Path) -> None:
    c = load_corpus(markov_cfg(tmp_path))
    B, T = 4, 16
    vb = val_batches(c, 3 * B * T, B, T)  # 12 windows in 3 batches
    assert len(vb) == 3 and all(x.shape == y.shape == (B, T) for x, y in vb)
    again = val_batches(c, 3 * B * T, B, T)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(vb, again))

    # every row is a window of the val split, spread over it, and none repeats
    val = np.asarray(c.val_tokens()).astype(np.int64)
    train = np.asarray(c.train_tokens())
    n_windows = (c.n_val - 1) // T
    rows = [torch.cat([x, y[:, -1:]], dim=1).numpy() for x, y in vb]
    starts = []
    for row in np.concatenate(rows):
        hits = [i for i in range(n_windows) if np.array_equal(val[i * T : i * T + T + 1], row)]
        assert hits
        starts.append(hits[0])
    assert len(set(starts)) == 3 * B and max(starts) > n_windows // 2
    # the splits are the two ends of one stream: validation tokens are never in training
    assert c.n_train + c.n_val == 50_000 and len(train) == c.n_train
    # the same windows for any batch size (the last batch smaller), so runs compare like for like
    for b in (5, 12, 1):
        other = val_batches(c, 3 * B * T, b, T)
        assert [len(x) for x, _ in other][:-1] == [b] * (len(other) - 1)
        assert torch.equal(torch.cat([x for x, _ in other]), torch.cat([x for x, _ in vb]))
    with pytest.raises(DataError, match="validation split.*train.eval_tokens=6400000 needs"):
        val_batches(c, 6_400_000, 32, 64)


def test_batch_stream() -> None:
    tb = TokenBatches(np.arange(5_000, dtype=np.uint16), 2, 8, seed=0)
    start = {"k": 3}
    stream = BatchStream(tb, start=lambda: start["k"], end=6)
    got = list(stream)
    assert len(got) == 3 and torch.equal(got[0][0], tb.batch(3)[0])
    start["k"] = 5  # a resumed trainer: start() is read when iteration begins
    assert [torch.equal(x, tb.batch(5)[0]) for x, _ in stream] == [True]
    forever = iter(BatchStream(tb, start=lambda: 0))
    assert all(next(forever)[0].shape == (2, 8) for _ in range(10))


def test_parallel_preparation(tmp_path: Path) -> None:
    # two processes preparing the same corpus at once: one folder, identical and complete
    cfg = stdlib_cfg(tmp_path)
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # child: exit status 0 only if it loaded the corpus
            code = 1
            try:
                code = 0 if load_corpus(cfg).n_val > 0 else 1
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitpid(pid, 0)[1] for pid in pids] == [0, 0]
    folders = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert load_corpus(cfg).n_train + load_corpus(cfg).n_val == SMALL
