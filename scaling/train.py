"""The Hydra entry point: compose -> validate -> skip if done -> fit -> record.

    scaling-train model=1M train.tokens=1xC            # 20 tokens per parameter
    scaling-train model=200k train.flops=1e13          # FLOPs under train.flops_convention
    scaling-train model=100k train.steps=500 trainer=gpu

Everything a scaling-law analysis needs lands in runs/<experiment>/<run-name>/ (the source of
truth, see docs/formats.md); W&B is a view of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import IterableDataset

from analysis.wandb_mode import resolve_mode
from scaling.budget import Budget, resolve
from scaling.config import Config, ConfigError, register_configs, validate
from scaling.data import BatchStream, Corpus, DataError, TokenBatches, load_corpus, val_batches
from scaling.family import flops_per_token, param_counts
from scaling.store import RunStore, config_hash

log = logging.getLogger("scaling.train")
register_configs()


def _quiet_lightning() -> None:
    """Lightning's per-Trainer banners ("GPU available: False", tips) repeat once per run of a
    sweep; our one-line progress and result lines say what matters. Call after importing it."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


_FINAL = ("completed", "diverged")  # statuses a relaunch does not train again


@dataclasses.dataclass
class Plan:
    """Everything resolved from the config before any training starts."""

    conf: Config
    corpus: Corpus
    budget: Budget
    run_name: str
    store: RunStore
    lr: float
    counts: Any
    fpt: dict[str, float]
    config_hash: str


def peak_lr(conf: Config, n_params: int) -> float:
    """The peak LR for this size: lr_table entry, else the rule, else optim.lr."""
    o = conf.optim
    if conf.model.name in o.lr_table:
        return float(o.lr_table[conf.model.name])
    if o.lr_rule_exponent is not None:
        return o.lr * (o.lr_rule_ref_params / n_params) ** o.lr_rule_exponent
    return o.lr


def plan_run(cfg: DictConfig) -> Plan:
    """Validate the config, prepare the corpus, resolve the budget; no training."""
    conf = validate(cfg)
    corpus = load_corpus(conf.data)
    vocab = conf.model.vocab_size or corpus.vocab_size
    if vocab < corpus.vocab_size:
        raise ConfigError(
            f"model.vocab_size={vocab} is smaller than the corpus vocabulary ({corpus.vocab_size})"
        )
    conf.model = dataclasses.replace(conf.model, vocab_size=vocab)
    counts = param_counts(conf.model)
    fpt = flops_per_token(conf.model)
    world = max(1, conf.trainer.devices) * conf.trainer.num_nodes
    if conf.train.batch_size % world:
        raise ConfigError(
            f"train.batch_size={conf.train.batch_size} (the global batch) must be divisible by "
            f"the {world} training processes"
        )
    tokens_per_step = conf.train.batch_size * conf.model.seq_len
    budget = resolve(conf.train, fpt, counts.non_embedding, tokens_per_step)
    if corpus.n_val < conf.train.eval_tokens // 4:
        log.warning("validation split of %s is small (%d tokens)", corpus.name, corpus.n_val)
    name = conf.run_name or f"{conf.model.name}-{budget.label}"
    store = RunStore(Path(conf.runs_dir) / conf.experiment / name)
    return Plan(
        conf,
        corpus,
        budget,
        name,
        store,
        peak_lr(conf, counts.non_embedding),
        counts,
        fpt,
        run_config_hash(cfg),
    )


def run_config_hash(cfg: DictConfig) -> str:
    """config_hash of what the run computes: the `sweep` node (how it was planned) left out."""
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(c, dict)
    c.pop("sweep", None)
    return config_hash(OmegaConf.create(c))


