"""scaling-prepare: real preparations of small generated corpora, checked against the documents."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from scaling import prepare as prep
from scaling.config import DataConfig
from scaling.data import load_corpus
from scaling.shards import DataError, ShardError, open_corpus
from scaling.train import train


def _docs(n: int = 300, seed: int = 0) -> list[str]:
    """Distinct documents of varied length, some non-ASCII."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "über", "naïve", "def", "return", "x", "日本"]
    return [f"doc {i}: " + " ".join(rng.choices(words, k=rng.randint(5, 80))) for i in range(n)]


def _jsonl(path: Path, docs: list[str], key: str = "text") -> Path:
    path.write_text("".join(json.dumps({key: d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


def _settings(inputs: list[Path], out: Path, **kw: object) -> prep.PrepareSettings:
    base = dict(chunk_bytes=2000, chunks_per_shard=3, workers=1, progress=False, val_fraction=0.1)
    return prep.PrepareSettings(inputs=[str(i) for i in inputs], out=str(out), **{**base, **kw})


def _split_docs(corpus, split: str) -> list[list[int]]:
    """The documents of a split as token lists, cut at the EOD token."""
    out = []
    for tokens, offsets in zip(corpus.shard_tokens(split), corpus.doc_offsets(split)):
        for a, b in zip(offsets[:-1], offsets[1:]):
            assert tokens[b - 1] == corpus.eod_id
            out.append(tokens[a : b - 1].tolist())
    return out


def test_byte_tokens_are_the_documents_split_by_hash(tmp_path):
    docs = _docs()
    corpus = prep.prepare(_settings([_jsonl(tmp_path / "a.jsonl", docs)], tmp_path / "out"))
    got = {s: [bytes(d).decode() for d in _split_docs(corpus, s)] for s in ("train", "val")}
    assert sorted(got["train"] + got["val"]) == sorted(docs)  # every document, once
    assert 10 <= len(got["val"]) <= 55  # ~10% of 300 by hash
    m = corpus.meta
    assert m.tokenizer.vocab_size == 257 and m.tokenizer.eod_id == 256
    assert m.tokenizer.padded_vocab_size == 320 and m.tokenizer.padding == 63
    assert m.dtype == "uint16" and len({s.stem for s in m.shards}) > 2
    assert m.n_bytes["val"] == sum(len(d.encode()) for d in got["val"])
    assert m.n_tokens["train"] == m.n_bytes["train"] + m.n_docs["train"]  # bytes + one EOD each
    # the split is a function of the document, not of its position or of the shard size
    again = prep.prepare(
        _settings([_jsonl(tmp_path / "b.jsonl", docs[::-1])], tmp_path / "out2", chunks_per_shard=1)
    )
    assert sorted(bytes(d).decode() for d in _split_docs(again, "val")) == sorted(got["val"])


def test_same_shards_and_hash_with_one_or_two_workers(tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", _docs(400))
    one = prep.prepare(_settings([src], tmp_path / "w1", workers=1, test_fraction=0.1))
    two = prep.prepare(_settings([src], tmp_path / "w2", workers=2, test_fraction=0.1))
    assert one.meta.content_hash == two.meta.content_hash
    assert one.meta.shards == two.meta.shards and one.meta.n_docs["test"] > 0
    for s in one.meta.shards:
        name = f"{s.stem}.{s.split}.bin"
        assert (one.path / name).read_bytes() == (two.path / name).read_bytes()


def test_killed_preparation_resumes_from_finished_shards(tmp_path, monkeypatch):
    src = _jsonl(tmp_path / "a.jsonl", _docs(400))
    s = _settings([src], tmp_path / "out")
    finish, calls = prep.ShardWriter.finish, []

    def dies_after_two(self, *a):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the job is killed while the third shard is written
        calls.append(self.stem)
        return finish(self, *a)

    monkeypatch.setattr(prep.ShardWriter, "finish", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(s)
    with pytest.raises(ShardError, match="did not finish"):  # never used as if complete
        open_corpus(s.out)
    stamps = {p.name: p.stat().st_mtime_ns for p in Path(s.out).glob("j0000-00000[01].*")}
    monkeypatch.setattr(prep.ShardWriter, "finish", finish)
    resumed = prep.prepare(s)
    fresh = prep.prepare(_settings([src], tmp_path / "fresh"))
    assert resumed.meta.content_hash == fresh.meta.content_hash
    assert sum(n.endswith(".done.json") for n in stamps) == 2 and all(
        (Path(s.out) / n).stat().st_mtime_ns == t for n, t in stamps.items()
    )  # the two finished shards were not redone


def _trained_tokenizer(path: Path, docs: list[str], vocab: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        docs,
        trainers.BpeTrainer(
            vocab_size=vocab,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok.save(str(path))
    return tok


def test_any_tokenizer_json_by_path(tmp_path):
    docs = _docs()
    tok = _trained_tokenizer(tmp_path / "tok.json", docs)
    corpus = prep.prepare(
        _settings(
            [_jsonl(tmp_path / "a.jsonl", docs)],
            tmp_path / "out",
            tokenizer=str(tmp_path / "tok.json"),
        )
    )
    want = sorted(tok.encode(d, add_special_tokens=False).ids for d in docs)
    assert sorted(_split_docs(corpus, "train") + _split_docs(corpus, "val")) == want
    info = corpus.meta.tokenizer
    assert info.kind == "hf" and info.eod_id == tok.get_vocab_size()  # no EOD of its own: added
    assert info.vocab_size == tok.get_vocab_size() + 1 and info.padded_vocab_size % 64 == 0


def test_large_vocabulary_is_stored_as_uint32(tmp_path):
    vocab = {f"w{i}": i for i in range(70_000)} | {"[UNK]": 70_000, "</s>": 70_001}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "big.json"))
    docs = [" ".join(f"w{(i * 977 + j * 131) % 70_000}" for j in range(50)) for i in range(200)]
    corpus = prep.prepare(
        _settings(
            [_jsonl(tmp_path / "a.jsonl", docs)],
            tmp_path / "out",
            tokenizer=str(tmp_path / "big.json"),
        )
    )
    assert corpus.meta.dtype == "uint32" and corpus.eod_id == 70_001
    got = sorted(_split_docs(corpus, "train") + _split_docs(corpus, "val"))
    assert got == sorted(tok.encode(d).ids for d in docs) and max(map(max, got)) > 65_535


def test_bpe_trained_on_a_streamed_sample(tmp_path):
    docs = _docs(400)
    s = _settings(
        [_jsonl(tmp_path / "a.jsonl", docs)],
        tmp_path / "out",
        tokenizer="bpe",
        bpe_vocab_size=300,
        bpe_sample_bytes=5000,
    )
    corpus = prep.prepare(s)
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert corpus.meta.tokenizer.vocab_size == tok.get_vocab_size() <= 300
    assert corpus.eod_id == tok.token_to_id("<|endoftext|>")
    decoded = sorted(
        tok.decode(d) for d in _split_docs(corpus, "train") + _split_docs(corpus, "val")
    )
    assert decoded == sorted(docs)


def test_every_input_format_gives_the_same_corpus(tmp_path):
    docs = _docs(200)
    table = pa.table({"id": list(range(len(docs))), "text": docs})
    (tmp_path / "pq").mkdir()
    pq.write_table(table.slice(0, 120), tmp_path / "pq" / "part-0.parquet", row_group_size=50)
    pq.write_table(table.slice(120), tmp_path / "pq" / "part-1.parquet")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    ds = tmp_path / "saved"  # the layout of datasets' save_to_disk: arrow streams + state.json
    ds.mkdir()
    with (
        pa.OSFile(str(ds / "data-00000-of-00001.arrow"), "wb") as sink,
        ipc.new_stream(sink, table.schema) as w,
    ):
        w.write_table(table, max_chunksize=64)
    (ds / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    (ds / "dataset_info.json").write_text("{}")
    hashes = {
        name: prep.prepare(_settings([src], tmp_path / f"out-{name}")).meta.content_hash
        for name, src in [
            ("jsonl", _jsonl(tmp_path / "a.jsonl", docs)),
            ("gz", tmp_path / "a.jsonl.gz"),
            ("parquet", tmp_path / "pq"),
            ("datasets", ds),
        ]
    }
    assert len(set(hashes.values())) == 1, hashes


def test_text_folder_one_document_per_file(tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    docs = _docs(30)
    for i, d in enumerate(docs):
        (tmp_path / "src" / ("sub" if i % 2 else "") / f"f{i:02d}.txt").write_text(d)
    (tmp_path / "src" / ".hidden").write_bytes(b"\0\1binary")  # hidden files are not read
    corpus = prep.prepare(_settings([tmp_path / "src"], tmp_path / "out", val_fraction=0.3))
    got = [bytes(d).decode() for s in ("train", "val") for d in _split_docs(corpus, s)]
    assert sorted(got) == sorted(docs)


def test_jobs_over_disjoint_files_form_one_corpus(tmp_path):
    srcs = [_jsonl(tmp_path / f"p{i}.jsonl", _docs(60, seed=i)) for i in range(4)]
    single = prep.prepare(_settings(srcs, tmp_path / "one"))
    for job in (1, 0):  # the jobs of a manual array, in any order; the last writes meta.json
        assert (
            prep.main(
                [
                    *map(str, srcs),
                    "--out",
                    str(tmp_path / "two"),
                    "--n-jobs",
                    "2",
                    "--job",
                    str(job),
                    "--chunk-bytes",
                    "2000",
                    "--chunks-per-shard",
                    "3",
                    "--workers",
                    "1",
                    "--val-fraction",
                    "0.1",
                    "--quiet",
                ]
            )
            == 0
        )
    both = open_corpus(tmp_path / "two")
    assert {s.stem[:5] for s in both.meta.shards} == {"j0000", "j0001"}
    assert both.meta.n_tokens == single.meta.n_tokens and both.meta.n_docs == single.meta.n_docs
    tokens = sorted(map(tuple, _split_docs(both, "val")))
    assert tokens == sorted(map(tuple, _split_docs(single, "val")))


@pytest.mark.slow
def test_jobs_through_submitit_local(tmp_path):
    srcs = [_jsonl(tmp_path / f"p{i}.jsonl", _docs(60, seed=i)) for i in range(3)]
    corpus = prep.prepare(_settings(srcs, tmp_path / "out", n_jobs=3), launcher="local")
    single = prep.prepare(_settings(srcs, tmp_path / "one"))
    assert {s.stem[:5] for s in corpus.meta.shards} == {"j0000", "j0001", "j0002"}
    assert corpus.meta.n_tokens == single.meta.n_tokens


def _bad(tmp_path: Path, capsys, *argv: str) -> str:
    assert prep.main([*argv, "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "out" / "meta.json").exists()
    return err


def test_bad_inputs_are_named_before_any_work(tmp_path, capsys):
    good = _jsonl(tmp_path / "good.jsonl", _docs(20))
    nokey = _jsonl(tmp_path / "nokey.jsonl", _docs(5), key="content")
    assert "nokey.jsonl:1 has no string field 'text'" in _bad(
        tmp_path, capsys, str(good), str(nokey)
    )
    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "nocol.parquet")
    assert "nocol.parquet has no column 'text'" in _bad(
        tmp_path, capsys, str(tmp_path / "nocol.parquet")
    )
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    assert "ints.parquet: column 'text' holds int64" in _bad(
        tmp_path, capsys, str(tmp_path / "ints.parquet")
    )
    (tmp_path / "empty.txt").write_text("")
    assert "empty.txt is empty" in _bad(tmp_path, capsys, str(good), str(tmp_path / "empty.txt"))
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 10)
    assert "blob.bin is not UTF-8" in _bad(tmp_path, capsys, str(tmp_path / "blob.bin"))
    (tmp_path / "tok.json").write_text('{"not": "a tokenizer"}')
    err = _bad(tmp_path, capsys, str(good), "--tokenizer", str(tmp_path / "tok.json"))
    assert "tok.json does not parse" in err
    assert "more than the model allows (max_vocab=200)" in _bad(
        tmp_path, capsys, str(good), "--max-vocab", "200"
    )
    assert not list((tmp_path / "out").glob("*.bin"))  # refused before any tokens were written


def test_shards_of_another_tokenizer_are_refused(tmp_path, capsys):
    docs = _docs(100)
    src = _jsonl(tmp_path / "a.jsonl", docs)
    _trained_tokenizer(tmp_path / "tok.json", docs)
    s = _settings([src], tmp_path / "out")
    finish = prep.ShardWriter.finish

    def dies(self, *a):
        finish(self, *a)
        raise KeyboardInterrupt  # one byte-token shard left behind

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prep.ShardWriter, "finish", dies)
        with pytest.raises(KeyboardInterrupt):
            prep.prepare(s)
    with pytest.raises(DataError, match=r"j0000-000000.done.json was made by another tokenizer"):
        prep.prepare(_settings([src], tmp_path / "out", tokenizer=str(tmp_path / "tok.json")))


def test_progress_bar_shows_documents_tokens_and_bytes_per_second(tmp_path, capsys):
    prep.prepare(
        _settings([_jsonl(tmp_path / "a.jsonl", _docs())], tmp_path / "out", progress=True)
    )
    err = capsys.readouterr().err
    assert "prepare job 0/1" in err and "docs_s=" in err and "tok_s=" in err and "B/s" in err


@pytest.mark.parametrize("name", sorted(p.stem for p in prep.SETTINGS_DIR.glob("*.yaml")))
def test_shipped_settings_load(name):
    s = prep.load_settings(name, {"inputs": ["x"], "out": "y"})
    assert s.inputs == ["x"] and s.out == "y" and s.val_fraction > 0


def test_settings_file_names_the_corpus_and_bad_keys(tmp_path, capsys):
    src = _jsonl(tmp_path / "a.jsonl", _docs(50))
    (tmp_path / "c.yaml").write_text(
        f"inputs: [{src}]\nout: {tmp_path / 'out'}\nval_fraction: 0.2\n"
    )
    assert prep.main(["--settings", str(tmp_path / "c.yaml"), "--workers", "1", "--quiet"]) == 0
    assert open_corpus(tmp_path / "out").meta.val_fraction == 0.2
    (tmp_path / "bad.yaml").write_text("val_fracton: 0.2\n")
    assert prep.main(["--settings", str(tmp_path / "bad.yaml"), str(src), "--out", "o"]) == 2
    assert "unknown setting(s) ['val_fracton']" in capsys.readouterr().err


def test_load_corpus_reads_a_prepared_folder_and_refuses_an_unfinished_one(tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", _docs(400))
    corpus = prep.prepare(_settings([src], tmp_path / "ready"))
    c = load_corpus(DataConfig(name="text", path=str(tmp_path / "ready")))
    assert c.prepared == corpus and c.vocab_size == 320  # the model's vocabulary: padded
    assert c.n_val == corpus.n_tokens("val") and c.content_hash == corpus.meta.content_hash
    assert np.array_equal(c.train_tokens(), np.concatenate(corpus.shard_tokens("train")))
    (tmp_path / "ready" / "meta.json").unlink()  # as if killed before the completion marker
    with pytest.raises(DataError, match="did not finish"):
        load_corpus(DataConfig(name="text", path=str(tmp_path / "ready")))


@pytest.mark.slow
def test_training_on_a_prepared_folder(tmp_path, tiny_cfg):
    src = _jsonl(tmp_path / "a.jsonl", _docs(1500))
    corpus = prep.prepare(_settings([src], tmp_path / "ready", chunks_per_shard=1000))
    result = train(tiny_cfg("train.steps=3", "data=prepared", f"data.path={tmp_path / 'ready'}"))
    assert result.summary.status == "completed"
    assert result.summary.corpus_hash == corpus.meta.content_hash
