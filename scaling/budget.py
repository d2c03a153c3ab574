"""Budget arithmetic: one of tokens / FLOPs / steps / "<k>xC" -> whole optimiser steps.

Pure arithmetic, no torch: the sweep planner uses the same function as the trainer, so what a
plan prints is exactly what a launch runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from contract import CONVENTIONS
from scaling.config import ConfigError, TrainConfig

CHINCHILLA_TOKENS_PER_PARAM = 20.0  # "1xC": 20 tokens per parameter (Hoffmann et al. 2022)
# More optimiser steps than any run could take (and far inside int64, where Lightning counts):
# a budget beyond it is a typo such as train.tokens=1e30.
MAX_STEPS = 10**12

_MULTIPLE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[xX]C\s*$")


class BudgetError(ConfigError):
    """A training budget that cannot be resolved into whole optimiser steps."""


class MalformedBudget(BudgetError):
    """A budget that is not a valid value (not a number, not positive, none or several given):
    a typo, so a sweep stops before launching and names it."""


class BudgetTooSmall(BudgetError):
    """A well-formed budget below one batch: a sweep drops (and lists) such a run."""

    def __init__(self, key: str, value: Any, tokens: float, tokens_per_step: int) -> None:
        self.key, self.value = key, value
        self.tokens, self.tokens_per_step = tokens, tokens_per_step
        super().__init__(f"{self.reason}; raise the budget or lower train.batch_size")

    @property
    def reason(self) -> str:
        """What is too small, without the advice (a sweep lists it as the run's drop reason)."""
        return (
            f"train.{self.key}={self.value!r} gives {self.tokens:.4g} tokens, less than one "
            f"batch of {self.tokens_per_step} tokens (train.batch_size x model.seq_len)"
        )


def fmt_num(x: float) -> str:
    """Compact scientific label: 2e7, 2.5e7, 1e15, 500."""
    if 0.01 <= x < 1e4:
        return f"{x:.3g}"
    mant, exp = f"{x:.2e}".split("e")
    return f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"


def parse_multiple(value: Any) -> float | None:
    """'1xC' -> 1.0, '0.5xC' -> 0.5; None if `value` is not a Chinchilla multiple."""
    if isinstance(value, str):
        m = _MULTIPLE.match(value)
        if m:
            return float(m.group(1))
    return None


def _as_positive_number(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise MalformedBudget(
            f"{name}={value!r} is not a number; use a count such as 2e7"
            + (" or a Chinchilla multiple such as 1xC" if name == "train.tokens" else "")
        ) from None
    if not math.isfinite(x) or x <= 0:
        raise MalformedBudget(f"{name}={value!r} must be a positive finite number")
    return x


@dataclass(frozen=True)
class Budget:
    """A resolved training budget."""

    kind: str  # tokens | flops | steps
    value: str  # as the user gave it
    label: str  # second half of the run name: "1xC", "D2e7", "C1e15", "S500"
    convention: str  # FLOP convention a flops budget is measured in
    steps: int  # optimiser steps
    tokens: int  # steps * tokens_per_step (what is actually trained)
    flops: dict[str, float]  # training FLOPs under each convention
    target: float  # the requested amount in the budget's own unit, before rounding to steps


def resolve(
    train: TrainConfig, flops_per_token: dict[str, float], n_params: int, tokens_per_step: int
) -> Budget:
    """Turn exactly one of train.tokens / train.flops / train.steps into whole steps."""
    given = {
        k: getattr(train, k) for k in ("tokens", "flops", "steps") if getattr(train, k) is not None
    }
    if len(given) != 1:
        raise MalformedBudget(
            "set exactly one budget: train.tokens=<count or kxC>, train.flops=<C> or "
            f"train.steps=<S>; got {sorted(given) or 'none'}"
        )
    kind, raw = next(iter(given.items()))
    conv = train.flops_convention.value
    if kind == "steps":
        steps_f = _as_positive_number("train.steps", raw)
        if not float(steps_f).is_integer():
            raise MalformedBudget(f"train.steps={raw!r} must be a whole number")
        target, tokens_f, label = steps_f, steps_f * tokens_per_step, f"S{int(steps_f)}"
    elif kind == "tokens":
        mult = parse_multiple(raw)
        if mult is not None:
            if mult <= 0:
                raise MalformedBudget(f"train.tokens={raw!r} must be a positive multiple")
            tokens_f = mult * CHINCHILLA_TOKENS_PER_PARAM * n_params
            label = f"{fmt_num(mult)}xC"
        else:
            tokens_f = _as_positive_number("train.tokens", raw)
            label = f"D{fmt_num(tokens_f)}"
        target = tokens_f
    else:
        flops_f = _as_positive_number("train.flops", raw)
        target, tokens_f, label = flops_f, flops_f / flops_per_token[conv], f"C{fmt_num(flops_f)}"
    steps = round(tokens_f / tokens_per_step)
    if steps < 1:
        raise BudgetTooSmall(kind, raw, tokens_f, tokens_per_step)
    if steps > MAX_STEPS:
        raise MalformedBudget(
            f"train.{kind}={raw!r} gives {steps:.3g} optimiser steps; at most {MAX_STEPS:.0e} "
            "steps are possible, so this is not a budget any run can train"
        )
    tokens = steps * tokens_per_step
    return Budget(
        kind=kind,
        value=str(raw),
        label=label,
        convention=conv,
        steps=steps,
        tokens=tokens,
        flops={c: tokens * flops_per_token[c] for c in CONVENTIONS},
        target=target,
    )
