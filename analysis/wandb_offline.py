"""Read W&B offline run files (``run-<id>.wandb``) without the W&B service.

The file is a W&B header (``:W&B``, 2-byte magic 0xBEE1, 1-byte version) followed by a LevelDB
log: 32 KiB blocks of chunks, each with a 7-byte header crc32c(4) length(2, little-endian)
type(1) (FULL=1, FIRST=2, MIDDLE=3, LAST=4); a block tail shorter than 7 bytes is zero
padding. Each reassembled record is a ``wandb_internal_pb2.Record`` protobuf: ``run`` (name,
group, config), ``config`` (updates), ``history`` (one logged row: items with ``key`` or
``nested_key`` and ``value_json``), ``summary`` (updates) and ``exit``. wandb 0.31 ships no
reader for this format in Python (its old ``DataStore`` is gone), hence this one. Checksums are
not verified (the standard library has no crc32c); a truncated tail is ignored.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

BLOCK = 32 * 1024
CHUNK_HEADER = 7
FILE_MAGIC = b":W&B"
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class OfflineRunError(ValueError):
    """A ``.wandb`` file that cannot be read (not a W&B run file, or a record that does not
    parse); names the file and the problem."""


def find_wandb_file(path: str | Path) -> Path:
    """The ``.wandb`` file of a run: the path itself, or the one file under a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    files = sorted(path.glob("*.wandb")) or sorted(path.rglob("*.wandb"))
    if len(files) != 1:
        found = [str(f) for f in files] or "none"
        raise FileNotFoundError(f"expected one .wandb file under {path}, found {found}")
    return files[0]


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Raw protobuf payloads of the records in a ``.wandb`` file, in order."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise OfflineRunError(f"cannot read {path}: {err.strerror or err}") from None
    if data[:4] != FILE_MAGIC:
        raise OfflineRunError(
            f"{path} is not a W&B run file (starts with {data[:4]!r}, not {FILE_MAGIC!r})"
        )
    pos, pending = 7, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if len(chunk) < length:
            break  # truncated tail of a run still being written
        pos += CHUNK_HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def _loads(value_json: str):
    try:
        return json.loads(value_json)
    except ValueError:
        return value_json


def _path(item) -> list[str]:
    return list(item.nested_key) if len(item.nested_key) else [item.key]


def _set(tree: dict, keys: list[str], value) -> None:
    for k in keys[:-1]:
        node = tree.get(k)
        if not isinstance(node, dict):
            node = tree[k] = {}
        tree = node
    tree[keys[-1]] = value


def _delete(tree: dict, keys: list[str]) -> None:
    for k in keys[:-1]:
        tree = tree.get(k, {})
        if not isinstance(tree, dict):
            return
    tree.pop(keys[-1], None)


def read_offline_run(path: str | Path) -> dict:
    """History (DataFrame), summary and config (dicts) of an offline W&B run.

    ``path`` is a ``run-<id>.wandb`` file or the run folder holding it. Nested history keys are
    joined with ``.`` (``{"val": {"loss": 2}}`` -> ``val.loss``), as the W&B API does; summary
    and config keep their nesting. Also returned: ``id``, ``name``, ``group``, ``project``,
    ``job_type``, ``tags``, ``exit_code`` (None if the run never finished) and ``path``.
    """
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2 as pb

    file = find_wandb_file(path)
    rows: list[dict] = []
    summary: dict = {}
    config: dict = {}
    info: dict = {"id": None, "name": None, "group": None, "project": None, "exit_code": None}
    info.update(job_type=None, tags=[])

    def apply_config(cfg) -> None:
        for item in cfg.update:
            _set(config, _path(item), _loads(item.value_json))
        for item in cfg.remove:
            _delete(config, _path(item))

    for payload in iter_records(file):
        rec = pb.Record()
        try:
            rec.ParseFromString(payload)
        except DecodeError as err:
            raise OfflineRunError(f"{file}: a record does not parse ({err})") from None
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            rows.append({".".join(_path(i)): _loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                _set(summary, _path(item), _loads(item.value_json))
            for item in rec.summary.remove:
                _delete(summary, _path(item))
        elif kind == "config":
            apply_config(rec.config)
        elif kind == "run":
            run = rec.run
            info.update(id=run.run_id, name=run.display_name or run.run_id, group=run.run_group)
            info.update(project=run.project, job_type=run.job_type or None, tags=list(run.tags))
            apply_config(run.config)
        elif kind == "exit":
            info["exit_code"] = rec.exit.exit_code
    for tree in (summary, config):
        for key in [k for k in tree if k.startswith("_wandb")]:
            del tree[key]
    history = pd.DataFrame(rows)
    if "_step" in history:
        history = history.sort_values("_step", kind="stable").reset_index(drop=True)
    return {"history": history, "summary": summary, "config": config, "path": str(file), **info}
