"""Streamed, parallel, deterministic, resumable preparation of text corpora into token shards.

Documents are read in input order (files sorted by path; a JSONL line, a parquet or arrow row,
or a text file is a document), grouped into chunks of about ``chunk_bytes`` of text, tokenised
by worker processes (all cores by default, at most ``2 * workers`` chunks in flight, so memory
stays bounded whatever the corpus size) and written, in order, into shards of
``chunks_per_shard`` chunks (the format: ``scaling/shards.py``). Chunk and shard boundaries
depend only on the documents, so the tokens, the shards and the content hash are the same for
any number of workers. A document's split (train / val / test) is decided by a hash of its
bytes, so it is the same for any order or shard count. A finished shard has a ``done.json``;
a killed preparation resumes from its finished shards; ``meta.json`` is written last.

Scaling out: ``--n-jobs N`` splits the input files into N disjoint sets (file i goes to job
i mod N); each job writes shards ``j<job>-*`` into the same folder and the last job to finish
writes ``meta.json``, so the shards of all jobs form one corpus. The jobs run through submitit
(``--launcher local`` on this machine, ``--launcher slurm`` on a cluster: the engine the sweeps'
SLURM launcher already uses, called directly because a preparation is one array of jobs, not a
sweep of runs) or by hand (``--job J --n-jobs N``, e.g. from a SLURM array task id).
"""

from __future__ import annotations

import argparse
import codecs
import collections
import dataclasses
import fcntl
import gzip
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from scaling.shards import (
    FORMAT_VERSION,
    META_FILE,
    SPLITS,
    CorpusMeta,
    DataError,
    PreparedCorpus,
    ShardDone,
    ShardInfo,
    TokenizerInfo,
    content_hash,
    dtype_for,
    open_corpus,
    padded,
    read_done,
)

if TYPE_CHECKING:
    import pyarrow as pa

EOD_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[SEP]")
_SNIFF = 1 << 16  # bytes read from each input to check it before any work
_BIG_TEXT = 16 << 20  # a text file above this is cut into documents at line ends
_PIECE = 1 << 20  # ... of about this size


def _arrow() -> Any:
    """pyarrow (with .parquet and .ipc), imported on first use. Why not at the top: a spawned
    worker process imports this module, never reads a table, and pyarrow, submitit and yaml
    (imported where used, too) cost each worker's start-up more than a second."""
    import pyarrow
    import pyarrow.ipc
    import pyarrow.parquet  # noqa: F401 (a submodule, reached as pyarrow.parquet)

    return pyarrow


@dataclass(frozen=True)
class PrepareSettings:
    """What to prepare and how; everything the tokens depend on is in ``key()``."""

    inputs: list[str]
    """Text files, folders, .jsonl / .jsonl.gz, .parquet files or folders, or a folder saved
    with HF datasets ``save_to_disk`` (its arrow files are read with pyarrow)."""
    out: str
    """The prepared corpus folder."""
    tokenizer: str = "byte"
    """``byte``, ``bpe`` (trained here on a streamed sample), or a path to a tokenizer.json."""
    bpe_vocab_size: int = 4096
    """Vocabulary of a ``bpe`` tokenizer (EOD included)."""
    bpe_sample_bytes: int = 64 << 20
    """Bytes of training documents, from the start of the corpus, that a ``bpe`` is trained on."""
    text_key: str = "text"
    """The JSONL field / parquet or arrow column holding the text."""
    val_fraction: float = 0.02
    """Share of documents held out for validation (by document hash)."""
    test_fraction: float = 0.0
    """Share of documents held out for test (by document hash); 0: no test split."""
    max_bytes: int | None = None
    """Stop after this many bytes of text, per job (None: all of it)."""
    max_vocab: int = 1 << 18
    """Largest tokenizer vocabulary the model accepts."""
    chunk_bytes: int = 1 << 20
    """Text per chunk of work sent to a worker."""
    chunks_per_shard: int = 128
    """Chunks per shard (the unit of resumption): about 128 MB of text by default."""
    text_doc_bytes: int | None = None
    """Cut plain text files into documents of about this many bytes, at line ends (None: a
    file up to 16 MB is one document, a larger one is cut every 1 MB)."""
    workers: int = 0
    """Worker processes; 0: all cores."""
    job: int = 0
    """This job's index among n_jobs (it takes input files job, job + n_jobs, ...)."""
    n_jobs: int = 1
    """Jobs preparing disjoint input files into the same folder."""
    progress: bool = True
    """Show a progress bar on stderr."""

    def __post_init__(self) -> None:
        checks = [
            (bool(self.inputs), "inputs: give at least one file or folder"),
            (0 < self.val_fraction < 1, f"val_fraction={self.val_fraction} must be in (0, 1)"),
            (
                0 <= self.test_fraction < 1 - self.val_fraction,
                f"test_fraction={self.test_fraction} must be in [0, 1 - val_fraction)",
            ),
            (
                self.max_bytes is None or self.max_bytes >= 1,
                f"max_bytes={self.max_bytes} must be >= 1 or None",
            ),
            (self.chunk_bytes >= 1, f"chunk_bytes={self.chunk_bytes} must be >= 1"),
            (self.chunks_per_shard >= 1, f"chunks_per_shard={self.chunks_per_shard} must be >= 1"),
            (
                self.text_doc_bytes is None or self.text_doc_bytes >= 1,
                f"text_doc_bytes={self.text_doc_bytes} must be >= 1 or None",
            ),
            (self.workers >= 0, f"workers={self.workers} must be >= 0 (0: all cores)"),
            (self.n_jobs >= 1, f"n_jobs={self.n_jobs} must be >= 1"),
            (0 <= self.job < self.n_jobs, f"job={self.job} must be in [0, n_jobs={self.n_jobs})"),
            (
                257 <= self.bpe_vocab_size <= 1 << 20,
                f"bpe_vocab_size={self.bpe_vocab_size} must be in [257, {1 << 20}]",
            ),
            (bool(self.text_key), "text_key must be a non-empty field name"),
        ]
        for ok, message in checks:
            if not ok:
                raise DataError(message)

    def n_workers(self) -> int:
        """The worker count to use."""
        return self.workers or os.cpu_count() or 1