def make_wandb_logger(plan: Plan, cfg: DictConfig) -> Any:
    """A WandbLogger in the experiment's group, with tokens/FLOPs as x-axes; None if disabled."""
    wc = plan.conf.logger.wandb
    mode = resolve_mode(wc.mode.value)
    if mode == "disabled":
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    save_dir = Path(wc.dir) if wc.dir else plan.store.root
    save_dir.mkdir(parents=True, exist_ok=True)
    # one stable id per run folder: a resumed run continues its own W&B run
    run_id = hashlib.sha1(str(plan.store.root.resolve()).encode()).hexdigest()[:12]
    tags = [f"size:{plan.conf.model.name}", f"budget:{plan.budget.label}", *wc.tags]

    def make(mode: str) -> Any:
        return WandbLogger(
            project=wc.project,
            entity=wc.entity,
            group=plan.conf.experiment,
            job_type="train",
            name=plan.run_name,
            id=run_id,
            save_dir=str(save_dir),
            mode=mode,
            tags=tags,
            config=OmegaConf.to_container(cfg, resolve=True),
            resume="allow",
            settings=wandb.Settings(silent=True, init_timeout=30, x_disable_stats=True),
        )

    logger = make(mode)
    try:
        run = logger.experiment  # wandb.init happens here
    except Exception as err:
        if wc.mode.value != "auto" or mode != "online":
            raise
        # auto chose online (a login, a reachable host) but init failed: train offline rather
        # than lose the run; `wandb sync` uploads it later. The failed init keeps the run id
        # claimed in the W&B service process, so that process is torn down first.
        wandb.teardown()
        print(
            f"[{plan.run_name}] W&B online init failed ({type(err).__name__}: {err}); "
            "logging offline instead",
            file=sys.stderr,
        )
        logger = make("offline")
        run = logger.experiment
    run.define_metric("tokens")
    run.define_metric("flops")
    for key in ("train/loss", "val/loss", "lr", "perf/*", "flops/*", "epoch"):
        run.define_metric(key, step_metric="tokens")
    run.config.update(
        {
            "N": plan.counts.non_embedding,
            "N_total": plan.counts.total,
            "D": plan.budget.tokens,
            "C": plan.budget.flops,
        },
        allow_val_change=True,
    )
    return logger


def _ckpt_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def _failed(summary: dict[str, Any]) -> bool:
    return summary.get("status") == "failed"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one run (or skip/resume it) and return its summary."""
    t_start = time.perf_counter()
    plan = plan_run(cfg)
    zero = not _is_replica()
    if not zero:  # a DDP rank > 0 reads the run folder; rank 0 alone writes it
        plan.store = _ReplicaStore(plan.store.root)
    conf, store, budget = plan.conf, plan.store, plan.budget
    prev = store.read_summary()
    if prev is not None and prev.get("config_hash") != plan.config_hash and _failed(prev):
        # a failed run relaunched with a corrected config (a precision, a batch that fits in
        # memory): keep the failed record beside it, start afresh
        if zero:
            aside = store.move_aside("failed")
            print(
                f"[{plan.run_name}] the failed run with another config -> {aside}", file=sys.stderr
            )
        prev = None
    if prev is not None and prev.get("config_hash") != plan.config_hash:
        raise ConfigError(
            f"{store.root} already holds a run ({prev.get('status')}) with a different config "
            f"({prev.get('config_hash')} != {plan.config_hash}); choose another experiment= or "
            "run_name=, or move that folder aside"
        )
    if prev is not None and prev.get("status") in _FINAL:
        log.info("%s already %s: skipping", plan.run_name, prev["status"])
        print(f"[{plan.run_name}] already {prev['status']}: skipped", file=sys.stderr)
        return {**prev, "skipped": True}

    import lightning as L
    import torch

    from scaling.module import Diverged, LitGPT, RunRecorder, peak_flops

    _quiet_lightning()
    if conf.trainer.num_threads:
        torch.set_num_threads(conf.trainer.num_threads)
    ckpt_path: Path | None = None
    keep_until: int | None = None
    if prev is not None and conf.train.resume and store.last_ckpt.exists():
        ckpt_path, keep_until = store.last_ckpt, _ckpt_step(store.last_ckpt)
    elif conf.train.init_from:
        ckpt_path = Path(conf.train.init_from)
        if not ckpt_path.exists():
            raise ConfigError(f"train.init_from={conf.train.init_from} does not exist")
    counts = plan.counts
    summary: dict[str, Any] = {
        "run": plan.run_name,
        "experiment": conf.experiment,
        "sweep": OmegaConf.select(cfg, "sweep.name", default=None) or conf.experiment,
        "status": "running",
        "size": conf.model.name,
        "N": counts.non_embedding,
        "N_total": counts.total,
        "N_with_head": counts.with_head,
        "params": dataclasses.asdict(counts),
        "flops_per_token": plan.fpt,
        "D": budget.tokens,
        "steps": budget.steps,
        "batch_size": conf.train.batch_size,
        "seq_len": conf.model.seq_len,
        "C": budget.flops,
        "budget": {
            "kind": budget.kind,
            "value": budget.value,
            "label": budget.label,
            "convention": budget.convention,
            "target": budget.target,
        },
        "final_train_loss": None,
        "final_val_loss": None,
        "best_val_loss": None,
        "lr": plan.lr,
        "seed": conf.train.seed,
        "corpus": plan.corpus.name,
        "corpus_hash": plan.corpus.content_hash,
        "vocab_size": conf.model.vocab_size,
        "entropy_rate": plan.corpus.entropy_rate,
        "epochs": None,
        "diverged_step": None,
        "error": None,
        "wall_time_s": None,
        "tokens_per_s": None,
        "config_hash": plan.config_hash,
        "tags": {"size": conf.model.name, "budget": budget.label},
        "heldout": False,
        "resumed_from_step": keep_until,
        "init_from": conf.train.init_from,
        # where it ran: a sweep names the process a launcher lost, a cluster the node
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    store.write_config(cfg)
    store.write_summary(summary)
    store.open_metrics(keep_until_step=keep_until if keep_until is not None else -1)

    L.seed_everything(conf.train.seed, workers=True, verbose=False)
    module = LitGPT(conf, conf.model, budget, plan.lr)
    if conf.trainer.compile:
        module.model.compile()
    batches = TokenBatches(
        plan.corpus.train_tokens(), conf.train.batch_size, conf.model.seq_len, conf.train.seed
    )
    val = val_batches(
        plan.corpus, conf.train.eval_tokens, conf.train.batch_size, conf.model.seq_len
    )
    trainer_ref: dict[str, Any] = {}
    stream = _RankSlice(
        BatchStream(batches, start=lambda: trainer_ref["t"].global_step, end=budget.steps),
        trainer_ref,
    )
    recorder = RunRecorder(
        conf,
        budget,
        plan.fpt,
        store,
        val,
        batches.epoch_at,
        conf.model.vocab_size,
        peak_flops(conf),
        plan.run_name,
    )
    wandb_logger = None
    try:
        try:
            wandb_logger = make_wandb_logger(plan, cfg) if zero else None
            status = _fit(plan, module, stream, recorder, wandb_logger, trainer_ref, ckpt_path)
        except Diverged as d:
            status = "diverged"
            summary.update(diverged_step=d.step, error=str(d))
        except Exception as e:
            summary.update(
                status="failed",
                error=f"{type(e).__name__}: {e}",
                wall_time_s=time.perf_counter() - t_start,
            )
            store.write_summary(summary)
            raise
        finally:
            store.close()
        summary.update(
            status=status,
            final_val_loss=recorder.last_val,
            final_train_loss=recorder.last_train,
            best_val_loss=recorder.best_val,
            epochs=batches.epoch_at(budget.steps),
            wall_time_s=time.perf_counter() - t_start,
            tokens_per_s=recorder.tokens_per_s,
        )
        store.write_summary(summary)
        if wandb_logger is not None:
            # the whole run record, so `scaling-fit wandb:<entity>/<project>` can collect
            # from W&B alone exactly what it collects from the run store
            wandb_logger.experiment.summary.update(
                {k: v for k, v in summary.items() if v is not None}
            )
    finally:
        if wandb_logger is not None:
            import wandb

            wandb.finish()  # always: jobs in one process must never share a W&B run
    val = summary["final_val_loss"]
    if zero:
        print(
            f"[{plan.run_name}] {status}: N={counts.non_embedding:,} D={budget.tokens:,} "
            f"C={budget.flops[budget.convention]:.3g} "
            f"val_loss={val if val is None else round(val, 4)} -> {store.root}",
            file=sys.stderr,
        )
        from scaling.sweep import progress_line

        if line := progress_line(store.root):
            print(line, file=sys.stderr, flush=True)
    return summary


class _ReplicaStore(RunStore):
    """The run folder as a DDP rank > 0 sees it: reads work, writes are rank 0's."""

    def write_config(self, cfg: DictConfig) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def open_metrics(self, keep_until_step: int | None) -> None:
        pass

    def log_row(self, row: dict[str, Any]) -> None:
        pass


