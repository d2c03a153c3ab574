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
import hashlib
import json
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from contract import (
    METRIC_COLUMNS,
    RunSummary,
    atomic_write_text,
    read_summary,
    write_summary,
)

# Keys that change how a run is watched or where it runs, not what it computes: a relaunch that
# differs only in these is the same run (skip / resume), anything else is a different run.
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
)
LOCK_FILE = ".lock"


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


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved config minus keys that do not change what the run computes."""
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(c, dict)
    for dotted in _NON_SEMANTIC:
        node: Any = c
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    blob = json.dumps(c, sort_keys=True, default=_json_default)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:16]


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