# --------------------------------------------------------------------------- inputs


class Source:
    """A kind of input file: how to check it cheaply and how to stream its documents."""

    registry: ClassVar[list[type[Source]]] = []
    suffixes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        Source.registry.append(cls)

    @classmethod
    def matches(cls, path: Path) -> bool:
        """Whether this kind reads `path`."""
        return path.name.endswith(cls.suffixes)

    def check(self, path: Path, key: str) -> None:
        """Raise DataError naming `path` if it cannot be read as this kind."""
        raise NotImplementedError

    def docs(self, path: Path, key: str) -> Iterator[bytes]:
        """The file's documents as UTF-8 bytes, in order."""
        raise NotImplementedError

    def size(self, path: Path) -> int:
        """An estimate of the file's text bytes (for the progress bar)."""
        return path.stat().st_size


class JsonlSource(Source):
    """JSON lines (optionally gzipped); a document is the string field ``key`` of a line."""

    suffixes = (".jsonl", ".jsonl.gz")

    def _open(self, path: Path) -> Any:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")

    def check(self, path: Path, key: str) -> None:
        try:
            with self._open(path) as f:
                for lineno, line in enumerate(f, start=1):
                    if line.strip():
                        _record_text(path, lineno, line, key)
                        return
        except (OSError, EOFError) as e:
            raise DataError(f"{path} cannot be read as JSON lines ({e})") from None
        raise DataError(f"{path} is empty: no JSON lines")

    def docs(self, path: Path, key: str) -> Iterator[bytes]:
        with self._open(path) as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield _record_text(path, lineno, line, key).encode()

    def size(self, path: Path) -> int:
        return path.stat().st_size * (4 if path.name.endswith(".gz") else 1)


def _record_text(path: Path, lineno: int, line: bytes, key: str) -> str:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}:{lineno} is not valid JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get(key), str):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise DataError(
            f"{path}:{lineno} has no string field {key!r} (found {found}); set the text key "
            "(scaling-prepare --text-key, data.jsonl_key)"
        )
    return record[key]


