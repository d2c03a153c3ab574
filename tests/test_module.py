"""The LightningModule and the run recorder: no host sync between logging steps."""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch.overrides import TorchFunctionMode

from scaling import module
from scaling.module import LitGPT, eval_steps
from scaling.train import train

# Tensor methods that read a value back to the host: a device synchronisation on a GPU
SYNCS = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"}


class SyncCounter(TorchFunctionMode):
    """Counts host reads of tensor values per optimiser step (set by the training step)."""

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.per_step: Counter[int] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if getattr(func, "__name__", "") in SYNCS:
            self.per_step[self.step] += 1
        return func(*args, **(kwargs or {}))


def test_no_host_sync_between_logging_steps(tiny_cfg, monkeypatch) -> None:
    """Loss, throughput and divergence checks read the device once per row, not per step."""
    counter = SyncCounter()
    step_fn = LitGPT.training_step

    def counted_step(self: LitGPT, batch: Any, batch_idx: int) -> Any:
        counter.step = self.trainer.global_step + 1  # the optimiser step this batch makes
        return step_fn(self, batch, batch_idx)

    monkeypatch.setattr(module.LitGPT, "training_step", counted_step)
    with counter:
        train(tiny_cfg("train.steps=20", "train.log_every=5", "train.n_evals=3"))
    rows = {s for s in range(1, 21) if s % 5 == 0} | set(eval_steps(20, 3))
    synced = {s for s in counter.per_step if s > 0}
    assert rows & synced == rows  # the counter sees the reads that logging makes
    assert synced <= rows, f"host syncs at non-logging steps {sorted(synced - rows)}"
