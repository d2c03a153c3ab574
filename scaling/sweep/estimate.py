"""Wall-time estimate of a sweep plan: measured model throughput plus fitted overheads."""

from __future__ import annotations

import time
from typing import Any

import torch

from scaling.model import GPT
from scaling.sweep.runs import SweepPlan


def measure_tokens_per_s(model_cfg: Any, batch: int, seq_len: int, threads: int | None) -> float:
    """Training tokens/s of one model on this machine's CPU, timed over ~1 s of AdamW steps."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = GPT(model_cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(0, model_cfg.vocab_size, (batch, seq_len))

        def step() -> None:
            _, loss = model(x, x)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < 1.0:
            step()
            n += 1
        return n * batch * seq_len / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


def estimate(sp: SweepPlan, accelerator: str) -> None:
    """Fill each run's est_s and the sweep's makespan from measured throughputs (CPU only)."""
    if accelerator != "cpu":
        sp.warnings.append(
            f"no wall-time estimate: trainer.accelerator={accelerator} is not timed here"
        )
        return
    rate = {
        size: measure_tokens_per_s(model_cfg, batch, seq_len, sp.threads)
        for size, (model_cfg, batch, seq_len) in sp.shapes.items()
    }
    for r in sp.runs:
        # an evaluation is a forward pass: ~1/3 of a training step's FLOPs
        r.est_s = (
            (r.D + r.eval_tokens / 3) / rate[r.size]
            + r.steps * sp.spec.step_overhead_s
            + sp.spec.overhead_s
        )
    todo = sp.to_launch
    total = 0.0
    for stage in sorted({r.stage for r in todo}):
        slots = [0.0] * min(sp.parallel, max(1, sum(r.stage == stage for r in todo)))
        for r in (r for r in todo if r.stage == stage):
            i = slots.index(min(slots))
            slots[i] += r.est_s or 0.0
        total += max(slots)
    # start-up (imports) is paid once per worker process, or once per run under submitit
    starts = len(todo) / max(1, sp.parallel) if sp.process_per_run else 1
    sp.makespan_s = total + sp.spec.startup_s * starts if todo else 0.0


def fmt_time(s: float | None) -> str:
    """Seconds as '45s', '12m', '3.2h'."""
    if s is None:
        return "?"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"