class _TableSource(Source):
    """Columnar files: a document is the string column ``key`` of a row."""

    def schema(self, path: Path) -> pa.Schema:
        """The file's arrow schema."""
        raise NotImplementedError

    def batches(self, path: Path, key: str) -> Iterator[pa.RecordBatch]:
        """The file's record batches holding column `key`."""
        raise NotImplementedError

    def check(self, path: Path, key: str) -> None:
        try:
            schema = self.schema(path)
        except (OSError, _arrow().ArrowException) as e:
            raise DataError(f"{path} cannot be read as {self.__class__.__name__} ({e})") from None
        if key not in schema.names:
            raise DataError(
                f"{path} has no column {key!r} (columns: {schema.names}); set the text key "
                "(scaling-prepare --text-key)"
            )
        kind = schema.field(key).type
        if not (_arrow().types.is_string(kind) or _arrow().types.is_large_string(kind)):
            raise DataError(f"{path}: column {key!r} holds {kind}, not strings")

    def docs(self, path: Path, key: str) -> Iterator[bytes]:
        for batch in self.batches(path, key):
            for text in batch.column(key).to_pylist():
                if text:
                    yield text.encode()


class ParquetSource(_TableSource):
    """Parquet files, read a row group at a time."""

    suffixes = (".parquet",)

    def schema(self, path: Path) -> pa.Schema:
        return _arrow().parquet.read_schema(path)

    def check(self, path: Path, key: str) -> None:
        super().check(path, key)
        if _arrow().parquet.ParquetFile(path).metadata.num_rows == 0:
            raise DataError(f"{path} is empty: a parquet file with no rows")

    def batches(self, path: Path, key: str) -> Iterator[pa.RecordBatch]:
        yield from _arrow().parquet.ParquetFile(path).iter_batches(batch_size=1024, columns=[key])

    def size(self, path: Path) -> int:
        meta = _arrow().parquet.ParquetFile(path).metadata
        return (
            sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            or path.stat().st_size
        )


class ArrowSource(_TableSource):
    """The ``.arrow`` files of a dataset saved by HF datasets (arrow IPC streams)."""

    suffixes = (".arrow",)

    def schema(self, path: Path) -> pa.Schema:
        with _arrow().memory_map(str(path)) as f:
            return _arrow().ipc.open_stream(f).schema

    def batches(self, path: Path, key: str) -> Iterator[pa.RecordBatch]:
        with _arrow().memory_map(str(path)) as f:
            yield from _arrow().ipc.open_stream(f)


class TextSource(Source):
    """Any other file: UTF-8 text, one document (a file above 16 MB, or above ``doc_bytes``
    when given: pieces of about 1 MB, or ``doc_bytes``, cut at line ends)."""

    def __init__(self, doc_bytes: int | None = None) -> None:
        self.whole, self.piece = (_BIG_TEXT, _PIECE) if doc_bytes is None else (doc_bytes,) * 2

    @classmethod
    def matches(cls, path: Path) -> bool:
        return True

    def check(self, path: Path, key: str) -> None:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
        if not head:
            raise DataError(f"{path} is empty")
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            raise DataError(f"{path} is not UTF-8 text (a binary file?)") from None
        if b"\0" in head:
            raise DataError(f"{path} holds NUL bytes: a binary file, not text")

    def docs(self, path: Path, key: str) -> Iterator[bytes]:
        if path.stat().st_size <= self.whole:
            yield _utf8(path, path.read_bytes())
            return
        with open(path, "rb") as f:
            piece: list[bytes] = []
            n = 0
            for line in f:
                piece.append(line)
                n += len(line)
                if n >= self.piece:
                    yield _utf8(path, b"".join(piece))
                    piece, n = [], 0
            if piece:
                yield _utf8(path, b"".join(piece))


def _utf8(path: Path, data: bytes) -> bytes:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    return data


def source_for(path: Path, text_doc_bytes: int | None = None) -> Source:
    """The registered kind that reads `path` (text files last, cut by `text_doc_bytes`)."""
    kinds = sorted(Source.registry, key=lambda k: k is TextSource)
    kind = next(k for k in kinds if k is not _TableSource and k.matches(path))
    return TextSource(text_doc_bytes) if kind is TextSource else kind()


def input_files(inputs: list[str]) -> list[Path]:
    """Every input file, in order: a folder's non-hidden files sorted by relative path; a
    datasets ``save_to_disk`` folder's arrow files in the order of its state.json."""
    files: list[Path] = []
    for given in inputs:
        path = Path(given).expanduser().resolve()
        if path.is_file():
            files.append(path)
        elif (path / "state.json").is_file():
            state = json.loads((path / "state.json").read_text())
            files += [path / f["filename"] for f in state.get("_data_files", [])]
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(f"{path} is a folder with no (non-hidden) files")
            files += found
        else:
            raise DataError(
                f"{given} does not exist; give text files, folders, .jsonl(.gz), .parquet files "
                "or a datasets save_to_disk folder"
            )
    return files


