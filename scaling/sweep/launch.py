"""Launch a planned sweep stage by stage; what is already done is skipped, not retrained."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

from contract import Status
from scaling.config import ConfigError
from scaling.progress import write_progress
from scaling.sweep.estimate import estimate
from scaling.sweep.launchers import thread_overrides
from scaling.sweep.plan import plan_sweep
from scaling.sweep.report import format_outcome, format_plan
from scaling.sweep.runs import PlannedRun, SweepPlan, read_state
from scaling.sweep.spec import parse_spec
from scaling.train import Outcome, TrainResult

Launch = Callable[[list[list[str]], int], Any]  # (overrides per job, first job index)


def run_sweep(
    spec_node: Any,
    base: DictConfig,
    arguments: Sequence[str],
    compose: Callable[[list[str]], DictConfig],
    launch: Launch,
    sizes_known: Sequence[str],
    launcher_cfg: DictConfig,
) -> SweepPlan:
    """Plan the sweep; unless sweep.plan, launch what is not done yet (stage by stage)."""
    parsed = OverridesParser.create().parse_overrides(list(arguments))
    swept = [o.input_line for o in parsed if o.is_sweep_override()]
    if swept:
        raise ConfigError(
            f"{swept}: a sweep file sets the grid; give lists as sweep.<key>=[a,b], not a,b"
        )
    spec = parse_spec(spec_node)
    t0 = time.perf_counter()
    sp = plan_sweep(spec, lambda ov: compose([*arguments, *ov]), sizes_known, launcher_cfg, base)
    estimate(sp, str(base.trainer.accelerator))
    print(format_plan(sp), flush=True)
    if spec.plan:
        return sp
    common = [*arguments, *thread_overrides(launcher_cfg, sp.threads, base)]
    write_progress(spec.name, [r.root for r in sp.runs])
    idx, stopped = 0, []
    for stage in sorted({r.stage for r in sp.runs}):
        batch = [r for r in sp.to_launch if r.stage == stage and _ready(r)]
        if not batch:
            continue
        try:
            returns = launch([[*common, *r.overrides] for r in batch], idx)
            for r, jr in zip(batch, returns or []):
                r.held_by = _held_by(jr)
        except Exception as e:  # a worker died hard (os._exit, OOM kill, a lost SLURM job)
            first = (str(e).strip().splitlines() or [""])[0][:200]
            why = f"the launcher stopped: {type(e).__name__}" + (f": {first}" if first else "")
            for r in batch:  # what finished is kept; the rest resume on a relaunch
                if read_state(r.root).status not in _RECORDED_END:
                    r.note = r.note or why
            stopped.append(f"{why}; relaunch the same command to resume the unfinished runs")
        idx += len(batch)
    print(format_outcome(sp, time.perf_counter() - t0), flush=True)
    for w in stopped:
        print(f"warning: {w}", flush=True)
    sp.warnings += stopped
    return sp


def _held_by(jr: Any) -> str | None:
    """Who held the run when its job ran (it skipped the run); None if the job trained it."""
    if not isinstance(jr, JobReturn) or jr.status is not JobStatus.COMPLETED:
        return None
    result: TrainResult | Any = jr.return_value
    # compared by value: under `python -m scaling.train` the job's TrainResult is __main__'s
    # class, a second copy of this module's
    if getattr(result, "outcome", None) == Outcome.LOCKED.value:
        return getattr(result, "holder", None) or "another process"
    return None


# statuses a job records when it ends (a killed one stays "running")
_RECORDED_END = (Status.COMPLETED.value, Status.DIVERGED.value, Status.FAILED.value)


def _ready(r: PlannedRun) -> bool:
    """A branch run launches only once the run it starts from completed (else a note says so)."""
    if r.init_from is None:
        return True
    parent = r.init_from.parent.parent  # <run>/checkpoints/step<k>.ckpt
    if r.init_from.exists() and read_state(parent).status == Status.COMPLETED.value:
        return True
    r.note = f"not launched: its stable run {parent.name} did not complete"
    return False
