"""Per-step learning-rate schedules, shared by the trainer and the analysis (stdlib only).

The trainer's ``scaling.module.lr_multiplier`` *is* ``trainer_schedule(...).multiplier``, and
``analysis/`` rebuilds the learning rate of every optimiser step of a run from its recorded
``ScheduleConfig`` with the very same classes, so training and analysis cannot disagree.
A schedule is ``peak`` times a multiplier: a linear warmup over ``warmup`` steps, then the
kind's own shape (a subclass's ``after_warmup``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Shape(str, Enum):
    """How a decay goes from the peak (p = 0) to its final value (p = 1)."""

    linear = "linear"
    sqrt = "sqrt"
    cosine = "cosine"
    exponential = "exponential"  # geometric: peak^(1-p) final^p (needs final > 0)

    def multiplier(self, p: float, final: float) -> float:
        """Multiplier of the peak at progress ``p`` in [0, 1] of a decay to ``final``."""
        if self is Shape.exponential:
            return final**p
        if self is Shape.cosine:  # the trainer's arithmetic, operation for operation
            return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p))
        frac = 1.0 - p if self is Shape.linear else 1.0 - math.sqrt(p)
        return final + (1.0 - final) * frac


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: ``peak`` times a multiplier at every optimiser step."""

    total_steps: int
    """Optimiser steps of the run (the schedule is defined on 0..total_steps-1)."""
    warmup: int = 0
    """Warmup steps (may exceed total_steps: a short WSD branch of a long stable run)."""
    peak: float = 1.0
    """The peak learning rate (1.0: the multiplier itself)."""
    warmup_from_zero: bool = False
    """Warmup step s at s/warmup (else (s+1)/warmup, as the trainer runs it)."""

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.warmup < 0:
            raise ValueError(
                f"schedule needs total_steps >= 1 and warmup >= 0; got "
                f"total_steps={self.total_steps}, warmup={self.warmup}"
            )
        if not (math.isfinite(self.peak) and self.peak > 0):
            raise ValueError(f"schedule peak must be finite and > 0, got {self.peak}")

    def after_warmup(self, step: int) -> float:
        """Multiplier at ``step`` >= warmup (the kind's own shape)."""
        raise NotImplementedError

    def multiplier(self, step: int) -> float:
        """Multiplier of the peak at optimiser step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + (0 if self.warmup_from_zero else 1)) / self.warmup
        return self.after_warmup(step)

    def lrs(self) -> list[float]:
        """The learning rate of every optimiser step 0..total_steps-1."""
        return [self.peak * self.multiplier(s) for s in range(self.total_steps)]


@dataclass(frozen=True)
class Constant(Schedule):
    """Warmup, then the peak to the end."""

    def after_warmup(self, step: int) -> float:
        """1 after the warmup."""
        return 1.0


@dataclass(frozen=True)
class Cosine(Schedule):
    """Warmup, then a cosine from the peak to ``final_frac`` x peak at step total_steps."""

    final_frac: float = 0.1
    """The multiplier the cosine reaches at total_steps."""

    def after_warmup(self, step: int) -> float:
        """Cosine multiplier (the trainer's: progress over total_steps - warmup)."""
        p = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return Shape.cosine.multiplier(p, self.final_frac)


@dataclass(frozen=True)
class WSD(Schedule):
    """Warmup, the peak to ``decay_start``, then a decay reaching ``final_frac`` at
    ``decay_end`` (default total_steps: the trainer's cooldown to the run's own end)."""

    decay_start: int = 0
    """First step of the decay."""
    final_frac: float = 0.0
    """The multiplier the decay reaches at decay_end."""
    shape: Shape = Shape.sqrt
    """The decay's shape."""
    decay_end: int | None = None
    """Step the decay ends at; None: total_steps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        end = self.total_steps if self.decay_end is None else self.decay_end
        if not 0 <= self.decay_start < end:
            raise ValueError(
                f"WSD needs 0 <= decay_start < decay_end; got decay_start={self.decay_start}, "
                f"decay_end={end}"
            )
        if self.shape is Shape.exponential and not self.final_frac > 0:
            raise ValueError(f"an exponential decay needs final_frac > 0, got {self.final_frac}")

    def after_warmup(self, step: int) -> float:
        """1 before decay_start, then the decay shape."""
        if step < self.decay_start:
            return 1.0
        end = self.total_steps if self.decay_end is None else self.decay_end
        p = min(1.0, (step - self.decay_start) / (end - self.decay_start))
        return self.shape.multiplier(p, self.final_frac)


@dataclass(frozen=True)
class Drop(Schedule):
    """Warmup, the peak to step ``at``, then a constant ``level_frac`` x peak (a step drop)."""

    at: int = 0
    """First step at the lower level."""
    level_frac: float = 0.1
    """The multiplier after the drop."""

    def after_warmup(self, step: int) -> float:
        """1 before ``at``, ``level_frac`` from it on."""
        return 1.0 if step < self.at else self.level_frac


def trainer_schedule(
    kind: str,
    total_steps: int,
    *,
    warmup_frac: float = 0.05,
    warmup_max: int = 1000,
    final_lr_frac: float = 0.1,
    cooldown_frac: float = 0.2,
    cooldown_shape: str = "sqrt",
    wsd_total_steps: int | None = None,
) -> Schedule:
    """The schedule the trainer runs for a ``ScheduleConfig`` (its fields as keywords,
    ``kind`` one of constant / cosine / wsd), as a multiplier (peak 1)."""
    if kind not in TRAINER_KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; valid: {sorted(TRAINER_KINDS)}")
    # Warmup is set by the run the schedule belongs to: for a WSD cooldown branch that is the
    # long stable run (wsd_total_steps), so every branch shares the stable run's warmup.
    warmup = min(warmup_max, round(warmup_frac * (wsd_total_steps or total_steps)))
    start = total_steps - max(1, round(cooldown_frac * total_steps))
    return TRAINER_KINDS[kind](total_steps, warmup, final_lr_frac, start, Shape(cooldown_shape))


TRAINER_KINDS: dict[str, Callable[[int, int, float, int, Shape], Schedule]] = {
    "constant": lambda total, warmup, final, start, shape: Constant(total, warmup),
    "cosine": lambda total, warmup, final, start, shape: Cosine(total, warmup, final_frac=final),
    "wsd": lambda total, warmup, final, start, shape: WSD(
        total, warmup, decay_start=start, shape=shape
    ),
}
"""ScheduleKind name -> (total_steps, warmup, final_lr_frac, decay_start, shape) -> schedule."""


SPEC_GRAMMAR = (
    "constant:STEPS, cosine:STEPS[:FINAL_LR_FRAC] or wsd:STEPS[:COOLDOWN_FRAC[:SHAPE]] "
    "(SHAPE linear, sqrt or cosine), e.g. cosine:24000 or wsd:24000:0.2"
)


def parse_spec(spec: str) -> dict[str, object]:
    """``trainer_schedule`` keywords of a schedule described as text (``SPEC_GRAMMAR``)."""
    kind, *fields = spec.strip().split(":")
    extra = {"cosine": ("final_lr_frac",), "wsd": ("cooldown_frac", "cooldown_shape")}
    names = ("total_steps", *extra.get(kind, ()))
    if kind not in TRAINER_KINDS or not 1 <= len(fields) <= len(names):
        raise ValueError(f"schedule {spec!r} is not valid; use {SPEC_GRAMMAR}")
    out: dict[str, object] = {"kind": kind}
    for name, text in zip(names, fields):
        try:
            value: object = (
                int(text) if name == "total_steps" else text if name == "cooldown_shape"
                else float(text)
            )  # fmt: skip
        except ValueError:
            value = None
        ok = {
            "total_steps": lambda v: isinstance(v, int) and v >= 1,
            "final_lr_frac": lambda v: isinstance(v, float) and 0 <= v <= 1,
            "cooldown_frac": lambda v: isinstance(v, float) and 0 < v <= 1,
            "cooldown_shape": lambda v: v in ("linear", "sqrt", "cosine"),
        }[name](value)
        if not ok:
            raise ValueError(f"schedule {spec!r}: {name} {text!r} is not valid; use {SPEC_GRAMMAR}")
        out[name] = value
    return out