def check_inputs(files: list[Path], key: str) -> None:
    """Refuse, before any work, an input that is empty, binary, or lacks a string text field."""
    for f in files:
        if f.stat().st_size == 0:
            raise DataError(f"{f} is empty")
        source_for(f).check(f, key)


# --------------------------------------------------------------------------- tokenizers


class TokenizerKind:
    """A kind of tokenizer: builds the TokenizerInfo and the tokenizer.json workers load."""

    registry: ClassVar[dict[str, type[TokenizerKind]]] = {}
    name: ClassVar[str] = ""

    def __init_subclass__(cls) -> None:
        TokenizerKind.registry[cls.name] = cls

    def build(self, s: PrepareSettings, files: list[Path]) -> tuple[str | None, TokenizerInfo]:
        """(tokenizer.json text or None for bytes, its TokenizerInfo)."""
        raise NotImplementedError


class ByteTokens(TokenizerKind):
    """UTF-8 bytes are the tokens (0..255); EOD is 256."""

    name = "byte"

    def build(self, s: PrepareSettings, files: list[Path]) -> tuple[str | None, TokenizerInfo]:
        return None, _info("byte", "bytes", "bytes", 256, None, s.max_vocab)


class HFJson(TokenizerKind):
    """A HF tokenizers tokenizer.json brought by the user (GPT-2's, Llama-3's, ...)."""

    name = "hf"

    def build(self, s: PrepareSettings, files: list[Path]) -> tuple[str | None, TokenizerInfo]:
        path = Path(s.tokenizer).expanduser()
        try:
            tok = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise DataError(f"tokenizer {path} does not parse as a tokenizer.json ({e})") from None
        return _canonical(tok, "hf", str(path), s.max_vocab)


class TrainedBPE(TokenizerKind):
    """A byte-level BPE trained here on the first bpe_sample_bytes of training documents."""

    name = "bpe"

    def build(self, s: PrepareSettings, files: list[Path]) -> tuple[str | None, TokenizerInfo]:
        saved = Path(s.out) / "tokenizer.json"
        if saved.exists():  # trained by an earlier call or another job of this preparation
            return _canonical(HFTokenizer.from_file(str(saved)), "bpe", "bpe", s.max_vocab)
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=s.bpe_vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
            special_tokens=["<|endoftext|>"],
            show_progress=False,
        )
        tok.train_from_iterator(_bpe_sample(s, files), trainer)
        text, info = _canonical(tok, "bpe", "bpe", s.max_vocab)
        _atomic_write(saved, text)
        return text, info


def _bpe_sample(s: PrepareSettings, files: list[Path]) -> Iterator[str]:
    """Training documents (split by hash) from the start of the corpus, streamed."""
    n = 0
    for f in files:
        for doc in source_for(f, s.text_doc_bytes).docs(f, s.text_key):
            if _split_of(doc, s.val_fraction, s.test_fraction) == 0:
                yield doc.decode()
                n += len(doc)
                if n >= s.bpe_sample_bytes:
                    return


def _canonical(tok: HFTokenizer, kind: str, name: str, max_vocab: int) -> tuple[str, TokenizerInfo]:
    text = tok.to_str()
    eod = next((i for i in map(tok.token_to_id, EOD_NAMES) if i is not None), None)
    sha = hashlib.sha256(text.encode()).hexdigest()
    return text, _info(kind, name, sha, tok.get_vocab_size(), eod, max_vocab)


def _info(
    kind: str, name: str, sha: str, vocab: int, eod: int | None, max_vocab: int
) -> TokenizerInfo:
    if eod is None:  # no end-of-document token: one more id after the vocabulary
        eod, vocab = vocab, vocab + 1
    if vocab > max_vocab:
        raise DataError(
            f"tokenizer {name} has {vocab} tokens, more than the model allows "
            f"(max_vocab={max_vocab}); use a smaller tokenizer or raise --max-vocab"
        )
    return TokenizerInfo(kind, name, sha, vocab, padded(vocab), padded(vocab) - vocab, eod)


def resolve_tokenizer(s: PrepareSettings, files: list[Path]) -> tuple[str | None, TokenizerInfo]:
    """The tokenizer named by settings.tokenizer (a kind or a tokenizer.json path)."""
    kind = s.tokenizer if s.tokenizer in TokenizerKind.registry else "hf"
    if kind == "hf" and not Path(s.tokenizer).expanduser().is_file():
        kinds = [k for k in TokenizerKind.registry if k != "hf"]
        raise DataError(
            f"tokenizer={s.tokenizer!r} is neither one of {kinds} nor a tokenizer.json file"
        )
    return TokenizerKind.registry[kind]().build(s, files)


