"""The prepared-corpus format: token shards on disk, read through memory maps (no torch).

A prepared corpus is a folder:

- ``<stem>.<split>.bin``: the tokens of one shard's documents of one split (``train``, ``val``
  or ``test``), raw little-endian ``uint16`` (vocabulary <= 65,536) or ``uint32``; every
  document ends with the end-of-document token ``eod_id``.
- ``<stem>.<split>.idx``: that shard's document start offsets, little-endian ``uint64``, one
  per document plus the total at the end (so document i is ``tokens[idx[i]:idx[i+1]]``).
- ``<stem>.done.json``: the shard's ``ShardDone`` record, written after its token and index
  files, so a prepare that was killed resumes from its finished shards.
- ``meta.json``: the ``CorpusMeta`` of the whole corpus, written last: the completion marker.
  A folder without it is never opened as a corpus.

``stem`` is ``j<job>-<shard>`` (``j0000-000003``): the shards of every job of a scaled-out
preparation lie in one folder and form one corpus, in stem order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
META_FILE = "meta.json"
PAD_MULTIPLE = 64  # the model's vocabulary is padded to a multiple of this for speed


class DataError(ValueError):
    """A corpus cannot be read, prepared or opened; the message names the file and the fix."""


class ShardError(DataError):
    """A prepared corpus folder is incomplete, inconsistent or not of this format."""


@dataclass(frozen=True)
class TokenizerInfo:
    """Which tokenizer made the tokens: enough to refuse shards from another one."""

    kind: str
    """Registered tokenizer kind: ``byte``, ``hf`` (a tokenizer.json by path) or ``bpe``
    (trained here on a streamed sample)."""
    name: str
    """Human-readable identity: the tokenizer.json path given, or ``bytes``."""
    sha256: str
    """sha256 of the tokenizer's canonical JSON (of ``"bytes"`` for the byte tokenizer)."""
    vocab_size: int
    """Token ids in use: the tokenizer's vocabulary, plus one if the EOD token was added."""
    padded_vocab_size: int
    """The model's vocabulary: vocab_size rounded up to a multiple of 64."""
    padding: int
    """padded_vocab_size - vocab_size: embedding rows that no token uses."""
    eod_id: int
    """The end-of-document token appended to every document."""


@dataclass(frozen=True)
class ShardInfo:
    """One token file: a shard's documents of one split."""

    stem: str
    """The shard's name, ``j<job>-<shard>``; files are ``<stem>.<split>.bin`` and ``.idx``."""
    split: str
    """``train``, ``val`` or ``test``."""
    n_tokens: int
    """Tokens in the file (EOD tokens included)."""
    n_docs: int
    """Documents in the file (entries of the index, less one)."""
    n_bytes: int
    """UTF-8 bytes of the documents' text (for bits per byte)."""
    sha256: str
    """sha256 of the token file's bytes."""


@dataclass(frozen=True)
class ShardDone:
    """A finished shard (``<stem>.done.json``): its files and the tokenizer that made them."""

    format: int
    """FORMAT_VERSION of the writer."""
    stem: str
    """The shard's name."""
    tokenizer_sha256: str
    """TokenizerInfo.sha256 of the tokenizer that made it; a mismatch is refused."""
    settings_key: str
    """Hash of the preparation settings (splits, chunking); a mismatch is refused."""
    files: list[ShardInfo]
    """One entry per split with at least one document."""


