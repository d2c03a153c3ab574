"""The run store: one folder per run, the source of truth (see docs/formats.md).

runs/<experiment>/<run-name>/{config.yaml, metrics.csv, summary.json, checkpoints/last.ckpt}.
summary.json is replaced atomically, so a reader (or a killed writer) never sees half a file;
metrics.csv is appended and flushed row by row, so a crash loses at most the current row.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRIC_COLUMNS = [
    "step",
    "tokens",
    "flops_kaplan",
    "flops_6n",
    "flops_chinchilla",
    "train_loss",
    "val_loss",
    "lr",
    "tokens_per_s",
    "mfu",
    "epoch",
]
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


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and os.replace (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "value"):
        return o.value
    return str(o)


def _clean(o: Any) -> Any:
    """NaN/inf are not JSON: store them as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


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


class RunStore:
    """Read and write one run folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.summary_path = self.root / "summary.json"
        self.metrics_path = self.root / "metrics.csv"
        self.config_path = self.root / "config.yaml"
        self.ckpt_dir = self.root / "checkpoints"
        self._metrics_file: Any = None
        self._writer: Any = None

    @property
    def last_ckpt(self) -> Path:
        return self.ckpt_dir / "last.ckpt"

    def move_aside(self, tag: str) -> Path:
        """Move the folder to ``<experiment>/.<tag>/<name>-<k>`` (the first k free), out of the
        way of the run store's readers (they skip hidden folders); return the new path."""
        k = 1
        while (aside := self.root.parent / f".{tag}" / f"{self.root.name}-{k}").exists():
            k += 1
        aside.parent.mkdir(parents=True, exist_ok=True)
        self.root.rename(aside)
        return aside

    def read_summary(self) -> dict[str, Any] | None:
        """The stored summary, or None if the run was never started."""
        if not self.summary_path.exists():
            return None
        try:
            return json.loads(self.summary_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"corrupt run summary {self.summary_path}: {e}; move the folder aside to rerun"
            ) from None

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Replace summary.json atomically."""
        atomic_write_text(
            self.summary_path, json.dumps(_clean(summary), indent=2, default=_json_default) + "\n"
        )

    def update_summary(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into summary.json and return the result."""
        s = self.read_summary() or {}
        s.update(fields)
        self.write_summary(s)
        return s

    def write_config(self, cfg: DictConfig) -> None:
        """Store the fully resolved config."""
        atomic_write_text(self.config_path, OmegaConf.to_yaml(cfg, resolve=True))

    def open_metrics(self, keep_until_step: int | None) -> None:
        """Open metrics.csv for appending; on resume drop rows logged after the checkpoint."""
        self.root.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, str]] = []
        if keep_until_step is not None and self.metrics_path.exists():
            with self.metrics_path.open(newline="") as f:
                rows = [
                    r
                    for r in csv.DictReader(f)
                    if r.get("step") and int(r["step"]) <= keep_until_step
                ]
        self._metrics_file = self.metrics_path.open("w", newline="")
        self._writer = csv.DictWriter(
            self._metrics_file, fieldnames=METRIC_COLUMNS, extrasaction="ignore"
        )
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._metrics_file.flush()

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