# --------------------------------------------------------------------------- workers


_W: dict[str, Any] = {}  # the worker's tokenizer and settings, set once by _init_worker


def _init_worker(tok_json: str | None, eod: int, dtype: str, val: float, test: float) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
    _W.update(
        tok=HFTokenizer.from_str(tok_json) if tok_json else None,
        eod=eod,
        dtype=np.dtype(dtype),
        val=val,
        test=test,
    )


def _split_of(doc: bytes, val: float, test: float) -> int:
    """0 train, 1 val, 2 test: a hash of the document decides, whatever its position."""
    u = int.from_bytes(hashlib.blake2b(doc, digest_size=8).digest(), "little") / 2.0**64
    return 1 if u < val else 2 if u < val + test else 0


def _encode_chunk(docs: list[bytes]) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Per split: (tokens with EOD after each document, document lengths, text bytes)."""
    by_split: list[list[bytes]] = [[], [], []]
    for d in docs:
        by_split[_split_of(d, _W["val"], _W["test"])].append(d)
    out = []
    eod = _W["eod"]
    for part in by_split:
        if _W["tok"] is None:
            # bytes are the tokens: the documents joined by one EOD byte-slot each, at C speed
            flat = np.frombuffer(b"\0".join(part) + b"\0" if part else b"", dtype=np.uint8)
            lengths = np.asarray([len(d) + 1 for d in part], dtype=np.int64)
            tokens = flat.astype(_W["dtype"])
        else:
            enc = _W["tok"].encode_batch([d.decode() for d in part], add_special_tokens=False)
            # one conversion of all ids, the EODs inserted in C (~3% of the encoding's CPU time;
            # an array per document, or a list copied per document for its EOD: 3-5%)
            ids = [e.ids for e in enc]
            n_ids = np.fromiter(map(len, ids), np.int64, len(ids))
            flat = np.fromiter(itertools.chain.from_iterable(ids), _W["dtype"], int(n_ids.sum()))
            tokens = np.insert(flat, np.cumsum(n_ids), eod)
            lengths = n_ids + 1
        tokens[np.cumsum(lengths) - 1] = eod
        out.append((tokens, lengths, sum(map(len, part))))
    return out


# --------------------------------------------------------------------------- shards


class ShardWriter:
    """Appends one shard's encoded chunks to its split files; ``finish`` makes it durable."""

    def __init__(self, folder: Path, stem: str):
        self.folder, self.stem = folder, stem
        self.files: dict[str, Any] = {}
        self.hashes = {s: hashlib.sha256() for s in SPLITS}
        self.lengths: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        self.n_bytes = dict.fromkeys(SPLITS, 0)

    def add(self, parts: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
        """Append one chunk's tokens of every split."""
        for split, (tokens, lengths, n_bytes) in zip(SPLITS, parts):
            if not len(lengths):
                continue
            if split not in self.files:
                self.files[split] = open(  # noqa: SIM115 (closed in finish)
                    self.folder / f"{self.stem}.{split}.bin.tmp", "wb"
                )
            buf = tokens.tobytes()
            self.files[split].write(buf)
            self.hashes[split].update(buf)
            self.lengths[split].append(lengths)
            self.n_bytes[split] += n_bytes

    def finish(self, tokenizer_sha: str, settings_key: str) -> ShardDone:
        """Write indexes, rename the token files into place, then the done record."""
        infos = []
        for split, f in self.files.items():
            f.close()
            lengths = np.concatenate(self.lengths[split])
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype("<u8")
            offsets.tofile(self.folder / f"{self.stem}.{split}.idx")
            os.replace(f.name, self.folder / f"{self.stem}.{split}.bin")
            infos.append(
                ShardInfo(
                    self.stem,
                    split,
                    int(offsets[-1]),
                    len(lengths),
                    self.n_bytes[split],
                    self.hashes[split].hexdigest(),
                )
            )
        done = ShardDone(FORMAT_VERSION, self.stem, tokenizer_sha, settings_key, infos)
        _atomic_write(self.folder / f"{self.stem}.done.json", json.dumps(dataclasses.asdict(done)))
        return done


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def settings_key(s: PrepareSettings, files: list[Path]) -> str:
    """Hash of everything the shards depend on besides the tokenizer."""
    fp = [
        FORMAT_VERSION,
        s.text_key,
        s.val_fraction,
        s.test_fraction,
        s.max_bytes,
        s.chunk_bytes,
        s.chunks_per_shard,
        s.n_jobs,
        [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
    ]
    if s.text_doc_bytes is not None:  # appended only when set: older folders keep their key
        fp.append(s.text_doc_bytes)
    return hashlib.sha256(json.dumps(fp).encode()).hexdigest()[:16]


def _check_folder(out: Path, tok: TokenizerInfo, key: str) -> None:
    """Refuse a folder holding shards of another tokenizer or other settings."""
    for f in sorted(out.glob("*.done.json")):
        done = read_done(f)
        if done.tokenizer_sha256 != tok.sha256:
            raise DataError(
                f"{f} was made by another tokenizer (sha256 {done.tokenizer_sha256[:12]}, this "
                f"preparation: {tok.name}, {tok.sha256[:12]}); prepare into another folder"
            )
        if done.settings_key != key:
            raise DataError(
                f"{f} was made with other inputs or settings (key {done.settings_key}, now {key}); "
                "prepare into another folder or delete it"
            )


# --------------------------------------------------------------------------- the pipeline


def _chunks(s: PrepareSettings, files: list[Path]) -> Iterator[tuple[list[bytes], int]]:
    """(documents, text bytes) of each chunk, in input order, capped at max_bytes."""
    docs: list[bytes] = []
    n = total = 0
    for f in files:
        for doc in source_for(f, s.text_doc_bytes).docs(f, s.text_key):
            if not doc:
                continue
            if s.max_bytes is not None and total + len(doc) > s.max_bytes:
                doc = doc[: s.max_bytes - total].decode("utf-8", "ignore").encode()
            docs.append(doc)
            n += len(doc)
            total += len(doc)
            if n >= s.chunk_bytes:
                yield docs, n
                docs, n = [], 0
            if s.max_bytes is not None and total >= s.max_bytes:
                break
        if s.max_bytes is not None and total >= s.max_bytes:
            break
    if docs:
        yield docs, n


@dataclass(frozen=True)
class _Ready:
    value: Any

    def get(self) -> Any:
        return self.value


class _Inline:
    """A pool of one: the same worker code in this process (no start-up cost)."""

    def __init__(self, initargs: tuple) -> None:
        _init_worker(*initargs)

    def apply_async(self, fn: Any, args: tuple) -> _Ready:
        return _Ready(fn(*args))

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _pool(n: int, initargs: tuple) -> Any:
    if n == 1:
        return _Inline(initargs)
    return multiprocessing.get_context("spawn").Pool(n, _init_worker, initargs)


def _run_shards(
    s: PrepareSettings, files: list[Path], tok_json: str | None, tok: TokenizerInfo, key: str
) -> None:
    """Tokenise this job's files into shards, skipping finished ones."""
    from tqdm import tqdm  # the main process's bar; not imported by workers (see _arrow)

    out = Path(s.out)
    done = {p.name.removesuffix(".done.json") for p in out.glob(f"j{s.job:04d}-*.done.json")}
    total = sum(source_for(f).size(f) for f in files)
    # no more workers than chunks: a small corpus is not worth the processes' start-up
    n_workers = max(1, min(s.n_workers(), -(-total // s.chunk_bytes)))
    initargs = (
        tok_json,
        tok.eod_id,
        dtype_for(tok.vocab_size).name,
        s.val_fraction,
        s.test_fraction,
    )
    if s.max_bytes is not None:
        total = min(total, s.max_bytes)
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        disable=not s.progress,
        mininterval=1.0,
        desc=f"prepare job {s.job}/{s.n_jobs}",
        file=sys.stderr,
    )
    start, n_docs, n_tokens = time.perf_counter(), 0, 0
    writer: ShardWriter | None = None
    pending: collections.deque = collections.deque()

    def drain(limit: int) -> None:
        nonlocal writer, n_docs, n_tokens
        while len(pending) > limit:
            stem, last, res, size = pending.popleft()
            parts = res.get()
            if writer is None:
                writer = ShardWriter(out, stem)
            writer.add(parts)
            n_docs += sum(len(p[1]) for p in parts)
            n_tokens += sum(len(p[0]) for p in parts)
            rate = time.perf_counter() - start
            bar.set_postfix(
                docs_s=f"{n_docs / rate:.0f}", tok_s=f"{n_tokens / rate:.3g}", refresh=False
            )
            bar.update(size)
            if last:
                writer.finish(tok.sha256, key)
                writer = None

    with _pool(n_workers, initargs) as pool:
        chunks = _chunks(s, files)
        prev: tuple[list[bytes], int] | None = next(chunks, None)
        c = 0
        while prev is not None:
            nxt = next(chunks, None)
            stem = f"j{s.job:04d}-{c // s.chunks_per_shard:06d}"
            last = nxt is None or (c + 1) % s.chunks_per_shard == 0
            if stem in done:
                bar.update(prev[1])
            else:
                pending.append((stem, last, pool.apply_async(_encode_chunk, (prev[0],)), prev[1]))
                drain(2 * n_workers)
            prev, c = nxt, c + 1
        drain(0)
    bar.close()


def prepare_job(s: PrepareSettings) -> None:
    """Run job s.job of s.n_jobs; the last job to finish writes meta.json."""
    files = input_files(s.inputs)
    mine = files[s.job :: s.n_jobs]
    check_inputs(files, s.text_key)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out / ".tokenizer.lock"):
        tok_json, tok = resolve_tokenizer(s, files)
    key = settings_key(s, files)
    _check_folder(out, tok, key)
    if (out / META_FILE).exists():
        return
    _run_shards(s, mine, tok_json, tok, key)
    _atomic_write(out / f"job-{s.job:04d}.json", json.dumps({"job": s.job, "key": key}))
    with _lock(out / ".meta.lock"):
        if all((out / f"job-{j:04d}.json").exists() for j in range(s.n_jobs)):
            finalize(s, files, tok, key)


def finalize(s: PrepareSettings, files: list[Path], tok: TokenizerInfo, key: str) -> CorpusMeta:
    """Gather every finished shard into meta.json (the completion marker, written last)."""
    out = Path(s.out)
    shards = []
    for f in sorted(out.glob("j*.done.json")):
        shards += read_done(f).files
    dtype = dtype_for(tok.vocab_size).name
    sums = {
        k: {sp: sum(getattr(x, k) for x in shards if x.split == sp) for sp in SPLITS}
        for k in ("n_tokens", "n_bytes", "n_docs")
    }
    if not sums["n_tokens"]["train"] or not sums["n_tokens"]["val"]:
        raise DataError(
            f"the corpus in {out} has {sums['n_docs']['train']} training and "
            f"{sums['n_docs']['val']} validation documents; both splits need at least one "
            f"(more documents, or another val_fraction={s.val_fraction})"
        )
    names = ", ".join(str(f) for f in files[:3]) + (
        f" and {len(files) - 3} more" if len(files) > 3 else ""
    )
    meta = CorpusMeta(
        format=FORMAT_VERSION,
        tokenizer=tok,
        dtype=dtype,
        val_fraction=s.val_fraction,
        test_fraction=s.test_fraction,
        shards=shards,
        content_hash=content_hash(tok.sha256, dtype, shards),
        source=f"{len(files)} files: {names}",
        settings_key=key,
        extra={"n_jobs": s.n_jobs, "max_bytes": s.max_bytes},
        **sums,
    )
    _atomic_write(out / META_FILE, meta.to_json())
    return meta


def prepare(s: PrepareSettings, launcher: str = "none") -> PreparedCorpus | None:
    """Prepare s.inputs into s.out: inline, or all n_jobs through submitit (local or slurm);
    returns the corpus once complete (None while other jobs of a manual array still run)."""
    if launcher == "none":
        prepare_job(s)
    else:
        import submitit  # see _arrow

        files = input_files(s.inputs)
        check_inputs(files, s.text_key)  # before anything is submitted
        Path(s.out).mkdir(parents=True, exist_ok=True)
        with _lock(Path(s.out) / ".tokenizer.lock"):
            resolve_tokenizer(s, files)  # a bpe is trained once, before the jobs
        executor = submitit.AutoExecutor(folder=Path(s.out) / ".submitit", cluster=launcher)
        jobs = executor.map_array(
            prepare_job, [dataclasses.replace(s, job=j, progress=False) for j in range(s.n_jobs)]
        )
        for j in jobs:
            j.result()
    return open_corpus(s.out) if (Path(s.out) / META_FILE).exists() else None


# --------------------------------------------------------------------------- CLI


SETTINGS_DIR = Path(__file__).resolve().parents[1] / "conf" / "prepare"
# CLI option -> PrepareSettings field, for the options that override a settings file
_OPTIONS = {
    "out": (str, "the prepared corpus folder"),
    "tokenizer": (str, "byte, bpe (trained here on a streamed sample), or a tokenizer.json path"),
    "bpe_vocab_size": (int, "vocabulary of a trained bpe (EOD included)"),
    "bpe_sample_bytes": (int, "text a bpe is trained on, from the start of the corpus"),
    "text_key": (str, "JSONL field / parquet or arrow column holding the text"),
    "val_fraction": (float, "share of documents held out for validation (by document hash)"),
    "test_fraction": (float, "share of documents held out for test (0: no test split)"),
    "max_bytes": (int, "stop after this much text"),
    "max_vocab": (int, "largest tokenizer vocabulary the model accepts"),
    "chunk_bytes": (int, "text per unit of work sent to a worker"),
    "chunks_per_shard": (int, "chunks per shard, the unit of resumption"),
    "text_doc_bytes": (int, "cut plain text files into documents of about this size"),
    "workers": (int, "worker processes (0: all cores)"),
    "job": (int, "this job's index among --n-jobs (a manual array, e.g. a SLURM task id)"),
    "n_jobs": (int, "jobs over disjoint input files, into the same folder"),
}


def load_settings(name_or_path: str, overrides: dict[str, Any]) -> PrepareSettings:
    """A named setting (``conf/prepare/<name>.yaml``) or a YAML file, with overrides."""
    from contract.settings import load_settings as load_named  # imports yaml: see _arrow

    path, merged = load_named(
        SETTINGS_DIR, name_or_path, [f.name for f in dataclasses.fields(PrepareSettings)],
        overrides, what="prepare", error=DataError,
    )  # fmt: skip
    missing = [k for k in ("inputs", "out") if not merged.get(k)]
    if missing:
        raise DataError(f"{path}: give {missing} (on the command line or in the settings file)")
    return PrepareSettings(**merged)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scaling-prepare",
        description="Prepare text corpora into token shards: streamed through worker processes "
        "(bounded memory), deterministic for any worker count, resumable (run it again after a "
        "kill). Inputs: text files, folders, .jsonl/.jsonl.gz, .parquet files or folders, a "
        "datasets save_to_disk folder.",
        epilog="example: scaling-prepare data/fineweb/*.parquet --out corpora/fineweb "
        "--tokenizer gpt2/tokenizer.json --val-fraction 0.01 --n-jobs 8 --launcher slurm",
    )
    p.add_argument("inputs", nargs="*", help="input files or folders (or `inputs` in --settings)")
    p.add_argument(
        "--settings",
        default="default",
        help="a named setting (conf/prepare/<name>.yaml) or a YAML file of PrepareSettings "
        "fields; the options below override it",
    )
    for name, (kind, text) in _OPTIONS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, help=text)
    p.add_argument(
        "--launcher",
        choices=["none", "local", "slurm"],
        default="none",
        help="run all --n-jobs through submitit (local: this machine, slurm: a cluster); "
        "none: run --job only",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """scaling-prepare: prepare a corpus; exit 2 with a message on bad input."""
    a = _parser().parse_args(argv)
    try:
        given = {k: getattr(a, k) for k in _OPTIONS} | {"inputs": a.inputs or None}
        s = dataclasses.replace(load_settings(a.settings, given), progress=not a.quiet)
        corpus = prepare(s, a.launcher)
    except DataError as e:
        print(f"scaling-prepare: error: {e}", file=sys.stderr)
        return 2
    if corpus is None:
        print(f"job {s.job} of {s.n_jobs} done; meta.json follows when every job has finished")
        return 0
    m = corpus.meta
    print(
        f"{corpus.path}: {m.n_docs['train']}/{m.n_docs['val']}/{m.n_docs['test']} documents, "
        f"{m.n_tokens['train']}/{m.n_tokens['val']}/{m.n_tokens['test']} tokens, "
        f"{m.n_bytes['train']}/{m.n_bytes['val']}/{m.n_bytes['test']} bytes (train/val/test), "
        f"{len(m.shards)} shard files, vocab {m.tokenizer.vocab_size} (padded "
        f"{m.tokenizer.padded_vocab_size}), {m.dtype}, content {m.content_hash[:16]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
