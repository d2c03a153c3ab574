"""Sweep kinds: one small registered class each (its needed fields, grid and planning rules).

`sweep.kind` names a class here; a new kind is a subclass with `@register`, nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from scaling.budget import fmt_num
from scaling.config import ConfigError, SweepSpec
from scaling.sweep.planner import Planner
from scaling.sweep.runs import Candidate, PlannedRun, num
from scaling.train import Plan

Planned = tuple[Candidate, Plan]


class SweepKind:
    """A kind of sweep: the `sweep.*` fields it needs, its grid, and its own planning rules."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]

    def check(self, spec: SweepSpec) -> None:
        """Raise ConfigError for a grid this kind cannot use (beyond empty needed fields)."""

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        """The grid of the sweep, before planning."""
        raise NotImplementedError

    def drop_reason(self, spec: SweepSpec, plan: Plan) -> str | None:
        """Why this kind leaves a planned run out (beyond the shared filters); None keeps it."""
        return None

    def arrange(self, planned: list[Planned], planner: Planner) -> list[Planned]:
        """The kept runs as they launch (renamed, staged, branched)."""
        return planned

    def warnings(self, runs: list[PlannedRun]) -> list[str]:
        """What the plan should warn about."""
        return []

    def saving(self, runs: list[PlannedRun]) -> dict[str, float] | None:
        """FLOPs saved against training every run from scratch; None if nothing is shared."""
        return None


KINDS: dict[str, type[SweepKind]] = {}


def register(cls: type[SweepKind]) -> type[SweepKind]:
    """Class decorator: make `cls` the kind named `cls.name`."""
    KINDS[cls.name] = cls
    return cls


def kind_of(spec: SweepSpec) -> SweepKind:
    """The kind `spec.kind` names, after checking the fields it needs are given."""
    cls = KINDS.get(spec.kind)
    if cls is None:
        raise ConfigError(f"sweep.kind={spec.kind!r} is unknown; valid: {list(KINDS)}")
    for key in cls.needs:
        if not getattr(spec, key):
            raise ConfigError(
                f"sweep.{key} is empty: sweep.kind={spec.kind} needs at least one value "
                f"(e.g. sweep.{key}=[...])"
            )
    kind = cls()
    kind.check(spec)
    return kind


def named_by_suffix(planned: list[Planned], planner: Planner) -> list[Planned]:
    """The runs renamed "{size}-{budget}{suffix}" (the budget label is known once planned)."""
    named = [
        dataclasses.replace(c, overrides={**c.overrides, "run_name": p.run_name + c.suffix})
        for c, p in planned
    ]
    return [(c, p) for c in named if (p := planner.plan(c)) is not None]


@register
class IsoFlop(SweepKind):
    """IsoFLOP profiles: every size trained for exactly the same compute C, per budget."""

    name = "isoflop"
    needs = ("sizes", "budgets")

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        # budget-major: one IsoFLOP profile after another
        return [
            Candidate({"model": s, "train.flops": num(c)}, f"C={fmt_num(c)}")
            for c in spec.budgets
            for s in spec.sizes
        ]

    def drop_reason(self, spec: SweepSpec, plan: Plan) -> str | None:
        b = plan.budget
        if b.kind != "flops":
            return None
        c = b.flops[b.convention]
        miss = c / b.target - 1
        if abs(miss) <= spec.flops_tolerance:
            return None
        return (
            f"{b.steps} whole steps give C={c:.4g}, {miss:+.1%} off the budget "
            f"(sweep.flops_tolerance={spec.flops_tolerance:g}); "
            "lower train.batch_size for finer steps or raise sweep.flops_tolerance"
        )

    def warnings(self, runs: list[PlannedRun]) -> list[str]:
        out = []
        for g in dict.fromkeys(r.group for r in runs):
            k = sum(r.group == g for r in runs)
            if k < 3:
                out.append(f"{g} keeps {k} size(s); an IsoFLOP parabola needs >= 3")
        return out


