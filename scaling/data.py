"""Corpora -> deterministic memory-mapped token files -> batches.

A built-in corpus is prepared once into `<cache_dir>/<name>-<key>/` (`train.bin`, `val.bin`,
`meta.json`, and `tokenizer.json` for BPE), where `key` hashes the data settings and a
fingerprint of the source (file names, sizes, mtimes; the Markov settings). A later call with
the same key only reads `meta.json`. The folder is built under a temporary name and renamed
into place, so a parallel sweep job never sees half a corpus; a lock file keeps those jobs from
all doing the work at once.

Token files are raw arrays: uint8 when the vocabulary fits in a byte (the byte tokenizer, small
Markov sources), else uint16. The validation split is the tail of the corpus: the last
`val_fraction` of the raw bytes for the stdlib corpus (the same text for either tokenizer, so
bits-per-byte compare across them) and of the tokens for the Markov source.

Corpora (`data.name`):
- `stdlib`: the running Python's standard library, `*.py` files outside site-packages,
  dist-packages and test folders, in sorted relative-path order, joined by a blank line.
- `markov`: a random sparse Markov source whose entropy rate (the irreducible loss) is exact.
- `text`: the user's corpus at `data.path`, prepared by `scaling-prepare` (streamed through
  worker processes into token shards, never whole in memory: `scaling/prepare.py`) into
  `<cache_dir>/text-<key>/` and trained on like `data=prepared`. Any input scaling-prepare
  reads (text files, folders, .jsonl(.gz) with the text in `data.jsonl_key`, parquet); a plain
  text file is cut at line ends into documents of ~4 KB, and the validation split is
  `data.val_fraction` of the documents, chosen by a hash of each (`text_settings` maps the
  options). A bad input (missing, empty, binary, no text field) is refused, naming the file.
  A folder already prepared by `scaling-prepare` (any tokenizer) is opened as it is; one whose
  preparation did not finish is refused.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import __version__ as tokenizers_version
from tokenizers import decoders, models, pre_tokenizers, trainers
from torch.utils.data import IterableDataset, get_worker_info

from scaling.config import DataConfig, MarkovConfig, Tokenizer
from scaling.prepare import PrepareSettings, input_files, prepare
from scaling.shards import META_FILE, DataError, PreparedCorpus, open_corpus

# Bump when the layout of a prepared folder or the definition of a corpus changes, so old
# caches are rebuilt instead of silently reused.
FORMAT = 1
DOC_SEP = b"\n\n"  # between the files / documents of a corpus
_DENSE_MAX_STATES = 2048  # Markov sources up to this size get an exact dense solve
_POWER_MAX_ITERS = 20_000
# data=text: a plain text file is cut at line ends into documents of about this many bytes,
# because the validation split is chosen per document (by hash) and a corpus of one file needs
# many documents for data.val_fraction to hold some apart: a 1 MB file gives ~250, of which
# val_fraction=0.02 holds ~5. An end-of-document token follows each (as at a file's end).
TEXT_DOC_BYTES = 4096
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    """A prepared corpus: two memory-mapped token splits and what they hold."""

    name: str
    vocab_size: int
    content_hash: str  # sha256 of both splits' tokens (and the BPE tokenizer); logged per run
    n_train: int
    n_val: int
    entropy_rate: float | None  # nats/token, markov only: the irreducible loss E
    path: Path  # the prepared folder
    dtype: str  # numpy dtype of the token files
    prepared: PreparedCorpus | None = None  # a scaling-prepare folder (shards); vocab_size padded

    def train_tokens(self) -> np.ndarray:
        """The training split as a read-only 1-D memmap (a copy for a multi-shard corpus)."""
        if self.prepared is not None:
            return self.prepared.tokens("train")
        return np.memmap(self.path / "train.bin", dtype=self.dtype, mode="r", shape=(self.n_train,))

    def val_tokens(self) -> np.ndarray:
        """The validation split as a read-only 1-D memmap (a copy for a multi-shard corpus)."""
        if self.prepared is not None:
            return self.prepared.tokens("val")
        return np.memmap(self.path / "val.bin", dtype=self.dtype, mode="r", shape=(self.n_val,))

    def meta(self) -> dict[str, Any]:
        """The prepared folder's meta.json (source description, tokenizer, sizes)."""
        return json.loads((self.path / "meta.json").read_text())


