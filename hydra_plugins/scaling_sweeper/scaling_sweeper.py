"""The Hydra Sweeper behind sweeps/*.yaml: a thin shim over scaling.sweep.launch.run_sweep.

Hydra imports every module under hydra_plugins at start-up, so this one imports nothing heavy
at module level; torch and the planner load only when a sweep runs. Each job's task function
is wrapped so that a worker process stops when the sweep process dies (scaling.sweep.watchdog).
"""

# no `from __future__ import annotations`: Hydra executes plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class ScalingSweeperConf:
    _target_: str = "hydra_plugins.scaling_sweeper.scaling_sweeper.ScalingSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="scaling", node=ScalingSweeperConf, provider="scaling"
)


class ScalingSweeper(Sweeper):
    """Expands the `sweep:` node into runs, plans them all, then launches what is not done."""

    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Optional[Launcher] = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from scaling.sweep.watchdog import Watched

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=Watched(task_function), config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from scaling.config import ConfigError
        from scaling.data import DataError
        from scaling.sweep.launch import run_sweep
        from scaling.sweep.report import outcome

        assert self.config is not None and self.hydra_context is not None and self.launcher
        loader, master, launcher = self.hydra_context.config_loader, self.config, self.launcher

        def compose(overrides: list[str]) -> DictConfig:
            return loader.load_sweep_config(master_config=master, sweep_overrides=overrides)

        try:
            sp = run_sweep(
                OmegaConf.select(master, "sweep"),
                master,
                arguments,
                compose,
                lambda batch, idx: launcher.launch(batch, initial_job_idx=idx),
                loader.get_group_options("model"),
                master.hydra.launcher,
            )
        except (ConfigError, DataError) as e:
            raise SystemExit(f"scaling-train: error: {e}") from None
        if sp.spec.plan:
            return sp
        counts = outcome(sp)[1]
        if counts["failed"] or counts["corrupt"]:
            raise SystemExit(1)  # after every other run finished and the table was printed
        return sp
