"""The W&B analysis run, logged offline from the synthetic results dir and read back."""

from __future__ import annotations

import json
import socket
import time

import matplotlib

matplotlib.use("Agg")

import pytest
from fixtures_results import write_results
from wandb.proto import wandb_internal_pb2 as pb

from analysis import wandb_log
from analysis.plots import FIGURES
from analysis.wandb_offline import find_wandb_file, iter_records, read_offline_run


def records(run_dir, kind):
    """The run's protobuf records of one kind (run, artifact, ...)."""
    out = []
    for payload in iter_records(find_wandb_file(run_dir)):
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == kind:
            out.append(getattr(record, kind))
    return out


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def test_log_analysis_offline_round_trip(offline):
    out = write_results(offline / "results")
    run_dir = wandb_log.log_analysis(out, project="scaling-test", group=None)
    assert run_dir.parent == out / "wandb" and run_dir.name.startswith("offline-run-")
    assert all((out / "figures" / f"{name}.png").is_file() for name in FIGURES)  # made on demand
    logged = read_offline_run(run_dir)
    assert (logged["group"], logged["exit_code"]) == ("isoflop", 0)  # the sweep's group
    (run,) = records(run_dir, "run")
    assert run.job_type == "analysis"

    summary = logged["summary"]
    fit = json.loads((out / "fit.json").read_text())
    for key in ("E", "A", "B", "alpha", "beta", "a", "b"):
        assert summary[f"approach3/{key}"] == pytest.approx(fit["approach3"][key])
        lo, hi = fit["approach3"][f"{key}_ci"]
        assert (summary[f"approach3/{key}_lo"], summary[f"approach3/{key}_hi"]) == (lo, hi)
    for approach in ("approach1", "approach2"):
        assert summary[f"{approach}/a"] == pytest.approx(fit[approach]["a"])

    (row,) = logged["history"].to_dict("records")
    for name in FIGURES:
        assert row[f"figures/{name}._type"] == "image-file"
    assert row["runs._type"] == "table-file"
    assert row["runs.nrows"] == fit["n_runs"]
    # The fit table: a, b of each approach and the five approach-3 parameters, with intervals.
    assert row["fit._type"] == "table-file" and row["fit.nrows"] == 2 + 2 + 7
    table = wandb_log.fit_table(fit)
    a3 = table[table["block"] == "approach3"].set_index("parameter")
    assert a3.loc["alpha", "estimate"] == pytest.approx(fit["approach3"]["alpha"])
    assert [a3.loc["alpha", "lo"], a3.loc["alpha", "hi"]] == fit["approach3"]["alpha_ci"]

    artifacts = {a.name: a for a in records(run_dir, "artifact")}
    assert {m.path for m in artifacts["fit-isoflop"].manifest.contents} >= {"fit.json", "runs.csv"}


def test_other_laws_go_to_the_fit_table_and_summary():
    fit = {
        "bootstrap": {"ci": 0.9},
        "approach3": {"error": "approach 3 needs the chinchilla law, not 'kaplan_nd'"},
        "law_fit": {"law": "kaplan_nd", "formula": "...", "alpha_N": 0.076,
                    "alpha_N_ci": [0.07, 0.08], "objective": 1e-3, "n_starts": 9, "n_best": 3},
    }  # fmt: skip
    table = wandb_log.fit_table(fit)
    assert table.to_dict("records") == [
        {"block": "law_fit", "parameter": "alpha_N", "estimate": 0.076, "lo": 0.07, "hi": 0.08,
         "ci": 0.9}
    ]  # fmt: skip
    summary = wandb_log.summary(fit)
    assert summary["law_fit/alpha_N"] == 0.076 and summary["law_fit/alpha_N_hi"] == 0.08
    assert "law_fit/n_starts" not in summary


def test_failed_approach_goes_to_summary_as_error():
    fit = {"approach2": {"error": "no IsoFLOP budgets"}, "approach1": {"a": 0.5, "b": 0.5}}
    summary = wandb_log.summary(fit)
    assert summary["approach2/error"] == "no IsoFLOP budgets"
    assert summary["approach3/error"] == "not in fit.json"
    assert summary["approach1/a"] == 0.5 and "approach2/a" not in summary


def test_auto_mode_is_online_only_with_credentials_and_a_reachable_host(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with socket.create_server(("127.0.0.1", 0)) as server:  # a stand-in W&B host that answers
        port = server.getsockname()[1]
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        assert wandb_log.resolve_mode("auto") == "offline"  # no login
        (tmp_path / "netrc").write_text("machine 127.0.0.1 login user password k\n")
        assert wandb_log.resolve_mode("auto") == "online"
    # the same login with the host gone (a cluster node without internet): offline at once
    start = time.perf_counter()
    assert wandb_log.resolve_mode("auto") == "offline"
    assert time.perf_counter() - start < 3
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_log.resolve_mode("auto") == "disabled"
    assert wandb_log.resolve_mode("offline") == "offline"
    with pytest.raises(ValueError, match="auto"):
        wandb_log.resolve_mode("sometimes")
