"""Synthetic scaling-law data with a known truth, and a tiny run store, for the analysis tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from contract import BudgetRecord, RunSummary, Status, write_summary

# Chinchilla form with alpha != beta so that a = beta / (alpha + beta) = 0.4516 is not 1/2.
TRUE = {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
TRUE_A = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
BUDGETS = tuple(float(c) for c in np.logspace(17, 20, 7))
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"  # see its README


def true_loss(n, d, p=TRUE):
    """The noiseless Chinchilla loss."""
    return (
        p["E"]
        + p["A"] / np.asarray(n, float) ** p["alpha"]
        + p["B"] / np.asarray(d, float) ** p["beta"]
    )


def true_n_opt(c, p=TRUE):
    """N_opt(C) of the true law under C = 6 N D."""
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    return g * (np.asarray(c, float) / 6) ** (p["beta"] / (p["alpha"] + p["beta"]))


def synthetic(
    budgets: tuple[float, ...] = BUDGETS,
    sizes_per_budget: int = 7,
    noise: float = 0.005,
    seed: int = 0,
    curve_points: int = 12,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IsoFLOP runs around the true optimum of each budget, with learning curves.

    Each run's curve follows the law at its tokens so far (as if every point were the end of a
    run of that length), with multiplicative log-normal noise.
    """
    rng = np.random.default_rng(seed)
    runs, curves = [], []
    for c in budgets:
        for n in true_n_opt(c) * np.logspace(-1, 1, sizes_per_budget):
            n = float(np.round(n))
            d = c / (6 * n)
            name = f"{n:.3g}-C{c:.2g}"
            frac = np.logspace(-1.5, 0, curve_points)
            loss = true_loss(n, d * frac) * np.exp(noise * rng.standard_normal(frac.size))
            curves.append(
                pd.DataFrame(
                    {
                        "run": name,
                        "N": n,
                        "tokens": d * frac,
                        "C": c * frac,
                        "loss": loss,
                        "step": np.arange(1, frac.size + 1) * 100,
                    }
                )  # fmt: skip
            )
            runs.append({"run": name, "N": n, "D": d, "C": c, "loss": float(loss[-1])})
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


def run_summary(r, status: str = "completed") -> RunSummary:
    """The run record (summary.json) of one synthetic run ``r`` (run, N, D, C, loss)."""
    n, d, c = int(r.N), int(round(r.D)), float(r.C)
    conv = {"kaplan": 0.95, "6n": 1.0, "chinchilla": 1.05}
    return RunSummary(
        run=r.run, experiment="demo", sweep="demo", status=Status(status), size=f"{r.N:.3g}",
        N=n, N_total=int(n * 1.1), N_with_head=int(n * 1.05),
        flops_per_token={k: 6 * n * f for k, f in conv.items()}, D=d, steps=max(1, d // 4096),
        batch_size=8, seq_len=512, C={k: c * f for k, f in conv.items()},
        budget=BudgetRecord(kind="flops", value=f"{c:.2g}", label=f"C{c:.2g}", convention="6n"),
        lr=1e-3, seed=0, corpus="synthetic", corpus_hash="sha256:0", vocab_size=256,
        config_hash="sha256:0", final_train_loss=r.loss + 0.01,
        final_val_loss=None if status == "diverged" else r.loss,
    )  # fmt: skip


def write_run_store(root: Path, runs: pd.DataFrame, curves: pd.DataFrame, statuses=None) -> Path:
    """A run store (docs/formats.md section 1) holding ``runs`` with their curves."""
    statuses = statuses or {}
    for r in runs.itertuples():
        folder = root / "demo" / r.run
        folder.mkdir(parents=True)
        status = statuses.get(r.run, "completed")
        c = curves[curves["run"] == r.run]
        metrics = pd.DataFrame(
            {
                "step": c["step"], "tokens": c["tokens"],
                "flops_kaplan": c["C"] * 0.95, "flops_6n": c["C"], "flops_chinchilla": c["C"] * 1.05,
                "train_loss": c["loss"] + 0.01, "val_loss": c["loss"], "lr": 1e-3,
                "tokens_per_s": 1e5, "mfu": np.nan, "epoch": 0.5,
            }
        )  # fmt: skip
        metrics.to_csv(folder / "metrics.csv", index=False)
        if status == "unfinished":
            continue
        write_summary(folder / "summary.json", run_summary(r, status))
    return root