@register
class SizeLadder(SweepKind):
    """Kaplan's L(N): every size at fixed Chinchilla multiples of tokens."""

    name = "size_ladder"
    needs = ("sizes", "multiples")

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        return [
            Candidate({"model": s, "train.tokens": f"{fmt_num(k)}xC"}, f"{fmt_num(k)}xC")
            for s in spec.sizes
            for k in spec.multiples
        ]


@register
class DataLadder(SweepKind):
    """Kaplan's L(D): each size trained for a ladder of token counts."""

    name = "data_ladder"
    needs = ("sizes", "tokens")

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        return [
            Candidate({"model": s, "train.tokens": str(t)}, s)
            for s in spec.sizes
            for t in spec.tokens
        ]


@register
class Wsd(DataLadder):
    """Warmup-stable-decay: per size, the longest run is the stable run and the others are
    cooldown branches started from its checkpoints (a second launch stage)."""

    name = "wsd"

    def arrange(self, planned: list[Planned], planner: Planner) -> list[Planned]:
        out: list[Planned] = []
        by_size: dict[str, list[Planned]] = {}
        for c, p in planned:
            by_size.setdefault(p.conf.model.name, []).append((c, p))
        for rows in by_size.values():
            rows.sort(key=lambda cp: cp[1].budget.steps)
            out += self._branch(rows, planner)
        return out

    def _branch(self, rows: list[Planned], planner: Planner) -> list[Planned]:
        """One size: the stable run (checkpoints at every branch's start) and its branches."""
        stable_c, stable_p = rows[-1]
        frac = stable_p.conf.schedule.cooldown_frac
        starts = [p.budget.steps - max(1, round(frac * p.budget.steps)) for _, p in rows[:-1]]
        common = {"schedule.wsd_total_steps": str(stable_p.budget.steps)}
        ckpts = "[" + ",".join(map(str, sorted(set(starts)))) + "]"
        sc = dataclasses.replace(
            stable_c, overrides={**stable_c.overrides, **common, "train.checkpoint_steps": ckpts}
        )
        sp = planner.plan(sc)
        if sp is None:
            return []
        out: list[Planned] = [(sc, sp)]
        for (c, _), start in zip(rows[:-1], starts):
            ckpt = stable_p.store.ckpt_dir / f"step{start}.ckpt"
            bc = dataclasses.replace(
                c,
                stage=1,
                overrides={**c.overrides, **common, "train.init_from": f"'{ckpt}'"},
                init_from=ckpt,
                start_step=start,
            )
            if (bp := planner.plan(bc)) is not None:
                out.append((bc, bp))
        return out

    def saving(self, runs: list[PlannedRun]) -> dict[str, float]:
        scratch = sum(r.C for r in runs)
        wsd = sum(
            r.C if r.start_step is None else (r.steps - r.start_step) * r.tokens_per_step * r.fpt
            for r in runs
        )
        return {"scratch": scratch, "wsd": wsd, "saved_frac": 1 - wsd / scratch}


@register
class WsdIsoFlop(Wsd):
    """IsoFLOP profiles out of WSD runs: every size at every budget C (D = C / FLOPs per
    token), the largest kept budget of each size its stable run and the others cooldown
    branches from its checkpoints. Approach 2 groups the runs by C as in `isoflop`, while a
    budget costs only its cooldown, so a lattice of many budgets costs ~1.2-1.4x the stable runs."""

    name = "wsd_isoflop"
    needs = ("sizes", "budgets")

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        return IsoFlop().expand(spec)

    def drop_reason(self, spec: SweepSpec, plan: Plan) -> str | None:
        return IsoFlop().drop_reason(spec, plan)


@register
class LearningRate(SweepKind):
    """A peak-LR grid per size at the sweep file's budget; one run folder per grid point."""

    name = "lr"
    needs = ("sizes", "lrs")

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        return [
            Candidate(
                {"model": s, "optim.lr": num(lr), "optim.lr_table": "{}"},
                s,
                suffix=f"-lr{fmt_num(lr)}",
            )
            for s in spec.sizes
            for lr in spec.lrs
        ]

    def arrange(self, planned: list[Planned], planner: Planner) -> list[Planned]:
        return named_by_suffix(planned, planner)  # "{size}-{budget}-lr{lr}"


