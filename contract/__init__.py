"""The run contract: what training writes and analysis reads, defined once (stdlib only).

This is the one module both sides of the house may import: `scaling/` (the experiment side,
torch) writes a run folder through it and `analysis/` (never torch) reads it back. It holds
the run record (`RunSummary`, written as ``summary.json``), its `Status`, the metric columns
of ``metrics.csv``, the FLOP conventions and the W&B modes. Nothing here imports torch,
Lightning, Hydra or pandas, so `import analysis` stays light.

A corrupt or partial ``summary.json`` is met the same way by every reader: `read_summary`
raises `SummaryError` naming the file and the parse error; callers list the run as corrupt.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import netrc
import os
import socket
import tempfile
import textwrap
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

SUMMARY_FORMAT = 2
"""Version of the summary.json layout. 1: the dict literal of the first releases (no
``format`` key); 2: `RunSummary`. Readers accept both."""

# How FLOPs per token are counted; the three conventions of the literature:
#   kaplan      6 * N_non-embedding (Kaplan et al. 2020)
#   6n          6 * (N_non-embedding + output layer)
#   chinchilla  detailed count incl. attention (Hoffmann et al. 2022, App. F)
# Built with the functional API because OmegaConf matches an override against member *names*
# and "6n" is not an identifier: `train.flops_convention=6n` must work as the README says.
FlopConvention = Enum(
    "FlopConvention", {"kaplan": "kaplan", "6n": "6n", "chinchilla": "chinchilla"}, module=__name__
)
CONVENTIONS: tuple[str, ...] = tuple(c.value for c in FlopConvention)


class WandbMode(Enum):
    """How a run (training or analysis) logs to Weights & Biases."""

    auto = "auto"  # online when credentials exist and the host answers, else offline
    online = "online"
    offline = "offline"
    disabled = "disabled"


class Status(str, Enum):
    """The state of one run. Training writes the first four; readers assign the last two."""

    RUNNING = "running"  # started (or killed while training); a relaunch resumes it
    COMPLETED = "completed"  # trained to the end of its budget
    DIVERGED = "diverged"  # loss turned non-finite or exploded; `diverged_step` says when
    FAILED = "failed"  # an error stopped it; `error` says which; a relaunch retries it
    CORRUPT = "corrupt"  # summary.json or metrics.csv could not be parsed (reader side)
    UNFINISHED = "unfinished"  # metrics.csv without summary.json (reader side)

    @property
    def ended(self) -> bool:
        """Whether a relaunch leaves the run as it is (completed or diverged)."""
        return self in (Status.COMPLETED, Status.DIVERGED)


# metrics.csv: one row per logged train step or evaluation, always these columns in this order
# (an empty cell means "not measured on this row"); see docs/formats.md.
METRIC_COLUMNS: tuple[str, ...] = (
    "step",
    "tokens",
    *(f"flops_{c}" for c in CONVENTIONS),
    "train_loss",
    "val_loss",
    "lr",
    "tokens_per_s",
    "mfu",
    "epoch",
    "task_bpb",
    "task_acc",
    "val_bpb",
)

# The W&B history key of each metrics.csv column the training run logs to W&B (Lightning's
# WandbLogger logs the step as "trainer/global_step"); collecting from W&B reads these keys.
WANDB_KEYS: dict[str, str] = {
    "step": "trainer/global_step",
    "tokens": "tokens",
    **{f"flops_{c}": f"flops/{c}" for c in CONVENTIONS},
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "lr": "lr",
    "tokens_per_s": "perf/tokens_per_s",
    "mfu": "perf/mfu",
    "epoch": "epoch",
    "task_bpb": "task/bpb",
    "task_acc": "task/acc",
    "val_bpb": "val/bpb",
}


class SummaryError(ValueError):
    """A summary.json that cannot be read as a `RunSummary` (corrupt, partial, wrong types)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"corrupt run summary {path}: {reason}")


@dataclass
class BudgetRecord:
    """The training budget as the user gave it and as it resolved."""

    kind: str
    """Which budget was given: "tokens", "flops" or "steps"."""
    value: Any
    """The value as given (a number, or a Chinchilla multiple such as "1xC")."""
    label: str
    """The budget part of the run name, e.g. "1xC", "C1e15", "S500"."""
    convention: str
    """The FLOP convention a "flops" budget is counted in (one of CONVENTIONS)."""
    target: float | None = None
    """The FLOPs asked for (flops budgets only); the run's whole steps land within tolerance."""


