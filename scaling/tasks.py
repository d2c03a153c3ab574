"""Multiple-choice task evaluation during training (``train.tasks_path``).

The user gives a JSONL file, one item per line: ``{"context": str, "choices": [str, ...],
"answer": int}``. At each evaluation step the callback scores every choice by its loss given the
context (the sum of the choice's token losses, tokens being the corpus's bytes) and logs

    task_bpb   mean over items of the correct choice's loss in bits per byte
    task_acc   fraction of items whose correct choice has the lowest loss

into metrics.csv (rows of their own at the evaluation steps, `contract.METRIC_COLUMNS`)
and W&B (``task/bpb``, ``task/acc``), so a ladder trained here gives `scaling-tasks` the columns
the OLMo ladder gives it (bits per byte of the correct answer, and accuracy).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from contract import WANDB_KEYS
from scaling.config import ConfigError


@dataclass(frozen=True)
class Item:
    """One multiple-choice item, as bytes (the byte corpus's tokens)."""

    context: bytes
    """The text every choice continues."""
    choices: tuple[bytes, ...]
    """The candidate continuations."""
    answer: int
    """Index of the correct choice."""


def _item(line: str, where: str, seq_len: int) -> Item:
    """One JSONL line checked and encoded; ConfigError naming the line and what is wrong."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: not JSON ({err})") from None
    ok = (
        isinstance(raw, dict)
        and isinstance(raw.get("context"), str)
        and isinstance(raw.get("choices"), list)
        and len(raw["choices"]) >= 2
        and all(isinstance(c, str) and c for c in raw["choices"])
        and isinstance(raw.get("answer"), int)
        and 0 <= raw["answer"] < len(raw["choices"])
    )
    if not ok:
        raise ConfigError(
            f'{where}: an item is {{"context": str, "choices": [2 or more non-empty str], '
            f'"answer": index of the correct choice}}; got {line.strip()[:120]}'
        )
    choices = tuple(c.encode() for c in raw["choices"])
    longest = max(len(c) for c in choices)
    if longest >= seq_len:
        raise ConfigError(
            f"{where}: a choice of {longest} bytes does not fit model.seq_len={seq_len} "
            "with at least one context byte"
        )
    return Item(raw["context"].encode(), choices, raw["answer"])


def load_items(path: str | Path, seq_len: int, corpus: str, tokenizer: str) -> list[Item]:
    """The items of a tasks JSONL, checked before any training (ConfigError names the problem)."""
    if corpus == "markov" or tokenizer != "byte":
        raise ConfigError(
            f"train.tasks_path scores text items in byte tokens; data.name={corpus} with "
            f"data.tokenizer={tokenizer} has other tokens (use a text corpus with "
            "data.tokenizer=byte)"
        )
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"train.tasks_path={path} does not exist (a JSONL of items)")
    lines = [(i, ln) for i, ln in enumerate(p.read_text().splitlines(), 1) if ln.strip()]
    if not lines:
        raise ConfigError(f"train.tasks_path={path} holds no items")
    return [_item(ln, f"{path} line {i}", seq_len) for i, ln in lines]


@torch.no_grad()
def choice_losses(
    model: torch.nn.Module, items: list[Item], seq_len: int, batch: int = 64
) -> list[list[float]]:
    """Per item, per choice: the summed loss (nats) of the choice's bytes given the context.

    Each sequence is context + choice, cut from the left to seq_len + 1 bytes; sequences are
    right-padded into batches and only the choice's positions count.
    """
    device = next(model.parameters()).device
    seqs = [(i, j, it.context + c, len(c)) for i, it in enumerate(items)
            for j, c in enumerate(it.choices)]  # fmt: skip
    out = [[math.nan] * len(it.choices) for it in items]
    for start in range(0, len(seqs), batch):
        chunk = seqs[start : start + batch]
        toks = [list(s[-(seq_len + 1) :]) for _, _, s, _ in chunk]
        width = max(len(t) for t in toks) - 1
        x = torch.zeros((len(chunk), width), dtype=torch.long)
        y = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.bool)
        for r, (t, (_, _, _, n)) in enumerate(zip(toks, chunk)):
            x[r, : len(t) - 1] = torch.tensor(t[:-1])
            y[r, : len(t) - 1] = torch.tensor(t[1:])
            mask[r, len(t) - 1 - n : len(t) - 1] = True  # the n choice bytes are the last targets
        logits = model(x.to(device))[0].float()  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.to(device).flatten(), reduction="none")
        summed = (loss.view(len(chunk), width) * mask.to(device)).sum(dim=1).cpu().tolist()
        for (i, j, _, _), v in zip(chunk, summed):
            out[i][j] = v
    return out


def score(losses: list[list[float]], items: list[Item]) -> dict[str, float]:
    """task_bpb (correct choice, bits per byte, mean over items) and task_acc (lowest loss)."""
    bpb = [
        ls[it.answer] / math.log(2) / len(it.choices[it.answer]) for ls, it in zip(losses, items)
    ]
    hits = [min(range(len(ls)), key=ls.__getitem__) == it.answer for ls, it in zip(losses, items)]
    return {"task_bpb": sum(bpb) / len(bpb), "task_acc": sum(hits) / len(hits)}


class TaskEval(L.Callback):
    """Scores the items at every evaluation step and logs task_bpb and task_acc.

    Placed after the RunRecorder and before the checkpoint callback, so its row of step s is on
    disk before the checkpoint of step s, as the recorder's rows are.
    """

    def __init__(
        self,
        items: list[Item],
        eval_at: set[int],
        store: Any,
        tokens_per_step: int,
        seq_len: int,
        flops_per_token: dict[str, float],
    ) -> None:
        self.items, self.eval_at, self.store = items, eval_at, store
        self.tokens_per_step, self.seq_len, self.fpt = tokens_per_step, seq_len, flops_per_token

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """task_bpb and task_acc of the model now (evaluation mode for the scoring)."""
        was_training = model.training
        model.eval()
        try:
            return score(choice_losses(model, self.items, self.seq_len), self.items)
        finally:
            model.train(was_training)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step not in self.eval_at:
            return
        with trainer.precision_plugin.forward_context():
            metrics = self.evaluate(pl_module.model)
        tokens = step * self.tokens_per_step
        flops = {f"flops_{c}": tokens * v for c, v in self.fpt.items()}
        self.store.log_row({"step": step, "tokens": tokens, **flops, **metrics})
        if trainer.logger is not None:
            trainer.logger.log_metrics({WANDB_KEYS[k]: v for k, v in metrics.items()}, step=step)