@register
class LearningRateBatch(SweepKind):
    """Peak LR x batch size per (size, tokens) cell: the grid the LR and batch-size laws are
    fitted to (`scaling-hparams`); one run folder per grid point."""

    name = "lr_bs"
    needs = ("sizes", "tokens", "lrs", "batch_sizes")

    def check(self, spec: SweepSpec) -> None:
        for key in ("lrs", "batch_sizes"):
            values = sorted(set(getattr(spec, key)))
            if len(values) < 2:
                raise ConfigError(
                    f"sweep.{key}={values} has one value; sweep.kind=lr_bs needs at least 2 "
                    f"(e.g. sweep.{key}=[...] a factor 2 apart) to locate a best value"
                )

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        return [
            Candidate(
                {
                    "model": s,
                    "train.tokens": str(t),
                    "train.batch_size": str(bs),
                    "optim.lr": num(lr),
                    "optim.lr_table": "{}",
                },
                f"{s} tokens={t}",
                suffix=f"-bs{bs}-lr{fmt_num(lr)}",
            )
            for s in spec.sizes
            for t in spec.tokens
            for bs in spec.batch_sizes
            for lr in spec.lrs
        ]

    def drop_reason(self, spec: SweepSpec, plan: Plan) -> str | None:
        # every run of a cell must train the cell's D: losses at other D do not rank LR and B
        b, per_step = plan.budget, plan.conf.train.batch_size * plan.conf.model.seq_len
        miss = b.tokens / b.target - 1 if b.kind == "tokens" else 0.0
        if abs(miss) <= spec.flops_tolerance:
            return None
        return (
            f"train.batch_size={plan.conf.train.batch_size} ({per_step} tokens per step) does "
            f"not divide D={b.target:.6g}: {b.steps} whole steps train {b.tokens} tokens "
            f"({miss:+.1%}, sweep.flops_tolerance={spec.flops_tolerance:g}); choose batch sizes "
            "whose tokens per step divide D or raise sweep.flops_tolerance"
        )

    def arrange(self, planned: list[Planned], planner: Planner) -> list[Planned]:
        return named_by_suffix(planned, planner)  # "{size}-{budget}-bs{B}-lr{lr}"

    def warnings(self, runs: list[PlannedRun]) -> list[str]:
        out = []
        for g in dict.fromkeys(r.group for r in runs):
            cell = [r for r in runs if r.group == g]
            n_lr = len({r.lr for r in cell})
            n_bs = len({r.tokens_per_step for r in cell})
            if n_lr < 2 or n_bs < 2:
                out.append(
                    f"cell {g} keeps {n_lr} LR(s) x {n_bs} batch size(s); the fit of its best "
                    "LR and batch size needs >= 2 of each"
                )
        return out


@register
class Repeat(SweepKind):
    """Repeated data (Muennighoff et al. 2023): the training split capped to U unique tokens
    (data.unique_tokens), each size trained for several epochs over it (D = epochs x U); the
    runs fit the data_constrained law (scaling-fit --law data_constrained)."""

    name = "repeat"
    needs = ("sizes", "unique_tokens", "epochs")

    def check(self, spec: SweepSpec) -> None:
        bad = [e for e in spec.epochs if not e > 0] + [u for u in spec.unique_tokens if not u >= 1]
        if bad:
            raise ConfigError(
                f"sweep.epochs / sweep.unique_tokens hold {bad}; epochs must be > 0 and unique "
                "token counts >= 1 (e.g. sweep.unique_tokens=[1e6] sweep.epochs=[1,2,4,8])"
            )

    def expand(self, spec: SweepSpec) -> list[Candidate]:
        return [
            Candidate(
                {
                    "model": s,
                    "data.unique_tokens": str(int(u)),
                    "train.tokens": str(int(round(e * u))),
                },
                f"{s} U={fmt_num(u)}",
                suffix=f"-U{u:g}",
            )
            for s in spec.sizes
            for u in spec.unique_tokens
            for e in spec.epochs
        ]

    def arrange(self, planned: list[Planned], planner: Planner) -> list[Planned]:
        return named_by_suffix(planned, planner)  # "{size}-{budget}-U{U}"
