"""Downstream tasks: the two-step chain (analysis/tasks.py) and the training callback
(scaling/tasks.py).

Ground truth: synthetic ladders whose task loss follows a known L(N, D) and whose accuracy a
known sigmoid of it; the OLMo ladder (data/reference/olmo_ladder) for published behaviour; a
hand-computed bigram model for the callback's scoring; real tiny Lightning training for the
columns it logs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.collect import collect
from analysis.tasks import (
    TaskError,
    TaskSettings,
    TasksReport,
    main,
    noise_of,
    read_points,
    run_tasks,
)
from contract import METRIC_COLUMNS
from scaling.config import ConfigError
from scaling.tasks import Item, choice_losses, load_items, score
from scaling.train import train

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "olmo_ladder"
SIZES = {"20M": 2e7, "40M": 4e7, "80M": 8e7, "160M": 1.6e8, "640M": 6.4e8}
TRUE_STEP1 = {"E": 0.5, "A": 40.0, "alpha": 0.25, "B": 200.0, "beta": 0.3}
TRUE_STEP2 = {"a": 0.6, "k": -6.0, "L0": 1.2, "b": 0.25}


def _true_loss(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    t = TRUE_STEP1
    return t["E"] + t["A"] / n ** t["alpha"] + t["B"] / d ** t["beta"]


def _true_acc(loss: np.ndarray) -> np.ndarray:
    t = TRUE_STEP2
    return t["a"] / (1 + np.exp(-t["k"] * (loss - t["L0"]))) + t["b"]


def synthetic_ladder(root: Path, noise: dict[str, float], seed: int = 0) -> tuple[Path, Path]:
    """Runs CSV + one curve CSV per run; each task's accuracy = the true chain + Gaussian noise
    of the given size per checkpoint (bpb exact). Returns (runs CSV, curve glob)."""
    rng = np.random.default_rng(seed)
    rows = []
    for size, n in SIZES.items():
        for mult in (5, 10, 20, 40):
            run, d = f"{size}-{mult}x", mult * n
            rows.append({"run": run, "size": size, "N": n, "D": d, "loss": 3.0})
            tokens = np.geomspace(d / 30, d, 24)
            curve = {"tokens": tokens}
            for task, sd in noise.items():
                bpb = _true_loss(np.full_like(tokens, n), tokens)
                curve[f"{task}_bpb"] = bpb
                curve[f"{task}_acc"] = _true_acc(bpb) + sd * rng.standard_normal(tokens.size)
            pd.DataFrame(curve).to_csv(root / f"{run}.csv", index=False)
    pd.DataFrame(rows).to_csv(root / "runs.csv", index=False)
    return root / "runs.csv", root / "*x.csv"


FAST = {"n_bootstrap": 40, "checkpoints": 8}


@pytest.mark.slow
def test_chain_recovers_a_known_ladder_and_flags_the_noisy_task(tmp_path) -> None:
    runs, curves = synthetic_ladder(tmp_path, {"clean": 0.002, "noisy": 0.05})
    report = run_tasks(runs, TaskSettings(**FAST), curves=str(curves))
    assert report.heldout_runs == [f"640M-{m}x" for m in (5, 10, 20, 40)]
    clean, noisy = report.task("clean"), report.task("noisy")
    # step 1 and step 2 recover their laws, the chain the held-out accuracy
    assert clean.step1.values()["alpha"] == pytest.approx(TRUE_STEP1["alpha"], rel=0.05)
    assert clean.step2.values()["L0"] == pytest.approx(TRUE_STEP2["L0"], abs=0.05)
    for p in clean.predictions:
        truth = _true_acc(_true_loss(np.array(p.N), np.array(p.D)))
        assert p.acc_predicted.value == pytest.approx(truth, abs=0.01)
        lo, hi = p.acc_predicted.ci
        assert lo - 0.005 <= truth <= hi + 0.005  # the joint interval covers the truth
    assert not clean.noisy and noisy.noisy
    assert clean.noise_ratio < 0.02 < 0.1 < noisy.noise_ratio


@pytest.mark.slow
def test_cli_writes_tasks_json_report_and_figures(tmp_path, capsys) -> None:
    runs, curves = synthetic_ladder(tmp_path, {"arc_easy": 0.002, "arc_hard": 0.002})
    out = tmp_path / "out"
    argv = [str(runs), "--curves", str(curves), "--out", str(out), "--n-bootstrap", "0"]
    assert main([*argv, "--checkpoints", "6"]) == 0
    report = TasksReport.load(out / "tasks.json")
    assert report.format == 1 and [t.task for t in report.tasks] == ["arc_easy", "arc_hard"]
    assert (out / "tasks_arc.pdf").exists() and (out / "tasks_arc.png").exists()  # one group
    assert "| arc_easy |" in (out / "tasks.md").read_text()
    assert "arc_hard: chain |error|" in capsys.readouterr().out


def test_task_missing_at_some_rungs_is_named_or_skipped(tmp_path, capsys) -> None:
    runs, curves = synthetic_ladder(tmp_path, {"piqa": 0.002, "boolq": 0.002})
    for run in ("40M-10x", "640M-5x"):
        f = tmp_path / f"{run}.csv"
        pd.read_csv(f).drop(columns=["boolq_acc"]).to_csv(f, index=False)
    argv = [str(runs), "--curves", str(curves), "--out", str(tmp_path / "o"), "--n-bootstrap", "0"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "boolq at rungs ['40M-10x', '640M-5x']" in err and "--skip-incomplete" in err
    assert main([*argv, "--skip-incomplete", "--checkpoints", "6"]) == 0
    report = TasksReport.load(tmp_path / "o" / "tasks.json")
    assert [t.task for t in report.tasks] == ["piqa"]
    assert report.skipped == {"boolq": ["40M-10x", "640M-5x"]}


def test_bad_settings_fail_before_fitting(tmp_path, capsys) -> None:
    with pytest.raises(TaskError, match="noise_window=1"):
        TaskSettings(noise_window=1)
    runs, curves = synthetic_ladder(tmp_path, {"piqa": 0.0})
    with pytest.raises(SystemExit):
        main([str(runs), "--curves", str(curves), "--out", str(tmp_path), "--holdout", "N > 1"])
    assert "holds out 20 of 20 rungs" in capsys.readouterr().err


# The OLMo ladder paper predicts MMLU, PIQA and HellaSwag among the tasks it calls predictable
# (within 2 points of absolute error at 7B and 13B). Here the target is 3B, fitted on 190M-1B:
# MMLU (the four test splits) and PIQA within the paper's 2 points. HellaSwag within 5: step 1
# under-predicts its 3B task loss by 0.007-0.02 bits per byte where the sigmoid's slope is about
# -2.5 accuracy per bit, so step 1 alone costs up to ~4 points (measured: 4.7 mean, the direct
# law 4.6). ARC-Challenge is reported (1.3-1.6 points here), not asserted.
OLMO_TOLERANCE = {
    **{f"mmlu_{s}_test_rc_5shot": 0.02 for s in ("stem", "humanities", "social_sciences", "other")},
    "piqa_val_rc_5shot": 0.02,
    "hellaswag_val_rc_5shot": 0.05,
}


@pytest.mark.slow
def test_olmo_ladder_predicts_the_3b_rungs() -> None:
    settings = TaskSettings(tokens_column="throughput/total_tokens", holdout="size == '3B'",
                            n_bootstrap=20)  # fmt: skip
    report = run_tasks(
        REFERENCE / "ladder_final_c4_summary.csv", settings,
        columns="D=tokens,loss=c4_loss_final", curves=str(REFERENCE / "*xC.csv"),
        only=list(OLMO_TOLERANCE),
    )  # fmt: skip
    assert sorted(report.heldout_runs) == sorted(f"3B-{m}xC" for m in ("0.5", "1", "2", "5", "10"))
    assert report.no_evaluations == [f"{s}-1xC-rerun" for s in ("190M", "1B", "370M", "3B", "760M")]
    for t in report.tasks:
        assert not t.noisy, t.task
        assert t.mean_abs_error < OLMO_TOLERANCE[t.task], (t.task, t.mean_abs_error)


def test_olmo_ladder_noise_flags_the_noisiest_task() -> None:
    """BoolQ jumps most from checkpoint to checkpoint relative to its rung-to-rung spread."""
    settings = TaskSettings(tokens_column="throughput/total_tokens", holdout="size == '3B'")
    col = collect(REFERENCE / "ladder_final_c4_summary.csv", columns="D=tokens,loss=c4_loss_final")
    points, _ = read_points(col, str(REFERENCE / "*xC.csv"), settings)
    small = points[~points["run"].str.startswith("3B")]
    ratio = {t: np.divide(*noise_of(g, 5)) for t, g in small.groupby("task")}
    assert len(ratio) == 20
    assert max(ratio, key=ratio.get) == "boolq_val_rc_5shot"
    assert ratio["boolq_val_rc_5shot"] > settings.noise_max > ratio["hellaswag_val_rc_5shot"]


# ----------------------------------------------------------------------------- training side


class Bigram(torch.nn.Module):
    """logits[b, t] = table[x[b, t]]: a model whose choice losses are known by hand."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.table[x],)


