"""Plan a whole sweep: every grid point through plan_run, filtered, arranged, checked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from contract import Status
from scaling.config import ConfigError, SweepSpec
from scaling.sweep.kinds import Planned, SweepKind, kind_of
from scaling.sweep.launchers import launcher_kind, launcher_parallelism, thread_overrides
from scaling.sweep.planner import Planner
from scaling.sweep.runs import Candidate, PlannedRun, SweepPlan, as_overrides, read_state
from scaling.train import Plan, config_changes


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
    kind = kind_of(spec)
    par = launcher_parallelism(launcher_cfg, base)
    extra = [*extra, *thread_overrides(launcher_cfg, par.threads, base)]
    planner = Planner(lambda ov: compose([*extra, *ov]))
    cands = kind.expand(spec)
    planned = []
    for c in cands:
        p = planner.plan(c)
        if p is None:
            continue
        reason = _drop_reason(spec, kind, p)
        if reason:
            planner.drop(p.run_name + c.suffix, reason)
        else:
            planned.append((c, p))
    _check_groups(spec, cands, planned, planner)
    planned = kind.arrange(planned, planner)
    if planner.errors:
        raise ConfigError(
            f"{len(planner.errors)} run(s) of sweep {spec.name!r} cannot be planned "
            "(nothing was launched):\n  " + "\n  ".join(planner.errors)
        )
    runs = _records(spec, planned)
    if not runs:
        raise ConfigError(
            f"sweep {spec.name!r} has no runs left after the filters (empty grid); dropped:\n  "
            + "\n  ".join(f"{n}: {r}" for n, r in planner.dropped)
        )
    sp = SweepPlan(
        spec,
        runs,
        planner.dropped,
        planned[0][1].budget.convention,
        par.parallel,
        par.launcher,
        par.threads,
        process_per_run=launcher_kind(launcher_cfg).process_per_run,
        warnings=kind.warnings(runs),
        saving=kind.saving(runs),
    )
    for _, p in planned:
        m = p.conf.model
        sp.shapes.setdefault(m.name, (m, p.conf.train.batch_size, m.seq_len))
    return sp


def _drop_reason(spec: SweepSpec, kind: SweepKind, plan: Plan) -> str | None:
    """Why the sweep's filters leave a planned run out: min_steps, the kind, D/N."""
    b = plan.budget
    if b.steps < spec.min_steps:
        return f"{b.steps} steps < sweep.min_steps={spec.min_steps}"
    if reason := kind.drop_reason(spec, plan):
        return reason
    if spec.tokens_per_param is not None:
        lo, hi = spec.tokens_per_param
        tpp = b.tokens / plan.counts.non_embedding
        if (lo is not None and tpp < lo) or (hi is not None and tpp > hi):
            return f"D/N={tpp:.3g} outside sweep.tokens_per_param=[{lo}, {hi}]"
    return None


def _check_groups(
    spec: SweepSpec, cands: list[Candidate], planned: list[Planned], planner: Planner
) -> None:
    """A grid row (e.g. one budget) whose every run is below one batch is an error."""
    kept = {c.group for c, _ in planned}
    for g in dict.fromkeys(c.group for c in cands):
        rows = [c.label for c in cands if c.group == g]
        if g in kept or not all(r in planner.too_small for r in rows):
            continue
        planner.errors.append(
            f"{g} is smaller than one batch of every size in sweep.sizes (the smallest, "
            f"{spec.sizes[0]}: {planner.too_small[rows[0]].reason}); raise it or lower "
            "train.batch_size"
        )


def planned_run(cand: Candidate, plan: Plan) -> PlannedRun:
    """The record of one planned run, with what its folder holds now."""
    b, conf = plan.budget, plan.conf
    n_eval_rows = min(conf.train.n_evals, b.steps) + 1  # ~ module.eval_steps, for estimates
    return PlannedRun(
        name=plan.run_name,
        overrides=as_overrides(cand.overrides),
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
        state=read_state(plan.store.root),
        config_hash=plan.config_hash,
        init_from=cand.init_from,
        start_step=cand.start_step,
    )


def _records(spec: SweepSpec, planned: list[Planned]) -> list[PlannedRun]:
    """The planned runs; two writing one folder, or one over another config, is an error."""
    runs: list[PlannedRun] = []
    errors: list[str] = []
    seen: dict[Path, str] = {}
    for c, p in planned:
        run = planned_run(c, p)
        if run.root in seen:
            raise ConfigError(
                f"runs {seen[run.root]!r} and {' '.join(run.overrides)!r} both write {run.root}; "
                "make the grid's runs distinct"
            )
        seen[run.root] = " ".join(run.overrides)
        prev = run.state
        # a failed one is moved aside and retried; a corrupt one is listed, not launched
        if prev.status != Status.FAILED and (changes := config_changes(p, prev.config_hash)):
            errors.append(
                f"{run.root} already holds a run ({prev.status}) with a different config "
                f"({'; '.join(changes[:3])}); choose another sweep.name= (experiment) or move "
                "that folder aside"
            )
        runs.append(run)
    if errors:
        raise ConfigError(
            f"sweep {spec.name!r} would overwrite other runs (nothing was launched):\n  "
            + "\n  ".join(errors)
        )
    return runs
