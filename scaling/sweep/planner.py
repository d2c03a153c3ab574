"""One grid point through the trainer's own `plan_run`, as its job will compose it."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, open_dict, read_write

from scaling.budget import BudgetTooSmall
from scaling.config import ConfigError
from scaling.data import DataError
from scaling.sweep.runs import Candidate, Drop, as_overrides
from scaling.train import Plan, plan_run


class Planner:
    """Composes and plans each run as the launcher would, collecting errors and drops."""

    def __init__(self, compose: Callable[[list[str]], DictConfig]) -> None:
        self.compose = compose
        self.errors: list[str] = []
        self.dropped: list[Drop] = []
        self.too_small: dict[str, BudgetTooSmall] = {}  # grid point label -> why

    def task_cfg(self, overrides: list[str]) -> DictConfig:
        """The run's config as its job sees it (the composed config minus `hydra`)."""
        cfg = self.compose(overrides)
        with read_write(cfg), open_dict(cfg):
            cfg.pop("hydra", None)
        return cfg

    def plan(self, cand: Candidate) -> Plan | None:
        """plan_run of one candidate; None (and an error or a drop recorded) if it fails."""
        label = cand.label
        try:
            return plan_run(self.task_cfg(as_overrides(cand.overrides)))
        except BudgetTooSmall as e:  # only a budget below one batch is dropped, not a typo
            self.dropped.append(Drop(label, e.reason))
            self.too_small[label] = e
        except (ConfigError, DataError) as e:
            self.errors.append(f"{label}: {e}")
        except Exception as e:  # composition: an unknown size, a typo in an override
            self.errors.append(f"{label}: {str(e).splitlines()[0]}")
        return None

    def drop(self, run: str, reason: str) -> None:
        """Record a planned run the sweep's filters leave out."""
        self.dropped.append(Drop(run, reason))
