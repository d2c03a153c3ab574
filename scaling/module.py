"""The LightningModule (loss, optimiser, LR schedule) and the callback that records a run.

What is logged, and when:
- every `train.log_every` steps: train/loss (mean over the window), lr, tokens, flops under
  each convention, tokens/s and MFU -> metrics.csv and W&B;
- at ~`train.n_evals` steps spaced evenly in log(tokens), and at the last step: val/loss on
  the same fixed held-out batches for every run of a corpus.
The x-axes are tokens and FLOPs, never bare steps: that is what a scaling law is a function of.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from contract import WANDB_KEYS
from contract.schedule import Schedule, trainer_schedule
from scaling.budget import CONVENTIONS, Budget
from scaling.config import Config, ModelConfig, ScheduleConfig
from scaling.model import GPT
from scaling.store import RunStore


class Diverged(RuntimeError):
    """The training loss became non-finite or exploded."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training diverged at step {step}: loss {loss}")
        self.step = step
        self.loss = loss


def lr_multiplier(step: int, total_steps: int, sched: ScheduleConfig) -> float:
    """LR multiplier (of the peak) at optimiser step `step` of a `total_steps` run."""
    return run_schedule(total_steps, sched).multiplier(step)


def run_schedule(total_steps: int, sched: ScheduleConfig) -> Schedule:
    """The schedule (``contract.schedule``, shared with analysis/) a run trains with."""
    return trainer_schedule(
        sched.kind.value,
        total_steps,
        warmup_frac=sched.warmup_frac,
        warmup_max=sched.warmup_max,
        final_lr_frac=sched.final_lr_frac,
        cooldown_frac=sched.cooldown_frac,
        cooldown_shape=sched.cooldown_shape.value,
        wsd_total_steps=sched.wsd_total_steps,
    )


def eval_steps(total_steps: int, n_evals: int) -> list[int]:
    """~n_evals steps spaced evenly in log(tokens), always ending at the last step."""
    pts = np.unique(np.round(np.geomspace(1, total_steps, n_evals)).astype(int))
    return sorted(set(pts.tolist()) | {total_steps})


@functools.cache
def measured_cpu_peak_flops() -> float:
    """fp32 matmul FLOP/s of this CPU, measured once per process (the MFU denominator)."""
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    reps, t0 = 8, time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


_GPU_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(cfg: Config) -> float | None:
    """Peak FLOP/s for MFU: configured, else a table (GPU bf16) or a measurement (CPU)."""
    if cfg.trainer.peak_flops:
        return cfg.trainer.peak_flops
    if cfg.trainer.accelerator == "cpu":
        return measured_cpu_peak_flops()
    if torch.cuda.is_available() and "bf16" in cfg.trainer.precision.value:
        name = torch.cuda.get_device_name()
        return next((v for k, v in _GPU_BF16_PEAK.items() if k in name), None)
    return None


