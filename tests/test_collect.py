"""Collecting runs: run store, W&B offline files, the W&B API, plain CSVs; clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import synthetic, write_run_store

from analysis.collect import CURVE_COLUMNS, RUN_COLUMNS, CollectError, collect, from_wandb
from analysis.wandb_offline import read_offline_run


@pytest.fixture(scope="module")
def small():
    runs, curves = synthetic(budgets=(1e17, 1e18), sizes_per_budget=4, curve_points=5)
    return runs, curves


@pytest.fixture
def store(tmp_path, small):
    runs, curves = small
    statuses = {runs["run"][0]: "diverged", runs["run"][1]: "failed", runs["run"][2]: "unfinished"}
    return write_run_store(tmp_path / "runs", runs, curves, statuses)


def test_run_store_tidy_tables(store, small):
    runs, _ = small
    col = collect(store, convention="kaplan")
    assert list(col.runs.columns) == RUN_COLUMNS
    assert list(col.curves.columns) == CURVE_COLUMNS
    assert len(col.runs) == len(runs)
    assert len(col.curves) == len(runs) * 5
    row = col.runs.set_index("run").loc[runs["run"][5]]
    assert row["C"] == pytest.approx(runs["C"][5] * 0.95)  # the kaplan column was chosen
    assert row["C_chinchilla"] == pytest.approx(runs["C"][5] * 1.05)
    assert row["tokens_per_param"] == pytest.approx(runs["D"][5] / runs["N"][5])
    assert row["budget"].startswith("C")
    reasons = {e["run"]: e["reason"] for e in col.excluded}
    assert reasons == {
        runs["run"][0]: "status diverged",
        runs["run"][1]: "status failed",
        runs["run"][2]: "status unfinished",
    }
    assert len(col.usable) == len(runs) - 3


def test_corrupt_logs_are_listed_and_hidden_folders_skipped(store, small):
    runs, _ = small
    folders = sorted(p.parent for p in store.rglob("summary.json"))
    good = [f for f in folders if f.name not in set(runs["run"][:3])]
    (good[0] / "summary.json").write_text('{"status": "completed", "N": 1')  # cut off mid-write
    (good[1] / "metrics.csv").write_bytes(b"step,val_loss\n\xff\xfe\x00garbage\n")
    aside = store / good[2].parent.name / ".failed" / "old-1"
    aside.parent.mkdir(parents=True)
    good[2].rename(aside)  # a failed run moved aside by a relaunch: not a run of the store
    col = collect(store)
    assert len(col.runs) == len(runs) - 1
    reasons = {e["run"]: e["reason"] for e in col.excluded}
    assert reasons[good[0].name].startswith(f"corrupt {good[0] / 'summary.json'}")
    assert reasons[good[1].name].startswith(f"corrupt {good[1] / 'metrics.csv'}")
    assert good[2].name not in set(col.runs["run"])


def test_empty_run_store(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CollectError, match="no runs in run store"):
        collect(tmp_path / "empty")
    with pytest.raises(CollectError, match="does not exist"):
        collect(tmp_path / "missing")


def test_csv_with_column_mapping(tmp_path):
    csv = tmp_path / "theirs.csv"
    pd.DataFrame(
        {"Model Size": [1e8, 2e8], "Training FLOP": [6e17, 1.2e18], "loss": [3.0, 2.9]}
    ).to_csv(csv, index=False)
    col = collect(csv, columns="N=Model Size,C=Training FLOP,loss=loss")
    assert col.runs["D"].tolist() == pytest.approx([1e9, 1e9])
    assert col.runs["C"].tolist() == [6e17, 1.2e18]
    assert "Training FLOP" in col.convention
    assert col.excluded == []


def test_csv_missing_columns_are_named(tmp_path):
    csv = tmp_path / "theirs.csv"
    pd.DataFrame({"params": [1e8], "loss": [3.0]}).to_csv(csv, index=False)
    with pytest.raises(
        CollectError, match=r"columns \['Model Size'\] not found.*present: \['params', 'loss'\]"
    ):
        collect(csv, columns="N=Model Size,loss=loss")
    with pytest.raises(CollectError, match=r"no column given for \['N', 'D or C'\]"):
        collect(csv)
    with pytest.raises(CollectError, match="TARGET=SOURCE"):
        collect(csv, columns="N")


def test_csv_with_learning_curve_files(tmp_path):
    """Final results in one CSV, each run's curve in its own file named after the run."""
    pd.DataFrame(
        {"run": ["a", "b"], "N": [1e8, 2e8], "tokens": [4e9, 8e9], "final": [3.0, 2.8]}
    ).to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "curves").mkdir()
    for run, n_rows in (("a", 3), ("b", 4)):
        pd.DataFrame(
            {
                "total_tokens": np.linspace(1e9, 4e9 if run == "a" else 8e9, n_rows),
                "val": np.r_[np.linspace(5, 3.1, n_rows - 1), np.nan],  # last row: no eval
                "other": 1.0,
            }
        ).to_csv(tmp_path / "curves" / f"{run}.csv", index=False)
    col = collect(
        tmp_path / "runs.csv",
        columns="D=tokens,loss=final",
        curves=tmp_path / "curves" / "*.csv",
        curve_columns="tokens=total_tokens,loss=val",
    )
    assert list(col.curves.columns) == CURVE_COLUMNS
    assert col.curves.groupby("run").size().to_dict() == {"a": 2, "b": 3}  # NaN losses dropped
    b = col.curves[col.curves["run"] == "b"]
    assert (b["N"] == 2e8).all()
    np.testing.assert_allclose(b["C"], 6 * 2e8 * b["tokens"])  # 6 N tokens without a C column
    with pytest.raises(CollectError, match=r"no learning-curve CSV matches .*nothing\*\.csv"):
        collect(
            tmp_path / "runs.csv", columns="D=tokens,loss=final", curves=tmp_path / "nothing*.csv"
        )
    (tmp_path / "curves" / "c.csv").write_text("total_tokens,val\n1e9,4.0\n")
    with pytest.raises(CollectError, match=r"c\.csv: runs \['c'\] are not in the results table"):
        collect(
            tmp_path / "runs.csv",
            columns="D=tokens,loss=final",
            curves=tmp_path / "curves" / "*.csv",
            curve_columns="tokens=total_tokens,loss=val",
        )
    with pytest.raises(CollectError, match=r"a\.csv: columns \['wrong'\] not found"):
        collect(
            tmp_path / "runs.csv",
            columns="D=tokens,loss=final",
            curves=tmp_path / "curves" / "a.csv",
            curve_columns="tokens=wrong,loss=val",
        )
    with pytest.raises(CollectError, match="go with a CSV source"):
        collect(tmp_path, curves=tmp_path / "curves" / "*.csv")