# --------------------------------------------------------------------------- preparation


def load_corpus(cfg: DataConfig) -> Corpus:
    """Return the prepared corpus for `cfg`, preparing it into the cache first if needed."""
    if cfg.name == "text":
        path = Path(str(cfg.path)).expanduser()
        return _open_prepared(path) if _is_prepared(path) else _prepare_text(cfg)
    fingerprint = _fingerprint(cfg)
    key = _sha256(json.dumps(fingerprint, sort_keys=True).encode())[:16]
    cache = Path(cfg.cache_dir).expanduser()
    folder = cache / f"{cfg.name}-{key}"
    if (folder / "meta.json").exists():
        return _open(folder)
    cache.mkdir(parents=True, exist_ok=True)
    with _lock(cache / f".{folder.name}.lock"):
        if (folder / "meta.json").exists():  # another job prepared it while we waited
            return _open(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=cache))
        try:
            _prepare(cfg, tmp, key)
            try:
                os.rename(tmp, folder)
            except OSError:
                # lost a race the lock could not prevent (e.g. a filesystem without flock)
                if not (folder / "meta.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _open(folder)


def text_settings(cfg: DataConfig, out: Path) -> PrepareSettings:
    """The scaling-prepare settings that data=text stands for (its options mapped onto them)."""
    return PrepareSettings(
        inputs=[str(Path(str(cfg.path)).expanduser())],
        out=str(out),
        tokenizer=cfg.tokenizer.value,
        bpe_vocab_size=cfg.bpe_vocab_size,
        text_key=cfg.jsonl_key,
        val_fraction=cfg.val_fraction,
        max_bytes=cfg.max_bytes,
        text_doc_bytes=TEXT_DOC_BYTES,
        progress=sys.stderr.isatty(),
    )


def _prepare_text(cfg: DataConfig) -> Corpus:
    """The user's corpus, prepared by scaling-prepare (streamed, all cores) into the cache.

    Prepared in place under the lock rather than renamed into place: a killed preparation of
    a large corpus resumes from its finished shards, and meta.json, written last, is the
    completion marker that every reader checks.
    """
    key = _sha256(json.dumps(_fingerprint(cfg), sort_keys=True).encode())[:16]
    cache = Path(cfg.cache_dir).expanduser()
    folder = cache / f"text-{key}"
    if not (folder / META_FILE).exists():
        cache.mkdir(parents=True, exist_ok=True)
        with _lock(cache / f".{folder.name}.lock"):
            if not (folder / META_FILE).exists():  # else another job prepared it meanwhile
                settings = text_settings(cfg, folder)
                prepare(settings)
                _say_if_capped(cfg, settings)
    return _open_prepared(folder)


def _say_if_capped(cfg: DataConfig, settings: PrepareSettings) -> None:
    if cfg.max_bytes is None:
        return
    n_bytes = sum(open_corpus(settings.out).meta.n_bytes.values())
    if n_bytes > cfg.max_bytes - 4:  # the cap falls at a character boundary: up to 3 short
        print(
            f"[data] text corpus capped at data.max_bytes={cfg.max_bytes} "
            "(data.max_bytes=null reads all of it)",
            file=sys.stderr,
        )


def _is_prepared(path: Path) -> bool:
    """Whether `path` is a scaling-prepare folder (complete or not)."""
    return path.is_dir() and any(path.glob("*.done.json"))  # every finished shard has one


def _open_prepared(path: Path) -> Corpus:
    """A scaling-prepare folder as a Corpus (refused unless its preparation finished)."""
    prepared = open_corpus(path)
    m = prepared.meta
    return Corpus(
        name="text",
        vocab_size=m.tokenizer.padded_vocab_size,
        content_hash=m.content_hash,
        n_train=m.n_tokens["train"],
        n_val=m.n_tokens["val"],
        entropy_rate=None,
        path=path,
        dtype=m.dtype,
        prepared=prepared,
    )


def _fingerprint(cfg: DataConfig) -> dict[str, Any]:
    """Everything the prepared tokens depend on, cheap to compute (no file contents)."""
    fp: dict[str, Any] = {"format": FORMAT, "name": cfg.name, "val_fraction": cfg.val_fraction}
    if cfg.name == "markov":
        m = cfg.markov
        fp["markov"] = [m.vocab_size, m.order, m.branching, m.concentration, m.n_tokens, m.seed]
        return fp
    fp["tokenizer"] = cfg.tokenizer.value
    if cfg.tokenizer == Tokenizer.bpe:
        fp["bpe"] = [cfg.bpe_vocab_size, tokenizers_version]
    fp["max_bytes"] = cfg.max_bytes
    if cfg.name == "text":
        # the shards' own settings key covers the rest (format, chunking, files and mtimes)
        fp["layout"] = "shards"
        fp["jsonl_key"] = cfg.jsonl_key
        fp["text_doc_bytes"] = TEXT_DOC_BYTES
        fp["files"] = [[str(f), *_stat(f)] for f in input_files([str(cfg.path)])]
        return fp
    root, rels = _stdlib_files()
    fp["python"] = sys.version
    fp["root"] = str(root)
    fp["files"] = [[r, *_stat(root / r)] for r in rels]
    return fp


def _stat(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_size, st.st_mtime_ns


def _stdlib_files() -> tuple[Path, list[str]]:
    """The stdlib root and its corpus files' relative paths, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP_DIRS]
        rel_dir = Path(dirpath).relative_to(root)
        rels += [(rel_dir / f).as_posix() for f in filenames if f.endswith(".py")]
    return root, sorted(rels)


def _prepare(cfg: DataConfig, out: Path, key: str) -> None:
    """Build the corpus's token files and meta.json in folder `out`."""
    entropy_rate = None
    tokenizer_json = b""
    if cfg.name == "markov":
        source = markov_source(cfg.markov)
        entropy_rate = source.entropy_rate()
        # a random stream apart from the one that drew the source itself
        rng = np.random.default_rng([cfg.markov.seed, 1])
        tokens = source.sample(cfg.markov.n_tokens, rng)
        n_val = max(1, round(len(tokens) * cfg.val_fraction))
        train, val = tokens[:-n_val], tokens[-n_val:]
        vocab_size, n_bytes = cfg.markov.vocab_size, None
        description = (
            f"Markov source: order {cfg.markov.order}, {cfg.markov.vocab_size} symbols, "
            f"{cfg.markov.branching} successors/state, Dirichlet({cfg.markov.concentration}), "
            f"seed {cfg.markov.seed}"
        )
    else:
        raw, description = _read_raw(cfg)
        cut = _split_point(raw, cfg.val_fraction)
        if cut == 0 or cut == len(raw):
            raise DataError(
                f"the {cfg.name} corpus ({description}) has {len(raw)} bytes, too few to split "
                f"off data.val_fraction={cfg.val_fraction} for validation"
            )
        n_bytes = len(raw)
        if cfg.tokenizer == Tokenizer.bpe:
            tok = _train_bpe(raw[:cut].decode(), cfg.bpe_vocab_size)
            tokenizer_json = tok.to_str().encode()
            (out / "tokenizer.json").write_bytes(tokenizer_json)
            vocab_size = tok.get_vocab_size()
            train, val = (_bpe_encode(tok, part.decode()) for part in (raw[:cut], raw[cut:]))
        else:
            vocab_size = 256
            train = np.frombuffer(raw[:cut], dtype=np.uint8)
            val = np.frombuffer(raw[cut:], dtype=np.uint8)
    dtype = np.dtype(np.uint8 if vocab_size <= 256 else np.uint16)
    train, val = train.astype(dtype, copy=False), val.astype(dtype, copy=False)
    train.tofile(out / "train.bin")
    val.tofile(out / "val.bin")
    content_hash = hashlib.sha256()
    for part in (dtype.str.encode(), train.tobytes(), val.tobytes(), tokenizer_json):
        # length prefixes keep (train, val) = ("ab", "c") apart from ("a", "bc")
        content_hash.update(len(part).to_bytes(8, "little") + part)
    meta = {
        "format": FORMAT,
        "name": cfg.name,
        "key": key,
        "vocab_size": int(vocab_size),
        "dtype": dtype.name,
        "n_train": len(train),
        "n_val": len(val),
        "content_hash": content_hash.hexdigest(),
        "entropy_rate": entropy_rate,
        "tokenizer": cfg.tokenizer.value if cfg.name != "markov" else None,
        "bpe_vocab_size": cfg.bpe_vocab_size if cfg.tokenizer == Tokenizer.bpe else None,
        "n_bytes": n_bytes,
        "val_fraction": cfg.val_fraction,
        "source": description,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _open(folder: Path) -> Corpus:
    """Load a prepared folder, checking the token files have the sizes meta.json promises."""
    meta = json.loads((folder / "meta.json").read_text())
    itemsize = np.dtype(meta["dtype"]).itemsize
    for split in ("train", "val"):
        f = folder / f"{split}.bin"
        want = meta[f"n_{split}"] * itemsize
        if not f.exists() or f.stat().st_size != want:
            raise DataError(f"{f} is missing or not {want} bytes; delete {folder} to rebuild it")
    return Corpus(
        name=meta["name"],
        vocab_size=meta["vocab_size"],
        content_hash=meta["content_hash"],
        n_train=meta["n_train"],
        n_val=meta["n_val"],
        entropy_rate=meta["entropy_rate"],
        path=folder,
        dtype=meta["dtype"],
    )


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------------------- text sources


def _read_raw(cfg: DataConfig) -> tuple[bytes, str]:
    """The stdlib corpus's UTF-8 bytes (capped at max_bytes) and a one-line description."""
    root, rels = _stdlib_files()
    docs, n_skipped, capped = _concat_files(root, rels, cfg.max_bytes)
    where = f"Python {sys.version.split()[0]} standard library at {root}"
    raw = _cap(DOC_SEP.join(docs), cfg.max_bytes)
    if not raw.strip():
        raise DataError(
            f"the {cfg.name} corpus ({where}) is empty: {len(docs)} documents hold no text, "
            f"{n_skipped} files were skipped as not UTF-8"
        )
    description = (
        f"{where}: {len(docs)} documents, {n_skipped} skipped (not UTF-8), {len(raw)} bytes"
    )
    if capped:
        description += f", capped at data.max_bytes={cfg.max_bytes}"
        print(
            f"[data] {cfg.name} corpus capped at data.max_bytes={cfg.max_bytes} "
            "(data.max_bytes=null reads all of it)",
            file=sys.stderr,
        )
    return raw, description


def _concat_files(
    root: Path, rels: list[str], max_bytes: int | None
) -> tuple[list[bytes], int, bool]:
    """The documents of the files that decode as UTF-8, until max_bytes; (documents, files
    skipped, capped)."""
    docs: list[bytes] = []
    total = n_skipped = 0
    for rel in rels:
        if max_bytes is not None and total >= max_bytes:
            return docs, n_skipped, True
        data = (root / rel).read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            n_skipped += 1
            continue
        new = [data] if data else []
        docs += new
        total += sum(len(d) + len(DOC_SEP) for d in new)
    return docs, n_skipped, max_bytes is not None and total - len(DOC_SEP) > max_bytes


def _cap(raw: bytes, max_bytes: int | None) -> bytes:
    """Truncate to max_bytes without leaving half a UTF-8 character at the end."""
    if max_bytes is None or len(raw) <= max_bytes:
        return raw
    return raw[:max_bytes].decode("utf-8", errors="ignore").encode()


def _split_point(raw: bytes, val_fraction: float) -> int:
    """Byte offset where validation starts: the last val_fraction, at a character boundary."""
    cut = round(len(raw) * (1 - val_fraction))
    while 0 < cut < len(raw) and raw[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte
        cut -= 1
    return cut


def _train_bpe(text: str, vocab_size: int) -> HFTokenizer:
    """A byte-level BPE tokenizer trained on `text` (deterministic for a given text)."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    tok.train_from_iterator(text.splitlines(keepends=True), trainer)
    return tok


def _bpe_encode(tok: HFTokenizer, text: str) -> np.ndarray:
    """Token ids of `text`; encoded in chunks of whole lines so the tokenizer runs in parallel."""
    lines = text.splitlines(keepends=True)
    chunks = ["".join(lines[i : i + 256]) for i in range(0, len(lines), 256)]
    encodings = tok.encode_batch(chunks)
    return np.concatenate([np.asarray(e.ids, dtype=np.uint16) for e in encodings] or [[]])


# --------------------------------------------------------------------------- markov source


@dataclass(frozen=True)
class MarkovSource:
    """A Markov source of order k over V symbols; its state is the last k symbols in base V."""

    vocab_size: int
    order: int
    successors: np.ndarray  # (S, b) distinct next symbols of each state
    probs: np.ndarray  # (S, b) their probabilities (rows sum to 1)

    @property
    def n_states(self) -> int:
        """S = V**order."""
        return self.vocab_size**self.order

    def next_state(self, state: np.ndarray | int, symbol: np.ndarray | int) -> Any:
        """The state after emitting `symbol` from `state` (drop the oldest symbol)."""
        return (state * self.vocab_size + symbol) % self.n_states

    @cached_property
    def stationary(self) -> np.ndarray:
        """The stationary distribution pi (pi P = pi), to float64 precision."""
        s = self.n_states
        src = np.repeat(np.arange(s), self.successors.shape[1])
        dst = self.next_state(src, self.successors.ravel())
        w = self.probs.ravel()
        if s <= _DENSE_MAX_STATES:
            # exact whatever the mixing time: (P^T - I) pi = 0, one equation swapped for
            # sum(pi) = 1 (the system is otherwise singular)
            a = np.zeros((s, s))
            np.add.at(a, (dst, src), w)
            a -= np.eye(s)
            a[-1] = 1.0
            b = np.zeros(s)
            b[-1] = 1.0
            pi = np.clip(np.linalg.solve(a, b), 0.0, None)
            return pi / pi.sum()
        # A sparse LU of a random graph fills in to a dense one, so large sources use power
        # iteration, which converges in ~100 steps unless the source is nearly deterministic.
        pi = np.full(s, 1.0 / s)
        for _ in range(_POWER_MAX_ITERS):
            new = np.bincount(dst, weights=pi[src] * w, minlength=s)
            change = np.abs(new - pi).sum()
            pi = new
            if change < 1e-13:
                return pi / pi.sum()
        raise DataError(
            f"the stationary distribution of a {s}-state Markov source did not converge in "
            f"{_POWER_MAX_ITERS} power iterations (the source is nearly deterministic); raise "
            "data.markov.concentration or lower data.markov.order / vocab_size"
        )

    def entropy_rate(self) -> float:
        """H = sum_s pi(s) H(P(s, .)) in nats/token: the loss of the true conditional model."""
        p = self.probs
        row_entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
        return float(self.stationary @ row_entropy)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n symbols of the chain started from its stationary distribution."""
        state = int(rng.choice(self.n_states, p=self.stationary))
        cum = np.cumsum(self.probs, axis=1)
        cum[:, -1] = 1.0  # so u < 1 always picks a successor despite rounding
        out = np.empty(n, dtype=np.uint16)
        chunk = 1 << 20
        # a plain loop over Python lists: ~0.25 us/token, and exact by inspection
        cum_l, succ_l = cum.tolist(), self.successors.tolist()
        v, s_total = self.vocab_size, self.n_states
        for lo in range(0, n, chunk):
            u = rng.random(min(chunk, n - lo)).tolist()
            block = [0] * len(u)
            for i, ui in enumerate(u):
                symbol = succ_l[state][bisect.bisect_right(cum_l[state], ui)]
                block[i] = symbol
                state = (state * v + symbol) % s_total
            out[lo : lo + len(u)] = block
        return out


def markov_source(cfg: MarkovConfig) -> MarkovSource:
    """Draw the random sparse source of `cfg`, irreducible and aperiodic by construction."""
    v, k, b = cfg.vocab_size, cfg.order, cfg.branching
    s = v**k
    rng = np.random.default_rng(cfg.seed)
    # One successor of every state follows a de Bruijn cycle, which visits every state, so the
    # chain is irreducible; a self-loop on state 0 (all zeros) adds a cycle of length 1, so it
    # is aperiodic. The other b-1 successors are uniform among the remaining symbols.
    cycle = np.asarray(_de_bruijn(v, k))
    ext = np.concatenate([cycle, cycle[:k]])
    states = sum(ext[j : j + s] * v ** (k - 1 - j) for j in range(k))
    forced = np.empty(s, dtype=np.int64)
    forced[states] = ext[k : k + s]
    others = _distinct_per_row(rng, s, v - 1, b - 1)
    others += others >= forced[:, None]  # skip the forced symbol
    successors = np.concatenate([forced[:, None], others], axis=1)
    if 0 not in successors[0]:
        successors[0, -1] = 0
    probs = rng.dirichlet(np.full(b, cfg.concentration), size=s)
    # tiny concentrations can underflow a probability to 0, which would delete an edge the
    # construction relies on; the exact H is computed from these floored probabilities
    probs = np.maximum(probs, 1e-12)
    probs /= probs.sum(axis=1, keepdims=True)
    return MarkovSource(vocab_size=v, order=k, successors=successors, probs=probs)


def _de_bruijn(v: int, k: int) -> list[int]:
    """A cyclic sequence of length v**k in which every k-tuple of symbols appears once."""
    a = [0] * (k + 1)
    seq: list[int] = []

    def db(t: int, p: int) -> None:
        # the classic Lyndon-word construction (Ruskey, Savage & Wang)
        if t > k:
            if k % p == 0:
                seq.extend(a[1 : p + 1])
            return
        a[t] = a[t - p]
        db(t + 1, p)
        for j in range(a[t - p] + 1, v):
            a[t] = j
            db(t + 1, t)

    db(1, 1)
    return seq


def _distinct_per_row(rng: np.random.Generator, rows: int, n: int, m: int) -> np.ndarray:
    """(rows, m) integers in [0, n), distinct within each row: Floyd's algorithm, vectorised."""
    out = np.empty((rows, m), dtype=np.int64)
    for i, j in enumerate(range(n - m, n)):
        t = rng.integers(0, j + 1, size=rows)
        taken = (out[:, :i] == t[:, None]).any(axis=1)
        out[:, i] = np.where(taken, j, t)
    return out


# --------------------------------------------------------------------------- batches


def _windows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping (seq_len+1)-token windows at stride seq_len, as a view (no copy)."""
    if len(tokens) < seq_len + 1:
        return np.empty((0, seq_len + 1), dtype=tokens.dtype)
    view = np.lib.stride_tricks.sliding_window_view(np.asarray(tokens), seq_len + 1)
    return view[::seq_len]


def n_windows(n_tokens: int, seq_len: int) -> int:
    """How many (seq_len+1)-token windows at stride seq_len a split of n_tokens holds."""
    return max(0, (n_tokens - 1) // seq_len)


def check_train_split(what: str, n_tokens: int, batch_size: int, seq_len: int) -> None:
    """Refuse a training split (`what` names it) too small for one batch of windows."""
    windows = n_windows(n_tokens, seq_len)
    if windows < batch_size:
        fits = f"train.batch_size={windows}" if windows else "none at this model.seq_len"
        raise DataError(
            f"{what} has {n_tokens} tokens = {windows} windows of seq_len+1={seq_len + 1}; one "
            f"batch of train.batch_size={batch_size} needs {batch_size} windows "
            f"({batch_size * seq_len + 1} tokens); the largest batch that fits: {fits}. Use a "
            "larger corpus (data.max_bytes, data.markov.n_tokens) or a smaller "
            "train.batch_size / model.seq_len"
        )


def check_val_split(what: str, n_tokens: int, eval_tokens: int, seq_len: int) -> int:
    """Refuse a validation split (`what` names it) too small for train.eval_tokens; returns
    how many windows each evaluation scores."""
    windows, need = n_windows(n_tokens, seq_len), max(1, eval_tokens // seq_len)
    if windows < need:
        fits = f"at most train.eval_tokens={windows * seq_len} fits" if windows else "none fits"
        raise DataError(
            f"{what} has {n_tokens} tokens = {windows} windows of seq_len+1={seq_len + 1}; "
            f"train.eval_tokens={eval_tokens} needs {need} ({fits}). Raise data.val_fraction, "
            "use a larger corpus or lower train.eval_tokens"
        )
    return need


def check_corpus_fits(
    corpus: Corpus, batch_size: int, seq_len: int, eval_tokens: int, cap: int | None = None
) -> None:
    """Refuse a corpus whose training split cannot fill one batch or whose validation split
    cannot hold train.eval_tokens, or shorter than data.unique_tokens (`cap`), naming the
    corpus, its token counts and what would fit."""
    source = corpus.meta().get("source", corpus.path)
    if cap is not None and cap > corpus.n_train:
        raise DataError(
            f"data.unique_tokens={cap} exceeds the training split of the {corpus.name} corpus "
            f"({source}): {corpus.n_train} tokens; use at most that, or a larger corpus"
        )
    check_train_split(
        f"the training split of the {corpus.name} corpus ({source})"
        + ("" if cap is None else f" capped at data.unique_tokens={cap}"),
        corpus.n_train if cap is None else cap,
        batch_size,
        seq_len,
    )
    check_val_split(
        f"the validation split of the {corpus.name} corpus ({source})",
        corpus.n_val,
        eval_tokens,
        seq_len,
    )


def _to_xy(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    xy = torch.from_numpy(rows.astype(np.int64))
    # contiguous so the model can .view() the targets
    return xy[:, :-1].contiguous(), xy[:, 1:].contiguous()


def train_parts(corpus: Corpus | PreparedCorpus, cap: int | None = None) -> list[np.ndarray]:
    """The training split as memory-mapped parts (a prepared corpus's shards, else one array),
    cut to its first `cap` tokens when given (data.unique_tokens: U of a repeated-data run)."""
    prepared = corpus if isinstance(corpus, PreparedCorpus) else corpus.prepared
    parts = [corpus.train_tokens()] if prepared is None else prepared.shard_tokens("train")
    if cap is None:
        return parts
    out, left = [], cap
    for part in parts:
        if left <= 0:
            break
        out.append(part[:left])
        left -= len(out[-1])
    return out


def val_tokens_per_byte(corpus: Corpus | PreparedCorpus) -> float | None:
    """Validation tokens per byte of validation text (bpb = nats x this / ln 2); None when the
    corpus has no byte count (a Markov source)."""
    prepared = corpus if isinstance(corpus, PreparedCorpus) else corpus.prepared
    if prepared is not None:
        n_tokens, n_bytes = prepared.n_tokens("val"), prepared.n_bytes("val")
    else:
        meta, n_tokens = corpus.meta(), corpus.n_val
        n_bytes = meta.get("n_val_bytes")
        if n_bytes is None and meta.get("tokenizer") == Tokenizer.byte.value:
            n_bytes = n_tokens  # one token per byte
    return n_tokens / n_bytes if n_tokens and n_bytes else None


class TokenBatches:
    """Deterministic training batches: batch k is a pure function of (seed, k), so a resumed
    run sees exactly the batches an uninterrupted one would.

    The split (one token array, or a corpus's shards, each read through its memory map) is cut
    into non-overlapping windows of seq_len+1 tokens (per shard: none spans two shards); each
    epoch visits every window once in an order drawn from (seed, epoch), and batch k holds
    windows [kB, (k+1)B) of the epochs' orders laid end to end, so no window repeats before the
    epoch ends. Only the batch's windows are read, so the loader costs the same for any split
    size; token ids of any unsigned dtype (uint8/16/32) come out as int64.
    """

    def __init__(
        self, tokens: np.ndarray | list[np.ndarray], batch_size: int, seq_len: int, seed: int
    ):
        parts = [tokens] if isinstance(tokens, np.ndarray) else list(tokens)
        self.shards = [w for w in (_windows(t, seq_len) for t in parts) if len(w)]
        self.n_windows = sum(len(w) for w in self.shards)
        self.windows = self.shards[0] if len(self.shards) == 1 else None
        # first global window index of each shard, for the shard lookup of a batch
        self._first = np.cumsum([0] + [len(w) for w in self.shards[:-1]])
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        # shards: the tokens in whole windows, so the count of windows in the message is exact
        n = len(parts[0]) if len(parts) == 1 else self.n_windows * seq_len + 1
        check_train_split("the training split", n, batch_size, seq_len)
        if seed < 0:
            raise DataError(f"seed={seed} must be >= 0")
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(
                self.n_windows
            )
            if len(self._perms) > 2:  # a batch spans at most two epochs
                self._perms.popitem(last=False)
        return self._perms[epoch]

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) int64 tensors of shape (B, T); y is x shifted left by one token."""
        g = k * self.batch_size
        epoch, pos = divmod(g, self.n_windows)
        idx = self._perm(epoch)[pos : pos + self.batch_size]
        if len(idx) < self.batch_size:  # the batch crosses into the next epoch
            idx = np.concatenate([idx, self._perm(epoch + 1)[: self.batch_size - len(idx)]])
        return _to_xy(self._gather(idx))  # (B, T+1) gathered, then split

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        """The (len(idx), T+1) windows at global window indices `idx`, in that order."""
        if self.windows is not None:
            return self.windows[idx]
        shard = np.searchsorted(self._first, idx, side="right") - 1
        rows = np.empty((len(idx), self.seq_len + 1), dtype=self.shards[0].dtype)
        for s in np.unique(shard):
            at = np.flatnonzero(shard == s)
            rows[at] = self.shards[s][idx[at] - self._first[s]]
        return rows

    def epoch_at(self, k: int) -> float:
        """Fractional epochs of the training split consumed after k batches."""
        return k * self.batch_size / self.n_windows


def val_batches(
    corpus: Corpus | PreparedCorpus, eval_tokens: int, batch_size: int, seq_len: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed held-out windows, evenly spaced over the validation split, in batches.

    The windows depend only on the corpus, ``eval_tokens`` and ``seq_len``: every run of a
    sweep is scored on the same text whatever its batch size (the last batch may be smaller).
    A prepared corpus's validation shards are read as one array (the split is small).
    """
    if isinstance(corpus, PreparedCorpus):
        name, tokens = str(corpus.path), corpus.tokens("val")
    else:
        name, tokens = corpus.name, corpus.val_tokens()
    need = check_val_split(f"the validation split of {name}", len(tokens), eval_tokens, seq_len)
    windows = _windows(tokens, seq_len)
    idx = np.arange(need) * len(windows) // need  # distinct, since len(windows) >= need
    return [_to_xy(windows[idx[i : i + batch_size]]) for i in range(0, need, batch_size)]


class BatchStream(IterableDataset):
    """Yields TokenBatches.batch(k) for k = start(), start()+1, ... forever (or up to an end).

    `start` is called when iteration begins, so a resumed trainer can pass its restored step.
    Use it with DataLoader(batch_size=None, num_workers=0): a batch costs microseconds, and a
    worker process would only see a stale copy of `start`.
    """

    def __init__(self, batches: TokenBatches, start: Callable[[], int], end: int | None = None):
        super().__init__()
        self.batches, self.start, self.end = batches, start, end

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if get_worker_info() is not None:
            raise DataError("BatchStream must be loaded with num_workers=0")
        k = self.start()
        while self.end is None or k < self.end:
            yield self.batches.batch(k)
            k += 1