class LitGPT(L.LightningModule):
    """One family member trained for one budget."""

    def __init__(self, cfg: Config, model_cfg: ModelConfig, budget: Budget, lr: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.budget = budget
        self.lr = lr
        self.model = GPT(model_cfg)
        # the training losses of the current logging window, detached on the device: read in
        # one sync per log row (no per-step .item()), and still step-exact for divergence
        self.window: list[Tensor] = []

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)[0]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (B, T) each
        _, loss = self.model(x, y)
        self.window.append(loss.detach())
        return loss

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        # weight decay on matrices only; muP's hidden matrices in a group of their own LR
        groups = self.model.optim_groups(self.lr, o.weight_decay)
        opt = torch.optim.AdamW(
            groups, lr=self.lr, betas=tuple(o.betas), eps=o.eps, fused=o.fused or None
        )
        total, sched = self.budget.steps, self.cfg.schedule
        lam = functools.partial(lr_multiplier, total_steps=total, sched=sched)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lam)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class RunRecorder(L.Callback):
    """Writes metrics rows, runs the evaluations, detects divergence, prints progress.

    A Callback rather than module hooks because Lightning runs ModelCheckpoint after every
    other callback: rows and evals of step s are on disk before the checkpoint of step s, so a
    resumed run continues the CSV exactly where the checkpoint left it.
    """

    def __init__(
        self,
        cfg: Config,
        budget: Budget,
        flops_per_token: dict[str, float],
        store: RunStore,
        val_data: list[tuple[Tensor, Tensor]],
        epoch_at: Any,
        vocab_size: int,
        peak: float | None,
        run_name: str,
    ) -> None:
        self.cfg, self.budget, self.fpt, self.store = cfg, budget, flops_per_token, store
        self.val_data = val_data
        self.epoch_at = epoch_at
        self.evals = set(eval_steps(budget.steps, cfg.train.n_evals))
        self.ckpt_steps = set(cfg.train.checkpoint_steps)
        self.limit = cfg.train.divergence_factor * math.log(vocab_size)
        self.peak = peak
        self.run_name = run_name
        self.tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
        self.last_val: float | None = None
        self.last_train: float | None = None
        self.best_val: float | None = None
        self.val_tokens_per_byte: float | None = None  # set by the trainer when known
        self._t_window = self._t_progress = time.perf_counter()
        self._s_window = 0
        self.tokens_per_s: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._s_window = trainer.global_step
        self._t_window = self._t_progress = time.perf_counter()

    def _base_row(self, step: int) -> dict[str, Any]:
        tokens = step * self.tokens_per_step
        row: dict[str, Any] = {
            "step": step,
            "tokens": tokens,
            "epoch": round(self.epoch_at(step), 6),
        }
        for c in CONVENTIONS:
            row[f"flops_{c}"] = tokens * self.fpt[c]
        return row

    def _log_wandb(self, trainer: L.Trainer, row: dict[str, Any]) -> None:
        if trainer.logger is None:
            return
        # every metrics.csv column under its W&B key (contract.WANDB_KEYS), the step aside
        m = {wkey: row[key] for key, wkey in WANDB_KEYS.items() if row.get(key) is not None}
        del m[WANDB_KEYS["step"]]  # Lightning's WandbLogger logs it from `step=`
        m["flops"] = row[f"flops_{self.budget.convention}"]
        trainer.logger.log_metrics(m, step=row["step"])

    @torch.no_grad()
    def _validate(self, trainer: L.Trainer, pl_module: LitGPT) -> float:
        model = pl_module.model
        model.eval()
        total, n = 0.0, 0
        with trainer.precision_plugin.forward_context():
            for x, y in self.val_data:  # x, y: (B, T); the last batch may be smaller
                _, loss = model(x.to(pl_module.device), y.to(pl_module.device))
                total += loss.item() * x.shape[0]
                n += x.shape[0]
        model.train()
        return total / n  # mean over windows

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        assert isinstance(pl_module, LitGPT)
        step = trainer.global_step  # optimiser steps done, including this one
        last = step >= self.budget.steps
        row: dict[str, Any] | None = None
        if step % self.cfg.train.log_every == 0 or last or step in self.evals:
            losses = (  # (W,) the window's per-step losses, W = steps since the last row
                torch.stack(pl_module.window).float()
                if pl_module.window
                else torch.full((1,), float("nan"), device=pl_module.device)
            )
            if trainer.world_size > 1:  # every rank must see the same losses to stop together
                losses = trainer.strategy.reduce(losses, reduce_op="mean")
            per_step = losses.cpu().tolist()  # the one host sync of the window
            pl_module.window = []
            loss = sum(per_step) / len(per_step)
            now = time.perf_counter()
            if step > self._s_window:
                self.tokens_per_s = (
                    (step - self._s_window) * self.tokens_per_step / (now - self._t_window)
                )
            self._t_window, self._s_window = now, step
            row = self._base_row(step)
            row.update(
                train_loss=loss,
                lr=trainer.optimizers[0].param_groups[0]["lr"],
                tokens_per_s=self.tokens_per_s,
            )
            if self.peak and self.tokens_per_s:
                row["mfu"] = self.tokens_per_s * self.fpt["chinchilla"] / self.peak
            bad = [i for i, v in enumerate(per_step) if not math.isfinite(v) or v > self.limit]
            if bad:  # the exact step of the first bad loss, and the row kept in both logs
                self.store.log_row(row)
                self._log_wandb(trainer, row)
                raise Diverged(step - len(per_step) + 1 + bad[0], per_step[bad[0]])
            self.last_train = loss
        if step in self.evals:
            val = self._validate(trainer, pl_module)
            if trainer.world_size > 1:  # rank 0's value, so all ranks agree on divergence
                val = trainer.strategy.broadcast(val, src=0)
            row = row or self._base_row(step)
            row["val_loss"] = val
            if self.val_tokens_per_byte:  # bits per byte of the validation text
                row["val_bpb"] = val * self.val_tokens_per_byte / math.log(2)
            self.last_val = val
            self.best_val = val if self.best_val is None else min(self.best_val, val)
            if not math.isfinite(val):
                self.store.log_row(row)
                self._log_wandb(trainer, row)
                raise Diverged(step, val)
        if row is not None:
            self.store.log_row(row)
            self._log_wandb(trainer, row)
        if step in self.ckpt_steps:
            trainer.save_checkpoint(self.store.ckpt_dir / f"step{step}.ckpt", weights_only=False)
        if trainer.is_global_zero:
            self._progress(step, last)

    def _progress(self, step: int, last: bool) -> None:
        every = self.cfg.trainer.progress_every_s
        now = time.perf_counter()
        if not every or (now - self._t_progress < every and not last):
            return
        self._t_progress = now
        rate = self.tokens_per_s or 0.0
        left = (self.budget.steps - step) * self.tokens_per_step / rate if rate else float("nan")
        val = f" val {self.last_val:.4f}" if self.last_val is not None else ""
        print(
            f"[{self.run_name}] step {step}/{self.budget.steps} "
            f"loss {self.last_train if self.last_train is not None else float('nan'):.4f}{val} "
            f"{rate:,.0f} tok/s, {left:.0f}s left",
            file=sys.stderr,
            flush=True,
        )
