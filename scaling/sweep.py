"""Sweeps: expand a file in sweeps/ into runs, plan and validate them all, launch, report.

A sweep file sets `sweep.kind` and its grid (see sweeps/*.yaml); the Hydra sweeper plugin in
hydra_plugins/scaling_sweeper hands the composed config here. Every run is composed and
planned with `plan_run` (the trainer's own arithmetic) before the first one launches, so what
the plan prints is exactly what a launch runs, and a bad grid fails before any training.

    scaling-train -m +sweep=isoflop sweep.plan=true         # print the runs, launch nothing
    scaling-train -m +sweep=isoflop hydra/launcher=joblib   # run them, 2 at a time here
    python -m scaling.sweep best-lr runs/lr                 # lr sweep -> conf/optim/tuned.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from scaling.budget import BudgetTooSmall, fmt_num
from scaling.config import SWEEPS_DIR, ConfigError

KINDS = ("isoflop", "size_ladder", "data_ladder", "wsd", "lr")
FINAL = ("completed", "diverged")  # statuses a relaunch does not train again
ENDED = (*FINAL, "failed")  # statuses a job records when it ends (a killed one stays "running")
LOCAL = ("joblib", "submitit_local")  # launchers whose jobs share this machine's cores
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SweepSpec:
    """The `sweep:` node of a sweep file: what to vary and which runs to keep."""

    name: str = "sweep"  # W&B group and runs/<name>/ (the sweep files set experiment=name)
    kind: str = "isoflop"  # isoflop | size_ladder | data_ladder | wsd | lr
    plan: bool = False  # print the runs, total FLOPs and estimated wall time; launch nothing
    sizes: list[str] = field(default_factory=list)  # model sizes (conf/model/<size>.yaml)
    budgets: list[float] = field(default_factory=list)  # isoflop: compute budgets C
    multiples: list[float] = field(default_factory=list)  # size_ladder: tokens = k x C
    tokens: list[Any] = field(default_factory=list)  # data_ladder, wsd: counts or "<k>xC"
    lrs: list[float] = field(default_factory=list)  # lr: peak LRs tried at every size
    min_steps: int = 1  # runs with fewer optimiser steps are dropped (and listed)
    tokens_per_param: Optional[list[Optional[float]]] = None  # [lo, hi] window of D/N; null: any
    # isoflop: whole optimiser steps round D = C / flops_per_token; a run whose FLOPs then miss
    # its budget C by more than this fraction is dropped (and listed), so every IsoFLOP point
    # sits on its budget
    flops_tolerance: float = 0.01
    # wall-time estimate: measured model throughput plus these overheads (fit on a 2-core CPU)
    overhead_s: float = 2.5  # per run: Trainer, W&B, checkpoints
    step_overhead_s: float = 1e-3  # per optimiser step: Lightning's loop, callbacks, logging
    startup_s: float = 10.0  # per worker process: importing Lightning

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"sweep.kind={self.kind!r} is unknown; valid: {list(KINDS)}")
        need = {
            "isoflop": ("sizes", "budgets"),
            "size_ladder": ("sizes", "multiples"),
            "data_ladder": ("sizes", "tokens"),
            "wsd": ("sizes", "tokens"),
            "lr": ("sizes", "lrs"),
        }[self.kind]
        for key in need:
            if not getattr(self, key):
                raise ConfigError(
                    f"sweep.{key} is empty: sweep.kind={self.kind} needs at least one value "
                    f"(e.g. sweep.{key}=[...])"
                )
        for key in ("budgets", "multiples", "lrs"):
            bad = [v for v in getattr(self, key) if not (math.isfinite(v) and v > 0)]
            if bad:
                raise ConfigError(f"sweep.{key} must be positive numbers; got {bad}")
        if self.min_steps < 1:
            raise ConfigError(f"sweep.min_steps={self.min_steps} must be >= 1")
        if not (0 < self.flops_tolerance < 1):
            raise ConfigError(
                f"sweep.flops_tolerance={self.flops_tolerance} must be a fraction in (0, 1)"
            )
        w = self.tokens_per_param
        if w is not None and len(w) != 2:
            raise ConfigError(f"sweep.tokens_per_param={w} must be [lo, hi] (null for open)")


@dataclass
class Candidate:
    """One run before planning: the overrides that make it and its launch stage."""

    overrides: dict[str, str]
    group: str  # what it shares with its row of the grid, e.g. "C=1e13" (for error messages)
    stage: int = 0  # wsd: 0 stable runs, 1 cooldown branches
    suffix: str = ""  # appended to the run name (lr sweeps: "-lr0.003")


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
    status: str  # new | completed | diverged | failed | running (from the run store)
    config_hash: str
    est_s: float | None = None  # estimated wall time
    note: str = ""


@dataclass
class SweepPlan:
    """What a launch would run, what it drops and why, and how long it should take."""

    spec: SweepSpec
    runs: list[PlannedRun]
    dropped: list[tuple[str, str]]  # (run, reason)
    convention: str
    parallel: int
    launcher: str
    threads: int | None
    warnings: list[str] = field(default_factory=list)
    makespan_s: float | None = None
    wsd_saving: dict[str, float] | None = None
    shapes: dict[str, tuple[Any, int, int]] = field(default_factory=dict)  # size -> (model, B, T)

    @property
    def to_launch(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.status not in FINAL]


def parse_spec(node: Any) -> SweepSpec:
    """Check the `sweep:` node against SweepSpec (unknown keys and bad values are errors)."""
    if node is None:
        raise ConfigError("no sweep selected: add +sweep=<name>; available: " + ", ".join(names()))
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = [str(k) for k in node if k not in known] if isinstance(node, DictConfig) else []
    if unknown:  # `+sweep.<key>=` adds keys past the schema: name them
        raise ConfigError(f"sweep: unknown key(s) {unknown}; valid: {sorted(known)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SweepSpec), node)
        spec = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except Exception as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"sweep: {e}".splitlines()[0]) from None
    assert isinstance(spec, SweepSpec)
    return spec


def names() -> list[str]:
    """The sweeps declared in sweeps/*.yaml."""
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def _num(x: float) -> str:
    """A number as a Hydra override value that reads back as the same float."""
    return repr(float(x))


def expand(spec: SweepSpec) -> list[Candidate]:
    """The grid of a sweep, before planning."""
    out: list[Candidate] = []
    if spec.kind == "isoflop":  # budget-major: one IsoFLOP profile after another
        for c in spec.budgets:
            out += [
                Candidate({"model": s, "train.flops": _num(c)}, f"C={fmt_num(c)}")
                for s in spec.sizes
            ]
        return out
    for size in spec.sizes:
        m = {"model": size}
        if spec.kind == "size_ladder":
            out += [
                Candidate({**m, "train.tokens": f"{fmt_num(k)}xC"}, f"{fmt_num(k)}xC")
                for k in spec.multiples
            ]
        elif spec.kind in ("data_ladder", "wsd"):
            out += [Candidate({**m, "train.tokens": str(t)}, size) for t in spec.tokens]
        else:  # lr: the budget comes from the sweep file (train.tokens etc.)
            out += [
                Candidate(
                    {**m, "optim.lr": _num(lr), "optim.lr_table": "{}"},
                    size,
                    suffix=f"-lr{fmt_num(lr)}",
                )
                for lr in spec.lrs
            ]
    return out


def _overrides(d: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in d.items()]


class Planner:
    """Composes and plans each run as the launcher would, collecting errors and drops."""

    def __init__(self, compose: Callable[[list[str]], DictConfig], spec: SweepSpec) -> None:
        self.compose, self.spec = compose, spec
        self.errors: list[str] = []
        self.dropped: list[tuple[str, str]] = []

    def task_cfg(self, overrides: list[str]) -> DictConfig:
        """The run's config as its job sees it (the composed config minus `hydra`)."""
        cfg = self.compose(overrides)
        with read_write(cfg), open_dict(cfg):
            cfg.pop("hydra", None)
        return cfg

    def plan(self, cand: Candidate) -> Any:
        """plan_run of one candidate; None (and an error or a drop recorded) if it fails."""
        from scaling.data import DataError
        from scaling.train import plan_run

        ov = _overrides(cand.overrides)
        label = " ".join(ov)
        try:
            plan = plan_run(self.task_cfg(ov))
        except BudgetTooSmall as e:  # only a budget below one batch is dropped, not a typo
            self.dropped.append((label, f"{e}".split(";")[0]))
            return None
        except (ConfigError, DataError) as e:
            self.errors.append(f"{label}: {e}")
            return None
        except Exception as e:  # composition: an unknown size, a typo in an override
            self.errors.append(f"{label}: {str(e).splitlines()[0]}")
            return None
        return plan

    def keep(self, plan: Any, suffix: str = "") -> bool:
        """Apply the min_steps and tokens-per-parameter filters; record a drop."""
        b, n = plan.budget, plan.counts.non_embedding
        reason = None
        if b.steps < self.spec.min_steps:
            reason = f"{b.steps} steps < sweep.min_steps={self.spec.min_steps}"
        elif (
            self.spec.kind == "isoflop"
            and b.kind == "flops"
            and (abs(miss := b.flops[b.convention] / b.target - 1) > self.spec.flops_tolerance)
        ):
            reason = (
                f"{b.steps} whole steps give C={b.flops[b.convention]:.4g}, {miss:+.1%} off the "
                f"budget (sweep.flops_tolerance={self.spec.flops_tolerance:g}); "
                "lower train.batch_size for finer steps or raise sweep.flops_tolerance"
            )
        elif self.spec.tokens_per_param is not None:
            lo, hi = self.spec.tokens_per_param
            tpp = b.tokens / n
            if (lo is not None and tpp < lo) or (hi is not None and tpp > hi):
                reason = f"D/N={tpp:.3g} outside sweep.tokens_per_param=[{lo}, {hi}]"
        if reason:
            self.dropped.append((plan.run_name + suffix, reason))
        return reason is None


def _planned(cand: Candidate, plan: Any) -> tuple[PlannedRun, dict[str, Any] | None]:
    b, conf = plan.budget, plan.conf
    prev = plan.store.read_summary()
    status = "new" if prev is None else str(prev.get("status"))
    n_eval_rows = min(conf.train.n_evals, b.steps) + 1  # ~ module.eval_steps, for estimates
    return PlannedRun(
        name=plan.run_name,
        overrides=_overrides(cand.overrides),
        stage=cand.stage,
        group=cand.group,
        size=conf.model.name,
        N=plan.counts.non_embedding,
        D=b.tokens,
        C=b.flops[b.convention],
        steps=b.steps,
        tokens_per_step=conf.train.batch_size * conf.model.seq_len,
        eval_tokens=n_eval_rows * conf.train.eval_tokens,
        lr=plan.lr,
        fpt=plan.fpt[b.convention],
        root=plan.store.root,
        status=status,
        config_hash=plan.config_hash,
    ), prev


def plan_sweep(
    spec: SweepSpec,
    compose: Callable[[list[str]], DictConfig],
    sizes_known: Sequence[str],
    launcher_cfg: DictConfig,
    base: DictConfig,
    extra: Sequence[str] = (),
) -> SweepPlan:
    """Plan every run of the sweep; raise ConfigError listing every problem before a launch."""
    unknown = [s for s in spec.sizes if s not in sizes_known]
    if unknown:
        raise ConfigError(
            f"sweep.sizes: unknown size(s) {unknown}; valid: {', '.join(sizes_known)}"
        )
    launcher, parallel, threads = launcher_parallelism(launcher_cfg, base)
    extra = [*extra, *thread_overrides(launcher, threads, base)]

    def comp(ov: list[str]) -> DictConfig:
        return compose([*extra, *ov])

    planner = Planner(comp, spec)
    cands = expand(spec)
    plans: list[tuple[Candidate, Any]] = []
    for c in cands:
        p = planner.plan(c)
        if p is not None and planner.keep(p, c.suffix):
            plans.append((c, p))
    _check_groups(spec, cands, plans, planner)
    if spec.kind == "wsd":
        plans = _wsd(plans, planner)
    elif spec.kind == "lr":  # "{size}-{budget}-lr{lr}": one folder per grid point
        named = [
            dataclasses.replace(c, overrides={**c.overrides, "run_name": p.run_name + c.suffix})
            for c, p in plans
        ]
        plans = [(c, p) for c in named if (p := planner.plan(c)) is not None]
    if planner.errors:
        raise ConfigError(
            f"{len(planner.errors)} run(s) of sweep {spec.name!r} cannot be planned "
            "(nothing was launched):\n  " + "\n  ".join(planner.errors)
        )
    runs: list[PlannedRun] = []
    warnings: list[str] = []
    seen: dict[Path, str] = {}
    shapes = {}
    for c, p in plans:
        shapes.setdefault(
            p.conf.model.name, (p.conf.model, p.conf.train.batch_size, p.conf.model.seq_len)
        )
        run, prev = _planned(c, p)
        if run.root in seen:
            raise ConfigError(
                f"runs {seen[run.root]!r} and {' '.join(run.overrides)!r} both write {run.root}; "
                "make the grid's runs distinct"
            )
        seen[run.root] = " ".join(run.overrides)
        if (
            prev is not None
            and prev.get("config_hash") != run.config_hash
            and prev.get("status") != "failed"  # a failed one is moved aside and retried
        ):
            planner.errors.append(
                f"{run.root} already holds a run ({prev.get('status')}) with a different config; "
                "choose another sweep.name= (experiment) or move that folder aside"
            )
        runs.append(run)
    if planner.errors:
        raise ConfigError(
            f"sweep {spec.name!r} would overwrite other runs (nothing was launched):\n  "
            + "\n  ".join(planner.errors)
        )
    if not runs:
        raise ConfigError(
            f"sweep {spec.name!r} has no runs left after the filters (empty grid); dropped:\n  "
            + "\n  ".join(f"{n}: {r}" for n, r in planner.dropped)
        )
    if spec.kind == "isoflop":
        for g in dict.fromkeys(r.group for r in runs):
            k = sum(r.group == g for r in runs)
            if k < 3:
                warnings.append(f"{g} keeps {k} size(s); an IsoFLOP parabola needs >= 3")
    conv = plans[0][1].budget.convention
    sp = SweepPlan(spec, runs, planner.dropped, conv, parallel, launcher, threads, warnings)
    sp.shapes = shapes
    if spec.kind == "wsd":
        sp.wsd_saving = wsd_saving(runs)
    return sp


def _check_groups(
    spec: SweepSpec, cands: list[Candidate], plans: list[tuple[Candidate, Any]], planner: Planner
) -> None:
    """A grid row (e.g. one budget) whose every run is below one batch is an error."""
    kept = {c.group for c, _ in plans}
    for g in dict.fromkeys(c.group for c in cands):
        if g in kept:
            continue
        rows = [" ".join(_overrides(c.overrides)) for c in cands if c.group == g]
        reasons = [r for n, r in planner.dropped if n in rows]
        if (
            reasons
            and len(reasons) == len(rows)
            and all("less than one batch" in r for r in reasons)
        ):
            planner.errors.append(
                f"{g} is smaller than one batch of every size in sweep.sizes "
                f"(the smallest, {spec.sizes[0]}: {reasons[0]}); raise it or lower train.batch_size"
            )


def _wsd(plans: list[tuple[Candidate, Any]], planner: Planner) -> list[tuple[Candidate, Any]]:
    """Per size: the longest run is the stable run; the others branch off its checkpoints."""
    out: list[tuple[Candidate, Any]] = []
    by_size: dict[str, list[tuple[Candidate, Any]]] = {}
    for c, p in plans:
        by_size.setdefault(p.conf.model.name, []).append((c, p))
    for rows in by_size.values():
        rows.sort(key=lambda cp: cp[1].budget.steps)
        stable_c, stable_p = rows[-1]
        total = stable_p.budget.steps
        frac = stable_p.conf.schedule.cooldown_frac
        starts = {}
        for c, p in rows[:-1]:
            s = p.budget.steps
            starts[id(c)] = s - max(1, round(frac * s))
        ckpts = sorted(set(starts.values()))
        common = {"schedule.wsd_total_steps": str(total)}
        sc = dataclasses.replace(
            stable_c,
            overrides={
                **stable_c.overrides,
                **common,
                "train.checkpoint_steps": "[" + ",".join(map(str, ckpts)) + "]",
            },
        )
        p = planner.plan(sc)
        if p is None:
            continue
        out.append((sc, p))
        for c, _ in rows[:-1]:
            ckpt = stable_p.store.ckpt_dir / f"step{starts[id(c)]}.ckpt"
            bc = dataclasses.replace(
                c,
                stage=1,
                overrides={**c.overrides, **common, "train.init_from": f"'{ckpt}'"},
            )
            bp = planner.plan(bc)
            if bp is not None:
                out.append((bc, bp))
    return out


def wsd_saving(runs: list[PlannedRun]) -> dict[str, float]:
    """FLOPs of the WSD sweep against training every branch's D from scratch."""
    scratch = sum(r.C for r in runs)
    wsd = 0.0
    for r in runs:
        if r.stage == 0:
            wsd += r.C
        else:
            start = int(Path(_init_from(r)).stem.removeprefix("step"))
            wsd += (r.steps - start) * r.tokens_per_step * r.fpt
    return {"scratch": scratch, "wsd": wsd, "saved_frac": 1 - wsd / scratch}


def _init_from(r: PlannedRun) -> str:
    v = next(o for o in r.overrides if o.startswith("train.init_from="))
    return v.split("=", 1)[1].strip("'")


def launcher_parallelism(launcher_cfg: DictConfig, base: DictConfig) -> tuple[str, int, int | None]:
    """(launcher name, runs at a time, torch threads per run) of the configured launcher."""
    target = str(launcher_cfg.get("_target_", ""))
    cores = os.cpu_count() or 1
    threads = base.trainer.num_threads
    if "Joblib" in target:
        n = int(launcher_cfg.get("n_jobs", -1))
        n = cores if n == -1 else (cores + 1 + n if n < 0 else n)
        n = max(1, n)
        return "joblib", n, threads or max(1, cores // n)
    if "Slurm" in target:  # the cluster's nodes, not this machine, run the jobs
        cpus = launcher_cfg.get("cpus_per_task")
        return "submitit_slurm", int(launcher_cfg.get("array_parallelism", 256)), threads or cpus
    if "Submitit" in target or "Local" in target:
        # submitit_local starts every job at once on this machine: more than one per core only
        # oversubscribes it, so the estimate counts at most `cores` at a time and each job gets
        # cores / jobs torch threads
        n = max(1, min(int(launcher_cfg.get("array_parallelism", 256)), cores))
        cpus = launcher_cfg.get("cpus_per_task")
        return "submitit_local", n, threads or cpus or max(1, cores // n)
    return "basic", 1, threads


def thread_overrides(launcher: str, threads: int | None, base: DictConfig) -> list[str]:
    """Jobs sharing this machine get cores / jobs torch threads unless the user set them."""
    if threads and base.trainer.num_threads is None and launcher in LOCAL:
        return [f"trainer.num_threads={threads}"]
    return []


def measure_tokens_per_s(model_cfg: Any, batch: int, seq_len: int, threads: int | None) -> float:
    """Training tokens/s of one model on this machine's CPU, timed over ~1 s of AdamW steps."""
    import torch

    from scaling.model import GPT

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = GPT(model_cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(0, model_cfg.vocab_size, (batch, seq_len))

        def step() -> None:
            _, loss = model(x, x)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < 1.0:
            step()
            n += 1
        return n * batch * seq_len / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


def estimate(sp: SweepPlan, accelerator: str) -> None:
    """Fill each run's est_s and the sweep's makespan from measured throughputs (CPU only)."""
    if accelerator != "cpu":
        sp.warnings.append(
            f"no wall-time estimate: trainer.accelerator={accelerator} is not timed here"
        )
        return
    rate: dict[str, float] = {}
    for size, (model_cfg, batch, seq_len) in sp.shapes.items():
        rate[size] = measure_tokens_per_s(model_cfg, batch, seq_len, sp.threads)
    for r in sp.runs:
        # an evaluation is a forward pass: ~1/3 of a training step's FLOPs
        r.est_s = (
            (r.D + r.eval_tokens / 3) / rate[r.size]
            + r.steps * sp.spec.step_overhead_s
            + sp.spec.overhead_s
        )
    todo = sp.to_launch
    total = 0.0
    for stage in sorted({r.stage for r in todo}):
        slots = [0.0] * min(sp.parallel, max(1, sum(r.stage == stage for r in todo)))
        for r in (r for r in todo if r.stage == stage):
            i = slots.index(min(slots))
            slots[i] += r.est_s or 0.0
        total += max(slots)
    # start-up (imports) is paid once per worker process, or once per run under submitit
    starts = len(todo) / max(1, sp.parallel) if sp.launcher.startswith("submitit") else 1
    sp.makespan_s = total + sp.spec.startup_s * starts if todo else 0.0


def fmt_time(s: float | None) -> str:
    """Seconds as '45s', '12m', '3.2h'."""
    if s is None:
        return "?"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def format_plan(sp: SweepPlan) -> str:
    """The plan as a table: every run, what is dropped, total FLOPs, estimated wall time."""
    spec = sp.spec
    lines = [
        f"sweep {spec.name} ({spec.kind}): {len(sp.runs)} runs, {len(sp.to_launch)} to launch, "
        f"{len(sp.dropped)} dropped; launcher {sp.launcher} x{sp.parallel}"
        + (f", {sp.threads} thread(s)/run" if sp.threads else ""),
        f"{'run':<28} {'stage':>5} {'N':>11} {'D':>11} {f'C ({sp.convention})':>16} "
        f"{'steps':>7} {'D/N':>7} {'lr':>8} {'est':>6}  status",
    ]
    for r in sp.runs:
        lines.append(
            f"{r.name:<28} {r.stage:>5} {r.N:>11,} {r.D:>11,} {r.C:>16.4g} {r.steps:>7} "
            f"{r.D / r.N:>7.3g} {r.lr:>8.3g} {fmt_time(r.est_s):>6}  {r.status}"
        )
    if sp.dropped:
        lines.append(f"dropped ({len(sp.dropped)}):")
        lines += [f"  {n}: {why}" for n, why in sp.dropped]
    todo = sp.to_launch
    c_all = sum(r.C for r in sp.runs)
    c_todo = sum(r.C for r in todo) if todo else 0.0
    lines.append(
        f"total: {c_all:.4g} FLOPs ({sp.convention}) over {len(sp.runs)} runs; to launch: "
        f"{c_todo:.4g} FLOPs in {len(todo)} runs, estimated wall time {fmt_time(sp.makespan_s)}"
    )
    if sp.wsd_saving:
        w = sp.wsd_saving
        lines.append(
            f"wsd: {w['wsd']:.4g} FLOPs for the whole L(N, D) grid vs {w['scratch']:.4g} from "
            f"scratch: {100 * w['saved_frac']:.0f}% saved"
        )
    lines += [f"warning: {w}" for w in sp.warnings]
    return "\n".join(lines)


def outcome(sp: SweepPlan) -> tuple[list[tuple[PlannedRun, str, str]], dict[str, int]]:
    """Each run's outcome after a launch: (run, completed|diverged|failed|skipped, detail)."""
    rows = []
    counts = dict.fromkeys(("completed", "diverged", "failed", "skipped"), 0)
    for r in sp.runs:
        if r.status in FINAL:
            st, detail = "skipped", f"already {r.status}"
        else:
            s = _read(r.root)
            st = (s or {}).get("status", "failed")
            if st not in ENDED:
                st = "failed"
            detail = r.note or (s or {}).get("error") or ("no record" if s is None else "")
            if st == "completed":
                v = s.get("final_val_loss") if s else None
                detail = f"val_loss {v:.4f}" if v is not None else ""
        counts[st] += 1
        rows.append((r, st, detail or ""))
    return rows, counts


def _read(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def format_outcome(sp: SweepPlan, wall_s: float) -> str:
    """The end-of-sweep table: completed / diverged / failed / skipped."""
    rows, counts = outcome(sp)
    lines = [f"sweep {sp.spec.name}: results", f"{'run':<28} {'status':<10} detail"]
    lines += [f"{r.name:<28} {st:<10} {detail}" for r, st, detail in rows]
    lines.append(
        " / ".join(f"{k} {v}" for k, v in counts.items())
        + f" ({len(sp.dropped)} dropped by the plan); wall time {fmt_time(wall_s)}"
    )
    if sp.wsd_saving:
        lines.append(
            f"wsd: {100 * sp.wsd_saving['saved_frac']:.0f}% of the from-scratch FLOPs saved"
        )
    return "\n".join(lines)


def run_sweep(
    spec_node: Any,
    base: DictConfig,
    arguments: Sequence[str],
    compose: Callable[[list[str]], DictConfig],
    launch: Callable[[list[list[str]], int], Any],
    sizes_known: Sequence[str],
    launcher_cfg: DictConfig,
) -> SweepPlan:
    """Plan the sweep; unless sweep.plan, launch what is not done yet (stage by stage)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

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
    threads = thread_overrides(sp.launcher, sp.threads, base)
    write_progress(sp)
    idx, stopped = 0, []
    for stage in sorted({r.stage for r in sp.runs}):
        batch = []
        for r in sp.runs:
            if r.stage != stage or r.status in FINAL:
                continue
            if stage > 0:
                src = Path(_init_from(r))
                parent = _read(src.parent.parent)
                if not src.exists() or (parent or {}).get("status") != "completed":
                    r.note = (
                        f"not launched: its stable run {src.parent.parent.name} did not complete"
                    )
                    continue
            batch.append(r)
        if not batch:
            continue
        try:
            launch([[*arguments, *threads, *r.overrides] for r in batch], idx)
        except Exception as e:  # a worker died hard (os._exit, OOM kill, a lost SLURM job)
            first = (str(e).strip().splitlines() or [""])[0][:200]
            why = f"the launcher stopped: {type(e).__name__}" + (f": {first}" if first else "")
            for r in batch:  # what finished is kept; the rest resume on a relaunch
                if (_read(r.root) or {}).get("status") not in ENDED:
                    r.note = r.note or why
            stopped.append(f"{why}; relaunch the same command to resume the unfinished runs")
        idx += len(batch)
    print(format_outcome(sp, time.perf_counter() - t0), flush=True)
    for w in stopped:
        print(f"warning: {w}", flush=True)
    sp.warnings += stopped
    return sp


PROGRESS_FILE = ".sweep_progress.json"


def write_progress(sp: SweepPlan) -> None:
    """Record the sweep's runs beside them, so each finishing job can say "k/n runs done"."""
    by_dir: dict[Path, list[str]] = {}
    for r in sp.runs:
        by_dir.setdefault(r.root.parent, []).append(r.root.name)
    for folder, names in by_dir.items():
        folder.mkdir(parents=True, exist_ok=True)
        data = {"sweep": sp.spec.name, "runs": names, "started": time.time()}
        (folder / PROGRESS_FILE).write_text(json.dumps(data))


def progress_line(run_root: Path) -> str | None:
    """'[sweep demo] 5/12 runs done, 1m20s elapsed, ~2m left' for a run of a launched sweep."""
    f = run_root.parent / PROGRESS_FILE
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if run_root.name not in data["runs"]:
        return None
    done = sum((_read(run_root.parent / n) or {}).get("status") in FINAL for n in data["runs"])
    total, elapsed = len(data["runs"]), time.time() - data["started"]
    left = f", ~{_dur(elapsed / done * (total - done))} left" if 0 < done < total else ""
    return f"[sweep {data['sweep']}] {done}/{total} runs done, {_dur(elapsed)} elapsed{left}"


def _dur(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


def best_lr(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Per size, the lr-sweep run with the lowest final validation loss.

    Each chosen summary gains `lr_grid` (the LRs that completed for that size) and
    `at_grid_edge` (the best is the smallest or largest LR tried: the optimum may lie outside).
    """
    done: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(runs_dir).glob("*/summary.json")):
        s = json.loads(path.read_text())
        if s.get("status") == "completed" and s.get("final_val_loss") is not None:
            done.setdefault(s["size"], []).append(s)
    if not done:
        raise ConfigError(f"no completed runs under {runs_dir}; run the lr sweep first")
    best: dict[str, dict[str, Any]] = {}
    for size, runs in done.items():
        budgets = sorted({str((r.get("budget") or {}).get("label", "?")) for r in runs})
        if len(budgets) > 1:  # losses at different budgets do not rank learning rates
            raise ConfigError(
                f"{runs_dir}: size {size} has lr runs at several budgets {budgets}; "
                "choose LRs from one budget (one lr sweep per folder)"
            )
        grid = sorted({float(r["lr"]) for r in runs})
        b = dict(min(runs, key=lambda r: r["final_val_loss"]))
        b["lr_grid"] = grid
        b["at_grid_edge"] = len(grid) > 1 and float(b["lr"]) in (grid[0], grid[-1])
        best[size] = b
    return best