@dataclass
class RunSummary:
    """One run's record (``summary.json``): what was trained, on what, and how it ended."""

    run: str
    """Run name, "{size}-{budget}", e.g. "1M-1xC"; also the folder name."""
    experiment: str
    """The experiment (run-store subfolder) the run belongs to."""
    sweep: str
    """The sweep that launched it (its W&B group); the experiment for a single run."""
    status: Status
    """How the run stands now (see Status)."""
    size: str
    """The model size's name, e.g. "1M" (nominal; N below is exact)."""
    N: int
    """Non-embedding parameters (Kaplan's N): the N of every fit."""
    N_total: int
    """All parameters, equal to sum(p.numel()) of the model."""
    N_with_head: int
    """Non-embedding parameters plus the output layer (the 6N convention's N)."""
    flops_per_token: dict[str, float]
    """Training FLOPs per token under each convention (keys: CONVENTIONS)."""
    D: int
    """Training tokens of the whole budget (steps x batch_size x seq_len)."""
    steps: int
    """Optimiser steps of the whole budget."""
    batch_size: int
    """Sequences per optimiser step (the global batch)."""
    seq_len: int
    """Tokens per sequence."""
    C: dict[str, float]
    """Training FLOPs of the whole budget under each convention (keys: CONVENTIONS)."""
    budget: BudgetRecord
    """The budget as given and resolved."""
    lr: float
    """Peak learning rate used."""
    seed: int
    """Seed of initialisation and batch order."""
    corpus: str
    """The corpus's name (e.g. "stdlib", "markov", a text corpus's folder)."""
    corpus_hash: str
    """Content hash of the prepared token file ("sha256:...")."""
    vocab_size: int
    """Vocabulary size of the tokenizer."""
    config_hash: str
    """sha256 of the resolved values that differ from the schema defaults, minus the keys that
    only change how a run is watched (docs/formats.md). A relaunch with the same hash skips or
    resumes this run; a different hash is checked against config.yaml: a run stored before a
    setting existed, with that setting now at its default, is the same run."""
    final_train_loss: float | None = None
    """Training loss (nats/token) over the last logging window; null until the run ends."""
    final_val_loss: float | None = None
    """Held-out loss (nats/token) at the end of training: the fitting target."""
    best_val_loss: float | None = None
    """Lowest held-out loss seen at any evaluation."""
    entropy_rate: float | None = None
    """The exact irreducible loss (nats/token) of a synthetic Markov corpus; null otherwise."""
    epochs: float | None = None
    """Fractional epochs of the training split seen at the end (> 1 means repeated data)."""
    unique_tokens: int | None = None
    """Unique training tokens U: the training split's tokens in whole windows of seq_len (the
    tokens a repeated-data run cycles through); null in records written before it was kept."""
    val_tokens_per_byte: float | None = None
    """Validation tokens per UTF-8 byte of validation text (bits per byte = nats per token x
    this / ln 2); null when the corpus has no byte count (Markov sources)."""
    final_val_bpb: float | None = None
    """final_val_loss in bits per byte of validation text (comparable across tokenizers)."""
    best_val_bpb: float | None = None
    """best_val_loss in bits per byte."""
    diverged_step: int | None = None
    """The step at which the loss diverged (status diverged only)."""
    error: str | None = None
    """What stopped a failed or diverged run."""
    wall_time_s: float | None = None
    """Wall time of the last launch, seconds."""
    tokens_per_s: float | None = None
    """Training throughput of the last launch."""
    tags: dict[str, str] = field(default_factory=dict)
    """W&B tags of the run, e.g. {"size": "1M", "budget": "1xC"}."""
    heldout: bool = False
    """Whether analysis should hold this run out of fits (an extrapolation check)."""
    resumed_from_step: int | None = None
    """The checkpoint step the last launch resumed from; null for a fresh start."""
    init_from: str | None = None
    """The checkpoint a branch run was initialised from (WSD cooldowns); null otherwise."""
    parametrization: str = "sp"
    """The model's parametrisation: "sp" (standard) or "mup" (Yang et al. 2022); older
    records without the key are "sp"."""
    base_width: int | None = None
    """muP's base width: the d_model whose tuned learning rate the run transfers; null
    under standard parametrisation."""
    host: str | None = None
    """The host of the last launch."""
    pid: int | None = None
    """The process id of the last launch on that host."""
    format: int = SUMMARY_FORMAT
    """Version of this layout (SUMMARY_FORMAT)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the Status as its value, non-finite floats as null)."""
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        return _finite(d)

    def to_json(self) -> str:
        """The summary.json text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Any, source: Path | str = "<summary>") -> RunSummary:
        """Parse a summary dict; raises SummaryError naming `source` and the problem."""
        if not isinstance(d, dict):
            raise SummaryError(source, f"expected a JSON object, got {type(d).__name__}")
        version = d.get("format", 1)
        if version not in (1, SUMMARY_FORMAT):
            raise SummaryError(source, f"unknown summary format {version!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["format"] = SUMMARY_FORMAT
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise SummaryError(source, f"missing keys {missing}")
        nulls = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name in kwargs
            and kwargs[f.name] is None
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if nulls:
            raise SummaryError(source, f"null values for required keys {nulls}")
        try:
            kwargs["status"] = Status(kwargs["status"])
        except ValueError:
            raise SummaryError(
                source, f"status {kwargs['status']!r} is not one of {[s.value for s in Status]}"
            ) from None
        b = kwargs["budget"]
        if not isinstance(b, dict):
            raise SummaryError(source, "budget is not an object")
        bnames = {f.name for f in dataclasses.fields(BudgetRecord)}
        try:
            kwargs["budget"] = BudgetRecord(**{k: v for k, v in b.items() if k in bnames})
        except TypeError as e:
            raise SummaryError(source, f"budget: {e}") from None
        for name, kind in _NUMERIC.items():
            v = kwargs.get(name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SummaryError(source, f"{name}={v!r} is not a number")
            if kind is int:
                if isinstance(v, float) and not v.is_integer():
                    raise SummaryError(source, f"{name}={v!r} is not a whole number")
                kwargs[name] = int(v)
            else:
                kwargs[name] = float(v)
        for name in ("C", "flops_per_token"):
            v = kwargs[name]
            if not isinstance(v, dict) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values()
            ):
                raise SummaryError(source, f"{name} is not an object of numbers")
        return cls(**kwargs)


_NUMERIC: dict[str, type] = {
    "N": int,
    "N_total": int,
    "N_with_head": int,
    "D": int,
    "steps": int,
    "batch_size": int,
    "seq_len": int,
    "lr": float,
    "seed": int,
    "vocab_size": int,
    "final_train_loss": float,
    "final_val_loss": float,
    "best_val_loss": float,
    "entropy_rate": float,
    "epochs": float,
    "unique_tokens": int,
    "val_tokens_per_byte": float,
    "final_val_bpb": float,
    "best_val_bpb": float,
    "diverged_step": int,
    "wall_time_s": float,
    "tokens_per_s": float,
    "resumed_from_step": int,
    "base_width": int,
    "pid": int,
}


def _finite(o: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, Enum):
        return o.value
    return o


def read_summary(path: Path | str) -> RunSummary | None:
    """The run record at `path` (a summary.json), None if absent; SummaryError if unreadable."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise SummaryError(path, f"{type(e).__name__}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SummaryError(path, f"{e}") from None
    return RunSummary.from_dict(data, source=path)