def test_choice_loss_is_the_sum_of_the_choice_bytes_losses() -> None:
    g = torch.Generator().manual_seed(0)
    table = torch.randn(256, 256, generator=g)
    logp = torch.log_softmax(table, dim=-1)
    items = [Item(b"abcdef", (b"gh", b"xyz"), 0), Item(b"0123456789", (b"q", b"9ab"), 1)]
    got = choice_losses(Bigram(table), items, seq_len=8, batch=3)
    for item, losses in zip(items, got):
        for choice, loss in zip(item.choices, losses):
            seq = (item.context + choice)[-9:]  # cut to seq_len + 1 bytes from the left
            prev = seq[len(seq) - len(choice) - 1 : -1]
            want = -sum(float(logp[p, c]) for p, c in zip(prev, choice))
            assert loss == pytest.approx(want, rel=1e-5)
    s = score(got, items)
    bits = [got[0][0] / math.log(2) / 2, got[1][1] / math.log(2) / 3]
    assert s["task_bpb"] == pytest.approx(sum(bits) / 2)
    hits = [got[0][0] < got[0][1], got[1][1] < got[1][0]]
    assert s["task_acc"] == sum(hits) / 2


def make_items(path: Path, n: int = 24) -> Path:
    """Items from this repository's Python: the true next 3 bytes against control bytes."""
    text = (Path(__file__).resolve().parents[1] / "scaling" / "model.py").read_text()
    lines = [ln for ln in text.splitlines() if len(ln) > 30][:n]
    wrong = ["\x01\x02\x03", "\x04\x05\x06", "\x0e\x0f\x10"]
    items = [
        {"context": ln[:24], "choices": [ln[24:27], wrong[i % 3]], "answer": 0}
        if i % 2
        else {"context": ln[:24], "choices": [wrong[i % 3], ln[24:27]], "answer": 1}
        for i, ln in enumerate(lines)
    ]
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def test_training_logs_task_bpb_and_accuracy(tiny_cfg, tmp_path) -> None:
    items = make_items(tmp_path / "items.jsonl")
    cfg = tiny_cfg("train.steps=60", "experiment=tasks", f"train.tasks_path={items}")
    assert train(cfg).summary.status.value == "completed"
    run = Path(cfg.runs_dir) / "tasks" / "10k-S60"
    df = pd.read_csv(run / "metrics.csv")
    assert list(df.columns) == list(METRIC_COLUMNS)
    task_rows = df[df["task_acc"].notna()]
    evals = df.loc[df["val_loss"].notna(), "step"].tolist()
    assert task_rows["step"].tolist() == evals  # one task row per evaluation
    first, last = task_rows.iloc[0], task_rows.iloc[-1]
    assert first["task_bpb"] > 7.0  # untrained: about log2(256) = 8 bits per byte
    assert last["task_bpb"] < first["task_bpb"] - 1.0 and last["task_acc"] >= 0.9
    # scaling-tasks reads the same columns from the run store (task name 'task')
    points, missing = read_points(collect(run.parent), None, TaskSettings())
    assert set(points["task"]) == {"task"} and not missing
    assert len(points) == len(task_rows)


def test_bad_task_files_fail_before_training(tiny_cfg, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a", "choices": ["b", "c"], "answer": 0}\n{"context": "a"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        train(tiny_cfg("train.steps=5", f"train.tasks_path={bad}"))
    with pytest.raises(ConfigError, match="data.name=markov"):
        load_items(bad, 32, "markov", "byte")
    with pytest.raises(ConfigError, match="does not exist"):
        load_items(tmp_path / "none.jsonl", 32, "stdlib", "byte")
    assert not (Path(tiny_cfg().runs_dir)).exists()