def write_tuned(best: dict[str, dict[str, Any]], out: Path, source: Path) -> str:
    """conf/optim/<name>.yaml: adamw with the chosen LR of every size in optim.lr_table."""
    from scaling.family import SIZES

    order = {n: i for i, n in enumerate(SIZES)}
    lines = [
        f"# Written by `python -m scaling.sweep best-lr {source}`: the peak LR with the lowest",
        "# final validation loss per size in that lr sweep. Sizes not listed use optim.lr.",
        "defaults:",
        "  - adamw",
        "  - _self_",
        "",
        "lr_table:",
    ]
    for size in sorted(best, key=lambda n: order.get(n, len(order))):
        s = best[size]
        edge = "; at the edge of the grid tried" if s.get("at_grid_edge") else ""
        lines.append(
            f"  {size}: {s['lr']:.6g}  # val_loss {s['final_val_loss']:.4f} ({s['run']}){edge}"
        )
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m scaling.sweep best-lr runs/lr [--out conf/optim/tuned.yaml]`."""
    parser = argparse.ArgumentParser(description="Sweep helpers.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("best-lr", help="choose each size's LR from an lr sweep's runs")
    p.add_argument("runs", type=Path, help="the lr sweep's run folder, e.g. runs/lr")
    p.add_argument("--out", type=Path, default=ROOT / "conf" / "optim" / "tuned.yaml")
    args = parser.parse_args(argv)
    try:
        best = best_lr(args.runs)
        text = write_tuned(best, args.out, args.runs)
    except ConfigError as e:
        raise SystemExit(f"scaling.sweep: error: {e}") from None
    for size, s in best.items():
        if s.get("at_grid_edge"):
            print(
                f"warning: {size}: the best LR {s['lr']:g} is at the edge of the grid "
                f"[{', '.join(f'{x:g}' for x in s['lr_grid'])}]; the optimum may lie beyond "
                "it: extend sweep.lrs",
                file=sys.stderr,
            )
    print(text + f"-> {args.out} (use it with optim=tuned)", file=sys.stderr)


if __name__ == "__main__":
    main()
