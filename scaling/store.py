"""The run store: one folder per run, the source of truth (see docs/formats.md).

runs/<experiment>/<run-name>/{config.yaml, metrics.csv, summary.json, .lock,
checkpoints/{last,prev}.ckpt}. summary.json is written and read only as a
`contract.RunSummary` and replaced atomically, so a reader (or a killed writer) never
sees half a file; metrics.csv is appended and flushed row by row, so a crash loses at most the
current row. One process at a time writes a run folder: it holds the OS lock on `.lock`.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import hashlib
import json
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from contract import (
    METRIC_COLUMNS,
    RunSummary,
    atomic_write_text,
    read_summary,
    write_summary,
)
from scaling.config import Config

# Keys that change how a run is watched or where it runs, not what it computes: a relaunch that
# differs only in these is the same run (skip / resume), anything else is a different run. The
# `sweep` node says how a sweep planned the run, not what the run computes.
_NON_SEMANTIC = (
    "logger",
    "trainer.num_threads",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.progress_every_s",
    "trainer.peak_flops",  # only the MFU it reports
    "train.resume",
    "train.log_every",
    "train.checkpoint_every",
    "runs_dir",
    "data.cache_dir",
    "sweep",
)
LOCK_FILE = ".lock"
_ABSENT = object()  # a key a config does not have (None is a value)


class RunFolderError(Exception):
    """The run folder cannot be created, written or locked (a read-only or file `runs_dir`)."""

    def __init__(self, path: Path, err: OSError) -> None:
        self.path = path
        super().__init__(
            f"cannot create or lock the run folder {path}: {err.strerror or err} "
            f"({err.filename or path}); runs_dir must be a writable directory"
        )


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "value"):
        return o.value
    return str(o)


def _flat(tree: dict[str, Any], typed: frozenset[str], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, descending only into the schema's dataclass nodes
    (`typed`): a dict- or list-valued setting (optim.lr_table) is one value, compared whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path in typed:
            out |= _flat(value, typed, f"{path}.")
        else:
            out[path] = value
    return out


@functools.cache
def _schema() -> tuple[dict[str, Any], frozenset[str]]:
    """The schema's defaults as dotted keys (MISSING as "???"), and its dataclass nodes."""
    schema = OmegaConf.structured(Config)
    typed: set[str] = set()

    def walk(node: DictConfig, prefix: str) -> None:
        for key, child in node.items_ex(resolve=False):
            if isinstance(child, DictConfig) and is_dataclass(OmegaConf.get_type(child)):
                typed.add(f"{prefix}{key}")
                walk(child, f"{prefix}{key}.")

    walk(schema, "")
    tree = OmegaConf.to_container(schema, resolve=True, throw_on_missing=False, enum_to_str=True)
    assert isinstance(tree, dict)
    return _flat(tree, frozenset(typed)), frozenset(typed)


def schema_defaults() -> dict[str, Any]:
    """The schema's default values by dotted key (what a config without the key means)."""
    return dict(_schema()[0])


def _semantic(c: dict[str, Any]) -> dict[str, Any]:
    """A resolved config as dotted keys, less the keys that do not change what the run computes."""
    flat = _flat(c, _schema()[1])
    return {
        k: v
        for k, v in flat.items()
        if not any(k == n or k.startswith(f"{n}.") for n in _NON_SEMANTIC)
    }


def _plain(cfg: DictConfig) -> dict[str, Any]:
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False, enum_to_str=True)
    assert isinstance(c, dict)
    return c


def config_hash(cfg: DictConfig) -> str:
    """Hash of what the run computes: the resolved config's values that differ from the
    schema's defaults (scaling/config.py), less the keys that do not change the computation.

    The migration rule (docs/formats.md): a new setting whose default reproduces the old
    behaviour leaves every old run's hash as it was. Changing an existing default is a change of
    what old runs computed: give the new behaviour a new value instead.
    """
    defaults = _schema()[0]
    kept = {k: v for k, v in _semantic(_plain(cfg)).items() if defaults.get(k, _ABSENT) != v}
    blob = json.dumps(kept, sort_keys=True, default=_json_default)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_differences(stored: Path, cfg: DictConfig) -> list[str]:
    """The keys on which a run's stored config.yaml and `cfg` differ in what the run computes;
    [] means the same run.

    A key the stored config lacks whose value in `cfg` is the schema default is no difference:
    the setting was added after the run, with a default that reproduces what the run did. This
    accepts stores written under an older hash rule or before a setting existed.
    """
    try:
        old = OmegaConf.load(stored)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return [f"{stored} cannot be read ({type(e).__name__})"]
    if not isinstance(old, DictConfig):
        return [f"{stored} is not a mapping"]
    a, b = _semantic(_plain(old)), _semantic(_plain(cfg))
    defaults = _schema()[0]
    diff = []
    for key in sorted(a.keys() | b.keys()):
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if va == vb or (va is _ABSENT and vb == defaults.get(key, _ABSENT)):
            continue
        shown = ["(absent)" if v is _ABSENT else repr(v) for v in (va, vb)]
        diff.append(f"{key}: {shown[0]} -> {shown[1]}")
    return diff