@dataclass(frozen=True)
class CorpusMeta:
    """A complete prepared corpus (``meta.json``, written last)."""

    format: int
    """FORMAT_VERSION; a folder of another version is refused."""
    tokenizer: TokenizerInfo
    """The tokenizer of every shard."""
    dtype: str
    """numpy dtype of every token file: ``uint16`` or ``uint32``."""
    val_fraction: float
    """Share of documents held out for validation, chosen by a hash of each document."""
    test_fraction: float
    """Share of documents held out for test (0: no test split), chosen the same way."""
    shards: list[ShardInfo]
    """Every token file, in stem order then split order."""
    content_hash: str
    """sha256 over the tokenizer hash, dtype and every token file's hash, in order."""
    n_tokens: dict[str, int]
    """Tokens per split."""
    n_bytes: dict[str, int]
    """UTF-8 bytes of text per split (bits per byte = nats per token * tokens / bytes / ln 2)."""
    n_docs: dict[str, int]
    """Documents per split."""
    source: str
    """One line describing the inputs."""
    settings_key: str
    """Hash of the preparation settings every shard was made with."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form facts about the preparation (inputs, jobs, workers)."""

    def to_json(self) -> str:
        """The meta.json text."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorpusMeta:
        """Parse meta.json's contents (raises ShardError on another format version)."""
        if d.get("format") != FORMAT_VERSION:
            raise ShardError(
                f"meta.json format {d.get('format')!r}; this reader reads {FORMAT_VERSION}"
            )
        d = dict(d)
        d["tokenizer"] = TokenizerInfo(**d["tokenizer"])
        d["shards"] = [ShardInfo(**s) for s in d["shards"]]
        return cls(**d)


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every token id fits, else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def padded(vocab_size: int) -> int:
    """vocab_size rounded up to a multiple of PAD_MULTIPLE."""
    return -(-vocab_size // PAD_MULTIPLE) * PAD_MULTIPLE


def content_hash(tokenizer_sha: str, dtype: str, files: list[ShardInfo]) -> str:
    """The corpus's content hash: tokenizer, dtype and the token files in order."""
    h = hashlib.sha256(f"{FORMAT_VERSION}|{tokenizer_sha}|{dtype}".encode())
    for f in files:
        h.update(f"|{f.stem}.{f.split}:{f.n_tokens}:{f.sha256}".encode())
    return h.hexdigest()


def read_done(path: Path) -> ShardDone:
    """Parse a ``<stem>.done.json`` record."""
    d = json.loads(path.read_text())
    d["files"] = [ShardInfo(**f) for f in d["files"]]
    return ShardDone(**d)


@dataclass(frozen=True)
class PreparedCorpus:
    """An opened prepared corpus: its meta and memory-mapped shards."""

    path: Path
    """The corpus folder."""
    meta: CorpusMeta
    """Its meta.json."""

    @property
    def vocab_size(self) -> int:
        """Token ids in use (the tokenizer's, with EOD)."""
        return self.meta.tokenizer.vocab_size

    @property
    def padded_vocab_size(self) -> int:
        """The model's vocabulary (a multiple of 64)."""
        return self.meta.tokenizer.padded_vocab_size

    @property
    def eod_id(self) -> int:
        """The end-of-document token."""
        return self.meta.tokenizer.eod_id

    def files(self, split: str) -> list[ShardInfo]:
        """The token files of `split`, in order."""
        if split not in SPLITS:
            raise ShardError(f"split {split!r} is unknown; valid: {list(SPLITS)}")
        return [s for s in self.meta.shards if s.split == split]

    def shard_tokens(self, split: str) -> list[np.memmap]:
        """Each shard's tokens of `split` as a read-only 1-D memmap, in order."""
        return [
            np.memmap(
                self.path / f"{s.stem}.{split}.bin",
                dtype=self.meta.dtype,
                mode="r",
                shape=(s.n_tokens,),
            )
            for s in self.files(split)
            if s.n_tokens
        ]

    def doc_offsets(self, split: str) -> list[np.ndarray]:
        """Each shard's document start offsets of `split` (n_docs + 1 entries), in order."""
        return [
            np.fromfile(self.path / f"{s.stem}.{split}.idx", dtype="<u8")
            for s in self.files(split)
            if s.n_tokens
        ]

    def tokens(self, split: str) -> np.ndarray:
        """All of `split` as one array: a memmap for one shard, else a concatenated copy
        (fine for val/test; stream train shards through shard_tokens)."""
        parts = self.shard_tokens(split)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0, dtype=self.meta.dtype)

    def n_tokens(self, split: str) -> int:
        """Tokens in `split`."""
        return self.meta.n_tokens.get(split, 0)

    def n_bytes(self, split: str) -> int:
        """UTF-8 bytes of text in `split`."""
        return self.meta.n_bytes.get(split, 0)


def open_corpus(path: str | Path) -> PreparedCorpus:
    """Open a complete prepared corpus, checking every file has the size meta.json promises."""
    folder = Path(path).expanduser()
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise ShardError(
            f"{folder} has no {META_FILE}: not a prepared corpus, or its preparation did not "
            "finish (run scaling-prepare again to resume it)"
        )
    meta = CorpusMeta.from_dict(json.loads(meta_path.read_text()))
    itemsize = np.dtype(meta.dtype).itemsize
    for s in meta.shards:
        for suffix, want in (("bin", s.n_tokens * itemsize), ("idx", (s.n_docs + 1) * 8)):
            f = folder / f"{s.stem}.{s.split}.{suffix}"
            if not f.exists() or f.stat().st_size != want:
                raise ShardError(f"{f} is missing or not {want} bytes; prepare {folder} again")
    return PreparedCorpus(path=folder, meta=meta)
