"""The Hydra entry point: plan -> decide (skip, resume, move aside) -> fit -> record.

    scaling-train model=1M train.tokens=1xC            # 20 tokens per parameter
    scaling-train model=200k train.flops=1e13          # FLOPs under train.flops_convention
    scaling-train model=100k train.steps=500 trainer=gpu

Everything a scaling-law analysis needs lands in runs/<experiment>/<run-name>/ (the source of
truth, see docs/formats.md); W&B is a view of it. One process at a time holds a run folder (an
OS lock): a second launch of the same run skips it and names the holder.
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
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import IterableDataset

from contract import (
    WANDB_KEYS,
    BudgetRecord,
    RunSummary,
    Status,
    SummaryError,
    resolve_wandb_mode,
)
from scaling.budget import Budget, resolve
from scaling.config import Config, ConfigError, register_configs, validate
from scaling.data import (
    BatchStream,
    Corpus,
    DataError,
    TokenBatches,
    check_corpus_fits,
    load_corpus,
    train_parts,
    val_batches,
    val_tokens_per_byte,
)
from scaling.family import flops_per_token, param_counts
from scaling.progress import progress_line
from scaling.store import RunFolderError, RunStore, config_differences, config_hash, fsync_file

log = logging.getLogger("scaling.train")
register_configs()


def _quiet_lightning() -> None:
    """Lightning's per-Trainer banners ("GPU available: False", tips) repeat once per run of a
    sweep; our one-line progress and result lines say what matters. Call after importing it."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
    cfg: DictConfig  # the composed config, compared with a stored one when the hashes differ
    tasks: list[Any] | None = None  # train.tasks_path's items (scaling.tasks.Item)


class Outcome(str, Enum):
    """What one launch of a run did."""

    TRAINED = "trained"  # trained (fresh or resumed) to its end: summary.status says how
    ENDED = "ended"  # already completed or diverged: skipped, the stored summary returned
    LOCKED = "locked"  # another process holds the run folder: skipped, `holder` names it


@dataclasses.dataclass
class TrainResult:
    """The result of `train`: what the launch did and the run's record."""

    outcome: Outcome
    """Trained, or skipped because the run had ended or another process holds it."""
    summary: RunSummary | None
    """The run's record after this launch; None when skipped as locked."""
    holder: str | None = None
    """Who holds the run folder ("host h pid p"), for Outcome.LOCKED."""

    @property
    def skipped(self) -> bool:
        """Whether this launch left the run as it was."""
        return self.outcome is not Outcome.TRAINED


def peak_lr(conf: Config, n_params: int) -> float:
    """The peak LR for this size: lr_table entry, else the rule, else optim.lr."""
    o = conf.optim
    if conf.model.name in o.lr_table:
        return float(o.lr_table[conf.model.name])
    if o.lr_rule_exponent is not None:
        try:
            return o.lr * (o.lr_rule_ref_params / n_params) ** o.lr_rule_exponent
        except OverflowError:
            return math.inf
    return o.lr


def _check_peak_lr(conf: Config, lr: float, n_params: int) -> None:
    """Refuse a peak LR that is not a finite number > 0 (a rule can overflow or underflow)."""
    if math.isfinite(lr) and lr > 0:
        return
    o = conf.optim
    raise ConfigError(
        f"the peak learning rate of model {conf.model.name} (N={n_params}) is {lr}: optim.lr="
        f"{o.lr} x (optim.lr_rule_ref_params={o.lr_rule_ref_params:g} / N)"
        f"^optim.lr_rule_exponent={o.lr_rule_exponent}; it must be a finite number > 0"
    )


def plan_run(cfg: DictConfig) -> Plan:
    """Validate the config, prepare the corpus, resolve the budget; no training."""
    conf = validate(cfg)
    if conf.train.checkpoint_every == 0:
        log.warning(
            "train.checkpoint_every=0 saves no checkpoint: an interrupted run cannot resume "
            "and restarts from step 0"
        )
    tasks = None
    if conf.train.tasks_path:  # checked before the corpus is prepared; imports torch, so here
        from scaling.tasks import load_items

        d = conf.data
        tasks = load_items(conf.train.tasks_path, conf.model.seq_len, d.name, d.tokenizer.value)
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
    check_corpus_fits(
        corpus, conf.train.batch_size, conf.model.seq_len, conf.train.eval_tokens,
        conf.data.unique_tokens,
    )  # fmt: skip
    if corpus.n_val < conf.train.eval_tokens // 4:
        log.warning("validation split of %s is small (%d tokens)", corpus.name, corpus.n_val)
    lr = peak_lr(conf, counts.non_embedding)
    _check_peak_lr(conf, lr, counts.non_embedding)
    name = conf.run_name or f"{conf.model.name}-{budget.label}"
    store = RunStore(Path(conf.runs_dir) / conf.experiment / name)
    return Plan(
        conf,
        corpus,
        budget,
        name,
        store,
        lr,
        counts,
        fpt,
        config_hash(cfg),
        cfg,
        tasks,
    )


