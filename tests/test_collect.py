"""Collecting runs: run store, W&B offline files, the W&B API, plain CSVs; clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import run_summary, synthetic, write_run_store

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
    assert len(col.curves) == (len(runs) - 1) * 5  # not the unfinished run's: its N is unknown
    assert col.curves["N"].notna().all()
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
    (good[1] / "metrics.csv").write_bytes(b"step,tokens,val_loss\n\xff\xfe\x00garbage\n")
    aside = store / good[2].parent.name / ".failed" / "old-1"
    aside.parent.mkdir(parents=True)
    good[2].rename(aside)  # a failed run moved aside by a relaunch: not a run of the store
    col = collect(store)
    assert len(col.runs) == len(runs) - 1
    reasons = {e["run"]: e["reason"] for e in col.excluded}
    assert reasons[good[0].name].startswith(f"corrupt run summary {good[0] / 'summary.json'}: ")
    assert reasons[good[1].name].startswith(f"corrupt {good[1] / 'metrics.csv'}: ")
    assert good[2].name not in set(col.runs["run"])
    status = dict(zip(col.runs["run"], col.runs["status"]))
    assert status[good[0].name] == status[good[1].name] == "corrupt"
    assert not {good[0].name, good[1].name} & set(col.curves["run"])  # curves go with the run


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


def record(name: str, status: str, **kw) -> dict:
    """A run record (as the trainer logs into the W&B summary) of a 1e6-parameter run."""
    r = types.SimpleNamespace(run=name, N=1e6, D=400 * 4096.0, C=1e16, loss=2.9)
    return {**run_summary(r, status).to_dict(), **kw}


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, sys, wandb
    root, name, rec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    run = wandb.init(mode="offline", dir=root, project="p", group="demo", name=name,
                     config={"lr": 0.001, "model": {"size": name}})
    for step in range(1, 401):
        row = {"train/loss": 5.0 / step ** 0.1, "tokens": step * 4096,
               "flops/chinchilla": step * 4096 * 6e6, "trainer/global_step": step}
        if step % 100 == 0:
            row["val/loss"] = 5.0 / step ** 0.1 + 0.01
        wandb.log(row)
    wandb.summary.update(rec)
    wandb.finish()
    """
)


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb_offline")
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    for name, status in (("1M-1xC", "completed"), ("2M-1xC", "diverged")):
        rec = json.dumps(record(name, status))
        subprocess.run(
            [sys.executable, "-c", OFFLINE_SCRIPT, str(root), name, rec], check=True, env=env
        )
    return root


RESUMED_SCRIPT = textwrap.dedent(
    """
    import json, sys, wandb
    root, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rec = json.loads(sys.argv[4])
    run = wandb.init(mode="offline", dir=root, project="p", group="demo", name="1M-2xC",
                     id="resumed0001", resume="allow")
    for step in range(first, last + 1):  # the relaunch re-logs the steps after its checkpoint
        row = {"train/loss": 5.0 / step ** 0.1 + (first > 1) * 1e-3, "tokens": step * 4096,
               "trainer/global_step": step}
        if step % 100 == 0:
            row["val/loss"] = 5.0 / step ** 0.1 + 0.01
        wandb.log(row)
    if rec:  # the record is logged at the end of training only
        wandb.summary.update(rec)
    wandb.finish(exit_code=0 if rec else 1)
    """
)