def write_summary(path: Path | str, summary: RunSummary) -> None:
    """Replace summary.json atomically (a reader or a killed writer never sees half a file)."""
    atomic_write_text(Path(path), summary.to_json())


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a synced temporary file and os.replace (atomic on POSIX)."""
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


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string under each field), by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


# ---- W&B mode, resolved without waiting on the network (training and analysis runs) ----


def _wandb_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def wandb_reachable(timeout: float = 2.0) -> bool:
    """Whether the W&B host accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection(_wandb_host(), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_has_credentials() -> bool:
    """Whether a W&B API key is configured (WANDB_API_KEY or a netrc entry); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = _wandb_host()[0]
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str | WandbMode = WandbMode.auto) -> str:
    """online/offline/disabled. `auto` honours WANDB_MODE, else goes online only with
    credentials and a host that answers within 2 s, so a machine without a login or without
    a network logs offline (to `wandb sync` later) and never waits."""
    try:
        mode = WandbMode(mode.value if isinstance(mode, WandbMode) else mode)
    except ValueError:
        raise ValueError(
            f"W&B mode {mode!r} is not one of {[m.value for m in WandbMode]}"
        ) from None
    if mode is not WandbMode.auto:
        return mode.value
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if wandb_has_credentials() and wandb_reachable() else "offline"