def config_changes(plan: Plan, stored_hash: str | None) -> list[str]:
    """How this config differs from the run its folder holds ([]: the same run, skip or resume).

    Equal hashes are the same run; otherwise the stored config.yaml is compared with this
    config, and a run stored before a setting existed (or under the older hash rule) is the same
    run when the only differences are settings it lacks whose value here is the default
    (docs/formats.md). The sweep's plan and the launch both decide through this.
    """
    if stored_hash is None or stored_hash == plan.config_hash:
        return []
    if changes := config_differences(plan.store.config_path, plan.cfg):
        return changes
    print(
        f"[{plan.run_name}] stored config hash {stored_hash} != {plan.config_hash}, but the "
        "stored config differs only by settings added since, at their defaults: the same run",
        file=sys.stderr,
    )
    return []


def make_wandb_logger(plan: Plan, cfg: DictConfig) -> Any:
    """A WandbLogger in the experiment's group, with tokens/FLOPs as x-axes; None if disabled."""
    wc = plan.conf.logger.wandb
    mode = resolve_wandb_mode(wc.mode.value)
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
        logger = WandbLogger(
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
        # WandbLogger always hands wandb.init `anonymous=None`; wandb >= 0.19 warns "the
        # anonymous setting has no effect" for any value given, so leave it unset
        logger._wandb_init.pop("anonymous", None)
        return logger

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
    run.define_metric("flops")  # under the budget's convention
    for key, wkey in WANDB_KEYS.items():  # every metrics.csv column, plotted against tokens
        if key not in ("step", "tokens"):
            run.define_metric(wkey, step_metric="tokens")
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


# ---- decide: skip, resume, move aside ----


@dataclasses.dataclass
class _Start:
    """Where a launch that trains starts from."""

    ckpt_path: Path | None  # a checkpoint to restore (resume or train.init_from), else None
    resumed_from: int | None  # the step a resume continues from (metrics rows kept up to it)


def _ckpt_step(path: Path) -> int:
    """The step of a checkpoint, read without running code from it (weights_only)."""
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def _resume_point(store: RunStore, run_name: str) -> tuple[Path, int] | None:
    """The newest readable checkpoint (last, then prev) and its step; unreadable ones moved aside."""
    for path in (store.last_ckpt, store.prev_ckpt):
        if not path.exists():
            continue
        try:
            return path, _ckpt_step(path)
        # whatever a damaged or foreign file raises (EOFError, RuntimeError from the zip
        # reader, UnpicklingError from weights_only, a missing key), it cannot be resumed
        except Exception as e:
            aside = store.quarantine(path)
            print(
                f"[{run_name}] unreadable checkpoint {path} ({type(e).__name__}) moved to {aside}",
                file=sys.stderr,
            )
    return None


def decide(plan: Plan) -> RunSummary | _Start:
    """The stored summary if the run has ended (skip), else where this launch starts from."""
    store, conf = plan.store, plan.conf
    try:
        prev = store.read_summary()
    except SummaryError as e:
        raise SummaryError(e.path, f"{e.reason}; move the run folder aside to rerun it") from None
    if prev is not None and (changes := config_changes(plan, prev.config_hash)):
        if prev.status is not Status.FAILED:
            raise ConfigError(
                f"{store.root} already holds a run ({prev.status.value}) with a different "
                f"config ({'; '.join(changes[:3])}); choose another experiment= or run_name=, "
                "or move that folder aside"
            )
        # a failed run relaunched with a corrected config (a precision, a batch that fits in
        # memory): keep the failed record beside it, start afresh
        aside = store.move_aside("failed")
        print(f"[{plan.run_name}] the failed run with another config -> {aside}", file=sys.stderr)
        prev = None
    if prev is not None and prev.status.ended:
        print(f"[{plan.run_name}] already {prev.status.value}: skipped", file=sys.stderr)
        return prev
    if prev is not None and conf.train.resume and (point := _resume_point(store, plan.run_name)):
        return _Start(*point)
    if conf.train.init_from:
        path = Path(conf.train.init_from)
        if not path.exists():
            raise ConfigError(f"train.init_from={conf.train.init_from} does not exist")
        return _Start(path, None)
    return _Start(None, None)


# ---- record ----


def new_summary(plan: Plan, cfg: DictConfig, resumed_from: int | None) -> RunSummary:
    """The run's record as a launch starts it (status running)."""
    conf, b, counts = plan.conf, plan.budget, plan.counts
    return RunSummary(
        run=plan.run_name,
        experiment=conf.experiment,
        sweep=OmegaConf.select(cfg, "sweep.name", default=None) or conf.experiment,
        status=Status.RUNNING,
        size=conf.model.name,
        N=counts.non_embedding,
        N_total=counts.total,
        N_with_head=counts.with_head,
        flops_per_token=dict(plan.fpt),
        D=b.tokens,
        steps=b.steps,
        batch_size=conf.train.batch_size,
        seq_len=conf.model.seq_len,
        C=dict(b.flops),
        budget=BudgetRecord(b.kind, b.value, b.label, b.convention, b.target),
        lr=plan.lr,
        parametrization=conf.model.parametrization.value,
        base_width=conf.model.base_width,
        seed=conf.train.seed,
        corpus=plan.corpus.name,
        corpus_hash=plan.corpus.content_hash,
        vocab_size=conf.model.vocab_size,
        entropy_rate=plan.corpus.entropy_rate,
        config_hash=plan.config_hash,
        tags={"size": conf.model.name, "budget": b.label},
        resumed_from_step=resumed_from,
        init_from=conf.train.init_from,
        # where it ran: a sweep names the process a launcher lost, a cluster the node
        host=socket.gethostname(),
        pid=os.getpid(),
    )


def _report(plan: Plan, s: RunSummary) -> None:
    """The one result line of a run, then the sweep's progress when a sweep launched it."""
    b, val = plan.budget, s.final_val_loss
    print(
        f"[{plan.run_name}] {s.status.value}: N={s.N:,} D={s.D:,} "
        f"C={b.flops[b.convention]:.3g} "
        f"val_loss={val if val is None else round(val, 4)} -> {plan.store.root}",
        file=sys.stderr,
    )
    if line := progress_line(plan.store.root):
        print(line, file=sys.stderr, flush=True)


# ---- the hub ----


def train(cfg: DictConfig) -> TrainResult:
    """Train one run (or skip it: ended, or held by another process) and return the result."""
    t_start = time.perf_counter()
    plan = plan_run(cfg)
    init = plan.conf.train.init_from
    if init and not Path(init).exists() and not plan.store.root.exists():
        # refused before the lock creates the run folder (a WSD branch is planned before its
        # stable run writes the checkpoint, so plan_run cannot check this)
        raise ConfigError(f"train.init_from={init} does not exist")
    if _is_replica():  # a DDP rank > 0 follows rank 0, which holds the folder and writes it
        plan.store = _ReplicaStore(plan.store.root)
        return _launch(plan, cfg, t_start)
    with plan.store.lock() as holder:
        if holder is not None:
            print(f"[{plan.run_name}] held by {holder}: skipped", file=sys.stderr)
            return TrainResult(Outcome.LOCKED, None, holder)
        return _launch(plan, cfg, t_start)


def _launch(plan: Plan, cfg: DictConfig, t_start: float) -> TrainResult:
    """decide -> fit -> record, with the run folder held."""
    start = decide(plan)
    if isinstance(start, RunSummary):
        return TrainResult(Outcome.ENDED, start)
    store = plan.store
    summary = new_summary(plan, cfg, start.resumed_from)
    store.write_config(cfg)
    store.write_summary(summary)
    keep = start.resumed_from if start.resumed_from is not None else -1
    if bad := store.open_metrics(keep_until_step=keep):
        print(
            f"[{plan.run_name}] {store.metrics_path}: dropped {len(bad)} rows whose step is "
            f"not a whole number ({', '.join(repr(v) for v in bad[:5])})",
            file=sys.stderr,
        )
    wandb_logger = None
    try:
        with _failure_recorded(store, summary, t_start):
            wandb_logger = make_wandb_logger(plan, cfg) if not _is_replica() else None
            summary = _fit_and_record(plan, summary, start.ckpt_path, wandb_logger, t_start)
    finally:
        store.close()
        if wandb_logger is not None:
            import wandb

            wandb.finish()  # always: jobs in one process must never share a W&B run
    if not _is_replica():
        _report(plan, summary)
    return TrainResult(Outcome.TRAINED, summary)


@contextlib.contextmanager
def _failure_recorded(store: RunStore, summary: RunSummary, t_start: float) -> Iterator[None]:
    """Store the run as failed (with the error) if the block raises, then re-raise."""
    try:
        yield
    except Exception as e:
        failed = dataclasses.replace(
            summary,
            status=Status.FAILED,
            error=f"{type(e).__name__}: {e}",
            wall_time_s=time.perf_counter() - t_start,
        )
        store.write_summary(failed)
        raise


def _fit_and_record(
    plan: Plan, summary: RunSummary, ckpt_path: Path | None, wandb_logger: Any, t_start: float
) -> RunSummary:
    """Fit to the end of the budget and store how it ended (completed or diverged)."""
    import lightning as L
    import torch

    from scaling.module import Diverged, LitGPT, RunRecorder, eval_steps, peak_flops
    from scaling.tasks import TaskEval

    _quiet_lightning()
    conf, store, budget = plan.conf, plan.store, plan.budget
    if conf.trainer.num_threads:
        torch.set_num_threads(conf.trainer.num_threads)
    L.seed_everything(conf.train.seed, workers=True, verbose=False)
    module = LitGPT(conf, conf.model, budget, plan.lr)
    if conf.trainer.compile:
        module.model.compile()
    batches = TokenBatches(
        train_parts(plan.corpus, conf.data.unique_tokens),
        conf.train.batch_size,
        conf.model.seq_len,
        conf.train.seed,
    )
    val = val_batches(
        plan.corpus, conf.train.eval_tokens, conf.train.batch_size, conf.model.seq_len
    )
    recorder = RunRecorder(
        conf, budget, plan.fpt, store, val, batches.epoch_at, conf.model.vocab_size,
        peak_flops(conf), plan.run_name,
    )  # fmt: skip
    recorder.val_tokens_per_byte = tpb = val_tokens_per_byte(plan.corpus)
    extra = []
    if plan.tasks:
        per_step = conf.train.batch_size * conf.model.seq_len
        evals = set(eval_steps(budget.steps, conf.train.n_evals))
        extra.append(TaskEval(plan.tasks, evals, store, per_step, conf.model.seq_len, plan.fpt))
    try:
        _fit(plan, module, batches, recorder, wandb_logger, ckpt_path, extra)
        status, error, diverged_step = Status.COMPLETED, None, None
    except Diverged as d:
        status, error, diverged_step = Status.DIVERGED, str(d), d.step
    summary = dataclasses.replace(
        summary,
        status=status,
        error=error,
        diverged_step=diverged_step,
        final_val_loss=recorder.last_val,
        final_train_loss=recorder.last_train,
        best_val_loss=recorder.best_val,
        epochs=batches.epoch_at(budget.steps),
        unique_tokens=batches.n_windows * conf.model.seq_len,
        val_tokens_per_byte=tpb,
        final_val_bpb=_bpb(recorder.last_val, tpb),
        best_val_bpb=_bpb(recorder.best_val, tpb),
        wall_time_s=time.perf_counter() - t_start,
        tokens_per_s=recorder.tokens_per_s,
    )
    store.write_summary(summary)
    if wandb_logger is not None:
        # the whole run record, so `scaling-fit wandb:<entity>/<project>` can collect
        # from W&B alone exactly what it collects from the run store
        record = {k: v for k, v in summary.to_dict().items() if v is not None}
        wandb_logger.experiment.summary.update(record)
    return summary


def _bpb(nats: float | None, tokens_per_byte: float | None) -> float | None:
    """A loss in nats per token as bits per byte (None when either is unknown)."""
    if nats is None or tokens_per_byte is None:
        return None
    return nats * tokens_per_byte / math.log(2)


# ---- fit: the Lightning loop, checkpoints, DDP ----


class _ReplicaStore(RunStore):
    """The run folder as a DDP rank > 0 sees it: reads work, writes are rank 0's."""

    def write_config(self, cfg: DictConfig) -> None:
        pass

    def write_summary(self, summary: RunSummary) -> None:
        pass

    def open_metrics(self, keep_until_step: int | None) -> list[str]:
        return []

    def log_row(self, row: dict[str, Any]) -> None:
        pass

    def quarantine(self, path: Path) -> Path:
        return path

    def move_aside(self, tag: str) -> Path:
        return self.root


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
def _ddp_env() -> Iterator[None]:
    """Leave this process as it was after a DDP run it launched, so the next job can launch.

    Lightning's launcher sets MASTER_PORT, LOCAL_RANK, WORLD_SIZE, ... in os.environ and keeps
    the process group: a second run in the same process (a sweep's next job) would take them as
    a cluster's and wait for ranks that no longer exist.
    """
    import torch
    import torch.distributed as dist
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
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _reap_children(trainer: Any) -> None:
    """Wait for (or kill) the DDP child ranks this process launched."""
    for proc in getattr(getattr(trainer.strategy, "launcher", None), "procs", []):
        try:
            proc.wait(timeout=120)
        except Exception:
            proc.kill()


def _last_checkpoint(store: RunStore, every: int) -> Any:
    """A Lightning Checkpoint callback: last.ckpt every `every` steps, the one before kept."""
    from lightning.pytorch.callbacks import Checkpoint

    class LastCheckpoint(Checkpoint):
        """Saves last.ckpt (fsynced), keeping the previous one as prev.ckpt.

        A Checkpoint subclass, so Lightning runs it after every other callback: the metrics
        rows and evaluations of step s are on disk before the checkpoint of step s.
        """

        saved_step = -1

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if every and trainer.global_step % every == 0:
                self.save(trainer)

        def on_train_end(self, trainer: Any, *args: Any) -> None:
            # inside fit, while every DDP rank is still in the process group: the final save
            # is a collective, so it cannot wait until rank 0 reaps its child ranks
            self.save(trainer)

        def save(self, trainer: Any) -> None:
            if trainer.global_step == self.saved_step:
                return
            if trainer.is_global_zero:
                store.rotate_checkpoint()
            trainer.save_checkpoint(store.last_ckpt)  # a collective under DDP
            if trainer.is_global_zero:
                fsync_file(store.last_ckpt)
            self.saved_step = trainer.global_step

    return LastCheckpoint()


def _fit(
    plan: Plan,
    module: Any,
    batches: TokenBatches,
    recorder: Any,
    wandb_logger: Any,
    ckpt_path: Path | None,
    extra: list[Any] | None = None,
) -> None:
    """Run the Lightning fit loop to the end of the budget (Diverged if the loss blows up)."""
    import lightning as L
    from torch.utils.data import DataLoader

    conf, store, budget, tc = plan.conf, plan.store, plan.budget, plan.conf.trainer
    launches = tc.devices * tc.num_nodes > 1 and not _is_replica()
    ckpt = _last_checkpoint(store, conf.train.checkpoint_every)
    with _ddp_env() if launches else contextlib.nullcontext(), warnings.catch_warnings():
        # Lightning's PossibleUserWarning on machines with > 2 cores: num_workers=0 is
        # deliberate (a batch costs microseconds, and a worker would see a stale start step)
        warnings.filterwarnings("ignore", ".*does not have many workers.*", UserWarning)
        # torch 2.13 deprecates LeafSpec, which Lightning 2.6's _pytree still builds every fit
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
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
            callbacks=[recorder, *(extra or []), ckpt],
            gradient_clip_val=conf.optim.grad_clip or None,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
            default_root_dir=str(store.root),
        )
        stream = _RankSlice(
            BatchStream(batches, start=lambda: trainer.global_step, end=budget.steps), trainer
        )
        loader = DataLoader(stream, batch_size=None, num_workers=0)
        try:
            trainer.fit(
                module,
                train_dataloaders=loader,
                ckpt_path=str(ckpt_path) if ckpt_path else None,
                weights_only=True,  # a checkpoint never runs code (see _ckpt_step)
            )
        finally:
            if launches:
                _reap_children(trainer)
        if trainer.global_step < budget.steps:
            raise RuntimeError(f"training stopped at step {trainer.global_step} of {budget.steps}")


class _RankSlice(IterableDataset):
    """Each data-parallel rank takes its slice of the global batch (identity on one process)."""

    def __init__(self, stream: BatchStream, trainer: Any) -> None:
        super().__init__()
        self.stream, self.trainer = stream, trainer

    def __iter__(self) -> Any:
        world, rank = self.trainer.world_size, self.trainer.global_rank
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
def main(cfg: DictConfig) -> TrainResult | None:
    """Console entry point; returns what the launch did (None for a failed job of a sweep)."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return train(cfg)
    except (ConfigError, DataError, SummaryError, RunFolderError) as e:
        if multirun:
            log.error("%s", e)
            return None
        raise SystemExit(f"scaling-train: error: {e}") from None
    except Exception:
        if multirun:  # one failed run never stops the rest of a sweep; it is recorded as failed
            log.exception("run failed")
            return None
        raise


if __name__ == "__main__":
    main()
