"""The records of a sweep: a grid point before planning, a planned run, a drop, the plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from contract import Status, SummaryError, read_summary
from scaling.config import SweepSpec

NEW = "new"  # the status of a planned run whose folder holds no record yet


def num(x: float) -> str:
    """A number as a Hydra override value that reads back as the same float."""
    return repr(float(x))


def as_overrides(d: dict[str, str]) -> list[str]:
    """{"model": "10k"} -> ["model=10k"]."""
    return [f"{k}={v}" for k, v in d.items()]


@dataclass
class Candidate:
    """One run before planning: the overrides that make it and its launch stage."""

    overrides: dict[str, str]
    group: str  # what it shares with its row of the grid, e.g. "C=1e13" (for error messages)
    stage: int = 0  # wsd: 0 stable runs, 1 cooldown branches
    suffix: str = ""  # appended to the run name (lr sweeps: "-lr0.003")
    init_from: Path | None = None  # wsd branches: the stable run's checkpoint they start from
    start_step: int | None = None  # ... and that checkpoint's step

    @property
    def label(self) -> str:
        """The overrides as one line (how an unplanned grid point is named)."""
        return " ".join(as_overrides(self.overrides))


class Drop(NamedTuple):
    """A grid point the plan leaves out, and why."""

    run: str
    reason: str


@dataclass
class RunState:
    """What the run store holds for one run folder."""

    status: str  # NEW, a Status value, or Status.CORRUPT for an unreadable summary.json
    config_hash: str | None = None
    error: str | None = None  # a failed run's error, or a corrupt summary's path and parse error
    final_val_loss: float | None = None


def read_state(root: Path) -> RunState:
    """The run folder's record as the sweep needs it; a corrupt summary.json is a state too."""
    try:
        s = read_summary(root / "summary.json")
    except SummaryError as e:
        return RunState(Status.CORRUPT.value, error=str(e))
    if s is None:
        return RunState(NEW)
    return RunState(s.status.value, s.config_hash, s.error, s.final_val_loss)


def ended(status: str) -> bool:
    """Whether a relaunch leaves a run with this status as it is (completed or diverged)."""
    return status in (Status.COMPLETED.value, Status.DIVERGED.value)


@dataclass
class PlannedRun:
    """One run of the sweep, fully resolved by `plan_run`."""

    name: str
    overrides: list[str]  # the run's own overrides (on top of the command line's)
    stage: int
    group: str
    size: str
    N: int
    D: int
    C: float  # under the budget's FLOP convention
    steps: int
    tokens_per_step: int
    eval_tokens: int
    lr: float
    fpt: float  # FLOPs per token under the convention
    root: Path  # the run folder
    state: RunState  # what the run store held when the sweep was planned
    config_hash: str
    init_from: Path | None = None  # wsd branches: the checkpoint they start from
    start_step: int | None = None  # ... and its step
    est_s: float | None = None  # estimated wall time
    note: str = ""
    held_by: str | None = None  # the launch skipped it: another process ("host h pid p") held it

    @property
    def status(self) -> str:
        """new | running | completed | diverged | failed | corrupt (at planning time)."""
        return self.state.status

    @property
    def launchable(self) -> bool:
        """Whether a launch trains it: not ended, and its record (if any) is readable."""
        return not ended(self.status) and self.status != Status.CORRUPT.value


@dataclass
class SweepPlan:
    """What a launch would run, what it drops and why, and how long it should take."""

    spec: SweepSpec
    runs: list[PlannedRun]
    dropped: list[Drop]
    convention: str
    parallel: int
    launcher: str
    threads: int | None
    process_per_run: bool = False  # the launcher starts a fresh process (imports) for every run
    warnings: list[str] = field(default_factory=list)
    makespan_s: float | None = None
    saving: dict[str, float] | None = None  # wsd: FLOPs against training every D from scratch
    shapes: dict[str, tuple[Any, int, int]] = field(default_factory=dict)  # size -> (model, B, T)

    @property
    def to_launch(self) -> list[PlannedRun]:
        """The runs a launch trains (not ended, not corrupt)."""
        return [r for r in self.runs if r.launchable]

    @property
    def corrupt(self) -> list[PlannedRun]:
        """Runs whose summary.json cannot be read: listed, never launched."""
        return [r for r in self.runs if r.status == Status.CORRUPT.value]