def fsync_file(path: Path) -> None:
    """Flush `path` and the folder entry naming it to disk (a checkpoint survives a power loss)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _int_step(value: str | None) -> int | None:
    """A metrics row's step as an int; None if the cell is not a plain whole number."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class RunStore:
    """Read and write one run folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.summary_path = self.root / "summary.json"
        self.metrics_path = self.root / "metrics.csv"
        self.config_path = self.root / "config.yaml"
        self.lock_path = self.root / LOCK_FILE
        self.ckpt_dir = self.root / "checkpoints"
        self._metrics_file: Any = None
        self._writer: Any = None

    @property
    def last_ckpt(self) -> Path:
        """The latest checkpoint (resume point)."""
        return self.ckpt_dir / "last.ckpt"

    @property
    def prev_ckpt(self) -> Path:
        """The checkpoint before last.ckpt, kept for when last.ckpt is damaged."""
        return self.ckpt_dir / "prev.ckpt"

    @contextlib.contextmanager
    def lock(self) -> Iterator[str | None]:
        """Hold the folder's OS lock for the block: yields None, or who holds it ("host h pid p").

        flock belongs to the open file: it is released when the holder exits or dies, so a lock
        left by a killed process never blocks a relaunch.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunFolderError(self.root, e) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            if not held:
                yield os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
                return
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
            try:
                yield None
            finally:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the lock

    def move_aside(self, tag: str) -> Path:
        """Move the folder's contents to ``<experiment>/.<tag>/<name>-<k>`` (the first k free),
        out of the way of the run store's readers (they skip hidden folders); the lock file
        stays, so the folder stays held. Returns the new path."""
        k = 1
        while (aside := self.root.parent / f".{tag}" / f"{self.root.name}-{k}").exists():
            k += 1
        aside.mkdir(parents=True)
        for entry in self.root.iterdir():
            if entry.name != LOCK_FILE:
                entry.rename(aside / entry.name)
        return aside

    def quarantine(self, path: Path) -> Path:
        """Rename a damaged file to ``<stem>.damaged-<k><suffix>`` beside it; return the new path."""
        k = 1
        while (aside := path.with_name(f"{path.stem}.damaged-{k}{path.suffix}")).exists():
            k += 1
        path.rename(aside)
        return aside

    def rotate_checkpoint(self) -> None:
        """Keep the current last.ckpt as prev.ckpt before a new one is written."""
        if self.last_ckpt.exists():
            os.replace(self.last_ckpt, self.prev_ckpt)

    def read_summary(self) -> RunSummary | None:
        """The stored summary, or None if the run was never started (SummaryError if corrupt)."""
        return read_summary(self.summary_path)

    def write_summary(self, summary: RunSummary) -> None:
        """Replace summary.json atomically."""
        write_summary(self.summary_path, summary)

    def write_config(self, cfg: DictConfig) -> None:
        """Store the fully resolved config."""
        atomic_write_text(self.config_path, OmegaConf.to_yaml(cfg, resolve=True))

    def open_metrics(self, keep_until_step: int | None) -> list[str]:
        """Open metrics.csv for appending; on resume keep rows up to the checkpoint's step.

        Returns the `step` cells of rows dropped because they do not parse as a whole number.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, str]] = []
        bad: list[str] = []
        if keep_until_step is not None and self.metrics_path.exists():
            with self.metrics_path.open(newline="") as f:
                for r in csv.DictReader(f):
                    step = _int_step(r.get("step"))
                    if step is None:
                        bad.append(str(r.get("step")))
                    elif step <= keep_until_step:
                        rows.append(r)
        self._metrics_file = self.metrics_path.open("w", newline="")
        self._writer = csv.DictWriter(
            self._metrics_file, fieldnames=METRIC_COLUMNS, extrasaction="ignore"
        )
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._metrics_file.flush()
        return bad

    def log_row(self, row: dict[str, Any]) -> None:
        """Append one metrics row and flush it to disk."""
        clean = {
            k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
            for k, v in row.items()
        }
        self._writer.writerow(clean)
        self._metrics_file.flush()

    def close(self) -> None:
        """Close metrics.csv (idempotent)."""
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