@pytest.mark.slow
def test_offline_run_resumed_in_two_folders_is_one_run(tmp_path):
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    for first, last, rec in ((1, 250, {}), (151, 400, record("1M-2xC", "completed"))):
        subprocess.run(
            [
                sys.executable,
                "-c",
                RESUMED_SCRIPT,
                str(tmp_path),
                str(first),
                str(last),
                json.dumps(rec),
            ],
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
    assert hist["trainer/global_step"].tolist() == list(range(1, 401))
    assert hist["val/loss"].notna().sum() == 4
    assert out["summary"]["C"]["chinchilla"] == pytest.approx(1.05e16)
    assert out["config"] == {"lr": 0.001, "model": {"size": out["name"]}}
    assert out["group"] == "demo" and out["exit_code"] == 0
    same = read_offline_run(next(run_dir.glob("*.wandb")))
    assert same["summary"] == out["summary"]


def test_collect_offline_folder(offline_root):
    col = collect(offline_root)
    assert sorted(col.runs["run"]) == ["1M-1xC", "2M-1xC"]
    assert [e["run"] for e in col.excluded] == ["2M-1xC"]
    assert len(col.curves) == 8
    assert col.runs.set_index("run").loc["1M-1xC", "C"] == pytest.approx(1.05e16)
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

    def runs(self, path, filters=None, **listing):  # per_page, lazy: as wandb.Api.runs
        self.calls.append((path, filters))
        return self._runs


def test_wandb_api_source():
    hist = pd.DataFrame(
        {
            "trainer/global_step": [0, 1],
            "val/loss": [3.0, 2.5],
            "tokens": [10, 20],
            "flops/chinchilla": [1, 2],
            "val_loss": [9.0, 9.0],  # an alias key: not read
        }
    )
    api = _FakeApi(
        [
            _FakeRun("a", "finished", record("a", "completed"), hist),
            _FakeRun("b", "crashed", {"val/loss": 2.5}, hist),  # died before its record
            _FakeRun("c", "finished", record("c", "completed", N="many"), hist),
            _FakeRun("d", "finished", record("d", "diverged"), hist),
        ]
    )
    col = from_wandb("ent/proj", group="demo", api=api)
    assert api.calls == [("ent/proj", {"group": "demo"})]
    assert col.runs["status"].tolist() == ["completed", "failed", "corrupt", "diverged"]
    assert col.runs["C"].tolist()[0] == pytest.approx(1e16 * 1.05)
    reasons = {e["run"]: e["reason"] for e in col.excluded}
    assert reasons["c"] == "corrupt run summary W&B run 'c' summary: N='many' is not a number"
    assert reasons["b"] == "status failed"
    assert col.curves["loss"].tolist() == [3.0, 2.5, 3.0, 2.5]  # runs a and d: known N
    assert col.curves["step"].tolist() == [0, 1, 0, 1]
    with pytest.raises(CollectError, match="no runs in W&B project 'ent/proj'"):
        from_wandb("ent/proj", api=_FakeApi([]))


class _FailingApi:
    def __init__(self, err):
        self.err = err

    def runs(self, path, filters=None, **listing):  # per_page, lazy: as wandb.Api.runs
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


def test_unreadable_summary_with_intact_metrics_drops_its_curves_and_figures_draw(
    store, small, tmp_path
):
    """The run is listed as corrupt and its curves go with it: no N = NaN rows reach the plots."""
    from analysis.cli import main as fit_main
    from analysis.plots import main as plot_main

    runs, _ = small
    victim = store / "demo" / runs["run"][6]
    (victim / "summary.json").write_bytes(b"\x00\x01 not json")
    col = collect(store)
    assert col.curves["N"].notna().all()
    assert victim.name not in set(col.curves["run"])
    (row,) = [e for e in col.excluded if e["run"] == victim.name]
    assert row["status"] == "corrupt" and str(victim / "summary.json") in row["reason"]
    out = tmp_path / "fit"
    args = [str(store), "--out", str(out), "--bootstrap", "0", "--grid", "50", "--approaches", "1"]
    assert fit_main(args) == 0
    curves = pd.read_csv(out / "curves.csv")
    assert curves["N"].notna().all() and victim.name not in set(curves["run"])
    assert plot_main([str(out), "--only", "learning_curves", "--format", "png"]) == 0


def test_metrics_rows_whose_step_does_not_parse_are_skipped_and_reported(store, small):
    runs, _ = small
    metrics = store / "demo" / runs["run"][5] / "metrics.csv"
    lines = metrics.read_text().splitlines()
    bad = [
        lines[1].replace(lines[1].split(",")[0], "1e2", 1),
        "nan" + lines[2][lines[2].index(",") :],
    ]
    metrics.write_text("\n".join([lines[0], *bad, *lines[3:]]) + "\n")
    col = collect(store)
    assert col.curves.loc[col.curves["run"] == runs["run"][5], "step"].tolist() == [300, 400, 500]
    assert col.runs.set_index("run").loc[runs["run"][5], "exclusion_reason"] == ""
    (note,) = col.warnings
    assert str(metrics) in note and "skipped 2 rows" in note and "'1e2'" in note


def test_a_format_1_summary_is_read(store, small):
    """A summary.json from before the format key (format 1) is a usable run."""
    runs, _ = small
    path = store / "demo" / runs["run"][5] / "summary.json"
    old = json.loads(path.read_text())
    del old["format"]
    path.write_text(json.dumps(old))
    row = collect(store).runs.set_index("run").loc[runs["run"][5]]
    assert row["exclusion_reason"] == "" and row["loss"] == pytest.approx(runs["loss"][5])


def test_no_key_guessing_a_summary_in_another_layout_is_corrupt(store, small):
    """Keys such as val/loss or params.non_embedding are not guessed: the record must parse."""
    runs, _ = small
    path = store / "demo" / runs["run"][5] / "summary.json"
    path.write_text(
        json.dumps({"status": "completed", "val/loss": 3.0, "params": {"non_embedding": 1e6}})
    )
    (row,) = [e for e in collect(store).excluded if e["run"] == runs["run"][5]]
    assert (
        row["status"] == "corrupt"
        and "missing keys" in row["reason"]
        and str(path) in row["reason"]
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"N,D,loss\n1e8,1e9,3.0\n2e8,2e9\n", "line 3 has 2 fields, the header 3"),
        (b"N,D,loss\n1e8,1e9,3.0,7\n", "line 2 has 4 fields, the header 3"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not UTF-8 text"),
        (b"N,D,loss\n1e8,1e9,\x003\n", "binary data"),
        (b'N,D,loss\n"1e8,1e9,3\n', "line"),
        (b"N,D,loss\n", "has no rows"),
    ],
    ids=["0-byte", "blank", "short-row", "long-row", "binary", "nul", "open-quote", "header-only"],
)
def test_bad_csv_is_one_error_naming_the_file(tmp_path, capsys, content, problem):
    from analysis.cli import main as fit_main

    csv = tmp_path / "bad.csv"
    csv.write_bytes(content)
    with pytest.raises(CollectError, match=problem) as err:
        collect(csv)
    assert str(csv) in str(err.value)
    assert fit_main([str(csv), "--out", str(tmp_path / "out"), "--bootstrap", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaling-fit: error: ") and str(csv) in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_curve_csv_names_the_file(tmp_path):
    pd.DataFrame({"run": ["a", "b"], "N": [1e8, 2e8], "D": [4e9, 8e9], "loss": [3.0, 2.8]}).to_csv(
        tmp_path / "runs.csv", index=False
    )
    (tmp_path / "a.csv").write_bytes(b"tokens,loss\n1e9,3\n2e9\n")
    with pytest.raises(CollectError, match=r"curve CSV .*a\.csv: line 3 has 1 fields"):
        collect(tmp_path / "runs.csv", curves=tmp_path / "a.csv")


def test_duplicate_runs_are_warned(tmp_path, store, small):
    csv = tmp_path / "dup.csv"
    pd.DataFrame(
        {
            "run": ["a", "a", "b", "c"],
            "N": [1e8, 1e8, 2e8, 2e8],
            "D": [1e9, 2e9, 4e9, 4e9],
            "loss": [3, 2.9, 2.8, 2.7],
        }
    ).to_csv(csv, index=False)
    w = collect(csv).warnings
    assert any("duplicate runs: ['a']" in x for x in w)
    assert any("2 usable runs share an (N, D)" in x and "'2e+08', '4e+09'" in x for x in w)
    assert collect(store).warnings == []  # a clean store warns of nothing


def test_unreadable_wandb_file_is_listed_as_corrupt(offline_root, tmp_path):
    import shutil

    shutil.copytree(offline_root, tmp_path / "w")
    victim = sorted((tmp_path / "w" / "wandb").glob("offline-run-*"))[0]
    next(victim.glob("*.wandb")).write_bytes(b"not a wandb file")
    col = collect(tmp_path / "w")
    (row,) = [e for e in col.excluded if e["status"] == "corrupt"]
    assert row["run"] == victim.name and "is not a W&B run file" in row["reason"]


@pytest.mark.slow
def test_scaling_fit_prints_collect_warnings(tmp_path, capsys):
    from analysis.cli import main as fit_main

    runs, _ = synthetic(budgets=(1e17, 1e18, 1e19), sizes_per_budget=5, curve_points=3)
    csv = tmp_path / "runs.csv"
    pd.concat([runs, runs.iloc[[4]]]).to_csv(csv, index=False)
    out = tmp_path / "out"
    assert fit_main([str(csv), "--out", str(out), "--bootstrap", "0", "--approaches", "3"]) == 0
    err = capsys.readouterr().err
    assert f"scaling-fit: warning: duplicate runs: ['{runs['run'][4]}']" in err
    assert "duplicate runs" in json.loads((out / "fit.json").read_text())["warnings"][0]
