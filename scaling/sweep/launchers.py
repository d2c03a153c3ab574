"""Launchers, known by their config class: how many runs at a time, with how many threads."""

from __future__ import annotations

import os
from typing import ClassVar, NamedTuple

from omegaconf import DictConfig


class Parallelism(NamedTuple):
    """What the configured launcher runs at once."""

    launcher: str  # the launcher's registered name (joblib, submitit_local, ...)
    parallel: int  # runs at a time
    threads: int | None  # torch threads per run (None: torch's default)


class LauncherKind:
    """A Hydra launcher, identified by the `_target_` class of its config."""

    name: ClassVar[str]
    target: ClassVar[str]  # the launcher class its config instantiates
    local: ClassVar[bool] = False  # its jobs share this machine's cores
    process_per_run: ClassVar[bool] = False  # a fresh process (Lightning's import) per run

    def parallelism(self, cfg: DictConfig, threads: int | None, cores: int) -> Parallelism:
        """Runs at a time and threads per run; `threads` is trainer.num_threads (None: unset)."""
        return Parallelism(self.name, 1, threads)


LAUNCHERS: dict[str, type[LauncherKind]] = {}


def register(cls: type[LauncherKind]) -> type[LauncherKind]:
    """Class decorator: make `cls` the launcher whose config targets `cls.target`."""
    LAUNCHERS[cls.target] = cls
    return cls


@register
class Basic(LauncherKind):
    """Hydra's default: one run after another in this process."""

    name = "basic"
    target = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


@register
class Joblib(LauncherKind):
    """joblib (loky) worker processes on this machine, reused across runs."""

    name = "joblib"
    target = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    local = True

    def parallelism(self, cfg: DictConfig, threads: int | None, cores: int) -> Parallelism:
        n = int(cfg.get("n_jobs", -1))
        n = max(1, cores if n == -1 else (cores + 1 + n if n < 0 else n))
        return Parallelism(self.name, n, threads or max(1, cores // n))


@register
class SubmititLocal(LauncherKind):
    """submitit on this machine: every job of a stage starts at once."""

    name = "submitit_local"
    target = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    local = True
    process_per_run = True

    def parallelism(self, cfg: DictConfig, threads: int | None, cores: int) -> Parallelism:
        # more than one job per core only oversubscribes the machine, so the estimate counts
        # at most `cores` at a time and each job gets cores / jobs torch threads
        n = max(1, min(int(cfg.get("array_parallelism", 256)), cores))
        cpus = cfg.get("cpus_per_task")
        return Parallelism(self.name, n, threads or cpus or max(1, cores // n))


@register
class SubmititSlurm(LauncherKind):
    """submitit on a SLURM cluster: the cluster's nodes, not this machine, run the jobs."""

    name = "submitit_slurm"
    target = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    process_per_run = True

    def parallelism(self, cfg: DictConfig, threads: int | None, cores: int) -> Parallelism:
        n = int(cfg.get("array_parallelism", 256))
        return Parallelism(self.name, n, threads or cfg.get("cpus_per_task"))


def launcher_kind(launcher_cfg: DictConfig) -> LauncherKind:
    """The registered launcher of a `hydra.launcher` node; an unknown one runs as basic."""
    return LAUNCHERS.get(str(launcher_cfg.get("_target_", "")), Basic)()


def launcher_parallelism(launcher_cfg: DictConfig, base: DictConfig) -> Parallelism:
    """(launcher name, runs at a time, torch threads per run) of the configured launcher."""
    kind = launcher_kind(launcher_cfg)
    return kind.parallelism(launcher_cfg, base.trainer.num_threads, os.cpu_count() or 1)


def thread_overrides(launcher_cfg: DictConfig, threads: int | None, base: DictConfig) -> list[str]:
    """Jobs sharing this machine get cores / jobs torch threads unless the user set them."""
    if threads and base.trainer.num_threads is None and launcher_kind(launcher_cfg).local:
        return [f"trainer.num_threads={threads}"]
    return []