def test_csv_bad_losses_are_excluded(tmp_path):
    csv = tmp_path / "theirs.csv"
    pd.DataFrame({"N": [1e8, 2e8, 3e8], "D": [1e9] * 3, "loss": [3.0, np.nan, -1]}).to_csv(
        csv, index=False
    )
    col = collect(csv)
    assert [e["run"] for e in col.excluded] == ["row1", "row2"]


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import sys, wandb
    root, name, status = sys.argv[1], sys.argv[2], sys.argv[3]
    run = wandb.init(mode="offline", dir=root, project="p", group="demo", name=name,
                     config={"lr": 0.001, "model": {"size": name}})
    for step in range(1, 401):
        row = {"train/loss": 5.0 / step ** 0.1, "tokens": step * 4096,
               "flops_chinchilla": step * 4096 * 6e6, "step": step}
        if step % 100 == 0:
            row["val/loss"] = 5.0 / step ** 0.1 + 0.01
        wandb.log(row)
    wandb.summary.update({"status": status, "N": 1e6, "D": 400 * 4096.0,
                          "C": {"kaplan": 9e15, "6n": 9.5e15, "chinchilla": 1e16},
                          "final_val_loss": 2.9, "run": name})
    wandb.finish()
    """
)


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb_offline")
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    for name, status in (("1M-1xC", "completed"), ("2M-1xC", "diverged")):
        subprocess.run(
            [sys.executable, "-c", OFFLINE_SCRIPT, str(root), name, status], check=True, env=env
        )
    return root


RESUMED_SCRIPT = textwrap.dedent(
    """
    import sys, wandb
    root, first, last, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    run = wandb.init(mode="offline", dir=root, project="p", group="demo", name="1M-2xC",
                     id="resumed0001", resume="allow")
    for step in range(first, last + 1):  # the relaunch re-logs the steps after its checkpoint
        row = {"train/loss": 5.0 / step ** 0.1 + (first > 1) * 1e-3, "tokens": step * 4096,
               "trainer/global_step": step}
        if step % 100 == 0:
            row["val/loss"] = 5.0 / step ** 0.1 + 0.01
        wandb.log(row)
    wandb.summary.update({"status": status, "N": 1e6, "D": 400 * 4096.0,
                          "C": {"chinchilla": 1e16}, "run": "1M-2xC"})
    wandb.finish(exit_code=0 if status == "completed" else 1)
    """
)


def test_offline_run_resumed_in_two_folders_is_one_run(tmp_path):
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    for first, last, status in ((1, 250, "running"), (151, 400, "completed")):
        subprocess.run(
            [sys.executable, "-c", RESUMED_SCRIPT, str(tmp_path), str(first), str(last), status],
            check=True,
            env=env,
        )
        time.sleep(1.1)  # the folders are named by their start second
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    col = collect(tmp_path / "wandb")
    (row,) = col.runs.to_dict("records")
    assert row["status"] == "completed" and row["run"] == "1M-2xC"
    assert col.curves["step"].tolist() == [100, 200, 300, 400]  # each eval once, in order
    assert col.curves["train_loss"].iloc[1] == pytest.approx(5.0 / 200**0.1 + 1e-3)  # the rerun's


def test_read_offline_run(offline_root):
    run_dir = sorted((offline_root / "wandb").glob("offline-run-*"))[0]
    out = read_offline_run(run_dir)
    hist = out["history"]
    assert len(hist) == 400
    assert hist["step"].tolist() == list(range(1, 401))
    assert hist["val/loss"].notna().sum() == 4
    assert out["summary"]["C"]["chinchilla"] == 1e16
    assert out["config"] == {"lr": 0.001, "model": {"size": out["name"]}}
    assert out["group"] == "demo" and out["exit_code"] == 0
    same = read_offline_run(next(run_dir.glob("*.wandb")))
    assert same["summary"] == out["summary"]


def test_collect_offline_folder(offline_root):
    col = collect(offline_root)
    assert sorted(col.runs["run"]) == ["1M-1xC", "2M-1xC"]
    assert [e["run"] for e in col.excluded] == ["2M-1xC"]
    assert len(col.curves) == 8
    assert col.runs.set_index("run").loc["1M-1xC", "C"] == 1e16
    with pytest.raises(CollectError, match="in group 'other'"):
        collect(offline_root, group="other")


class _FakeRun:
    def __init__(self, name, state, summary, history):
        self.name, self.state, self.group = name, state, "demo"
        self.summary, self.config, self._history = summary, {"lr": 1e-3, "_wandb": {}}, history

    def scan_history(self):
        return iter(self._history.to_dict("records"))


class _FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return self._runs


def test_wandb_api_source():
    hist = pd.DataFrame(
        {"_step": [0, 1], "val/loss": [3.0, 2.5], "tokens": [10, 20], "flops_chinchilla": [1, 2]}
    )
    summary = {"N": 1e6, "D": 2e7, "C": {"chinchilla": 1.2e14}, "final_val_loss": 2.5}
    api = _FakeApi(
        [_FakeRun("a", "finished", summary, hist), _FakeRun("b", "crashed", summary, hist)]
    )
    col = from_wandb("ent/proj", group="demo", api=api)
    assert api.calls == [("ent/proj", {"group": "demo"})]
    assert col.runs["status"].tolist() == ["completed", "failed"]
    assert col.runs["C"].tolist() == [1.2e14, 1.2e14]
    assert col.curves["loss"].tolist() == [3.0, 2.5, 3.0, 2.5]
    with pytest.raises(CollectError, match="no runs in W&B project 'ent/proj'"):
        from_wandb("ent/proj", api=_FakeApi([]))


class _FailingApi:
    def __init__(self, err):
        self.err = err

    def runs(self, path, filters=None):
        raise self.err


@pytest.mark.parametrize("kind", ["not logged in", "no such project"])
def test_wandb_api_errors_name_the_project_and_the_fix(kind):
    import wandb

    exc = {
        "not logged in": wandb.errors.UsageError("No API key configured."),
        "no such project": ValueError("Could not find project ent/proj"),
    }[kind]
    with pytest.raises(CollectError, match=r"cannot read W&B project 'ent/proj'.*wandb login"):
        from_wandb("ent/proj", api=_FailingApi(exc))