_DDP_ENV = (
    *("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE"),
    "OMP_NUM_THREADS",  # Lightning sets it (and torch's threads) for the launching process
)


def _is_replica() -> bool:
    """Whether a DDP launcher started this process as a rank > 0 of a run."""
    env = os.environ
    if "RANK" in env:  # torchrun
        return int(env["RANK"]) > 0
    if "LOCAL_RANK" in env:  # Lightning's launcher: children get LOCAL_RANK and NODE_RANK
        return int(env["LOCAL_RANK"]) > 0 or int(env.get("NODE_RANK", 0)) > 0
    if int(env.get("SLURM_NTASKS", 1)) > 1:  # srun / submitit: one task per rank
        return int(env.get("SLURM_PROCID", 0)) > 0
    return False


def _ddp_child_command(local_rank: int) -> tuple[list[str], str]:
    """How DDP rank `local_rank` of this job is started: this one run, never the whole sweep.

    Lightning re-runs sys.argv in each child rank; under `-m` that is the whole multirun, so
    every rank would launch every run of the sweep (Lightning #16694, Hydra #2070). The child
    instead composes exactly this job's overrides in run mode, so its config (and hash) is
    the job's own.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    cmd = [sys.executable, "-m", "scaling.train", f"--config-name={hc.job.config_name}"]
    for src in hc.runtime.config_sources:
        if src.provider == "command-line":
            cmd.append(f"--config-dir={src.path.removeprefix('file://')}")
    cmd += list(hc.overrides.task)
    cmd += [
        f'hydra.run.dir="{hc.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return cmd, get_original_cwd()


@contextlib.contextmanager
def _ddp_job(trainer_ref: dict[str, Any]) -> Any:
    """Leave this process as it was after a DDP run it launched, so the next job can launch.

    Lightning's launcher sets MASTER_PORT, LOCAL_RANK, WORLD_SIZE, ... in os.environ and keeps
    the process group: a second run in the same process (a sweep's next job) would take them as
    a cluster's and wait for ranks that no longer exist.
    """
    import torch
    import torch.distributed as dist
    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launch
    from lightning.pytorch.strategies.launchers import subprocess_script as pl_launch

    if HydraConfig.initialized():
        fabric_launch._hydra_subprocess_cmd = _ddp_child_command
        pl_launch._hydra_subprocess_cmd = _ddp_child_command
    saved = {k: os.environ.get(k) for k in _DDP_ENV}
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)

        launcher = getattr(trainer_ref.get("t") and trainer_ref["t"].strategy, "launcher", None)
        for proc in getattr(launcher, "procs", []):
            try:
                proc.wait(timeout=120)
            except Exception:
                proc.kill()
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fit(
    plan: Plan,
    module: Any,
    stream: Any,
    recorder: Any,
    wandb_logger: Any,
    trainer_ref: dict[str, Any],
    ckpt_path: Path | None,
) -> str:
    """Run the Lightning fit loop to the end of the budget; returns the status."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader

    conf, store, budget, tc = plan.conf, plan.store, plan.budget, plan.conf.trainer
    launches = tc.devices * tc.num_nodes > 1 and not _is_replica()
    with (
        _ddp_job(trainer_ref) if launches else contextlib.nullcontext(),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*IterableDataset.*")
        warnings.filterwarnings("ignore", ".*dirpath has changed.*")  # a wsd branch's init_from
        warnings.filterwarnings("ignore", ".*treespec.*")  # torch 2.13 vs lightning 2.6 internals
        trainer = L.Trainer(
            accelerator=tc.accelerator,
            devices=tc.devices,
            num_nodes=tc.num_nodes,
            strategy=tc.strategy,
            precision=tc.precision.value,
            max_steps=budget.steps,
            max_epochs=-1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=wandb_logger if wandb_logger is not None else False,
            callbacks=[
                recorder,
                ModelCheckpoint(
                    dirpath=store.ckpt_dir,
                    save_last=True,
                    save_top_k=0,
                    every_n_train_steps=conf.train.checkpoint_every,
                ),
            ],
            gradient_clip_val=conf.optim.grad_clip or None,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
            default_root_dir=str(store.root),
        )
        trainer_ref["t"] = trainer
        loader = DataLoader(stream, batch_size=None, num_workers=0)
        trainer.fit(
            module, train_dataloaders=loader, ckpt_path=str(ckpt_path) if ckpt_path else None
        )
        if trainer.global_step < budget.steps:
            raise RuntimeError(f"training stopped at step {trainer.global_step} of {budget.steps}")
        trainer.save_checkpoint(store.last_ckpt, weights_only=False)  # a collective under DDP
    return "completed"


class _RankSlice(IterableDataset):
    """Each data-parallel rank takes its slice of the global batch (identity on one process)."""

    def __init__(self, stream: BatchStream, trainer_ref: dict[str, Any]) -> None:
        super().__init__()
        self.stream, self.trainer_ref = stream, trainer_ref

    def __iter__(self) -> Any:
        t = self.trainer_ref["t"]
        world, rank = t.world_size, t.global_rank
        for x, y in self.stream:
            if world == 1:
                yield x, y
            else:
                b = x.shape[0] // world
                yield x[rank * b : (rank + 1) * b], y[rank * b : (rank + 1) * b]


# an absolute path: the `scaling-train` console script has no package to find "../conf" from
@hydra.main(
    config_path=str(Path(__file__).resolve().parent.parent / "conf"),
    config_name="train",
    version_base="1.3",
)
def main(cfg: DictConfig) -> float:
    """Console entry point; returns the final validation loss (for Hydra sweepers)."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = train(cfg)
    except (ConfigError, DataError) as e:
        if multirun:
            log.error("%s", e)
            return math.nan
        raise SystemExit(f"scaling-train: error: {e}") from None
    except Exception:
        if multirun:  # one failed run never stops the rest of a sweep; it is recorded as failed
            log.exception("run failed")
            return math.nan
        raise
    loss = summary.get("final_val_loss")
    return math.nan if loss is None else float(loss)


if __name__ == "__main__":
    main()
