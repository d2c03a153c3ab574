"""The W&B analysis run, logged offline from the synthetic results dir and read back."""

from __future__ import annotations

import socket
import time

import matplotlib

matplotlib.use("Agg")

import pytest
from fixtures_results import write_results
from wandb.proto import wandb_internal_pb2 as pb

from analysis import wandb_log
from analysis.fitconfig import FitConfig
from analysis.plots import FIGURES
from analysis.results import (
    Allocation,
    Approach1Result,
    Approach2Result,
    Approach3Result,
    Bootstrap,
    Estimate,
    FitReport,
    LawFit,
)
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


def read_flushed(run_dir, wait_s: float = 20.0) -> dict:
    """The offline run, once the W&B service has flushed it (it may still write after finish())."""
    deadline = time.monotonic() + wait_s
    while True:
        logged = read_offline_run(run_dir)
        if logged["exit_code"] is not None or time.monotonic() > deadline:
            return logged
        time.sleep(0.2)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


@pytest.mark.slow
def test_log_analysis_offline_round_trip(offline):
    out = write_results(offline / "results")
    run_dir = wandb_log.log_analysis(out, project="scaling-test", group=None)
    assert run_dir.parent == out / "wandb" and run_dir.name.startswith("offline-run-")
    assert all((out / "figures" / f"{name}.png").is_file() for name in FIGURES)  # made on demand
    logged = read_flushed(run_dir)
    assert (logged["group"], logged["exit_code"]) == ("isoflop", 0)  # the sweep's group
    (run,) = records(run_dir, "run")
    assert run.job_type == "analysis"

    summary = logged["summary"]
    fit = FitReport.load(out)
    fit3 = fit.approach3.fit
    for key, est in (fit3.params | {k: fit3.derived[k] for k in "ab"}).items():
        assert summary[f"approach3/{key}"] == pytest.approx(est.value)
        assert (summary[f"approach3/{key}_lo"], summary[f"approach3/{key}_hi"]) == tuple(est.ci)
    for i, approach in ((1, fit.approach1), (2, fit.approach2)):
        assert summary[f"approach{i}/a"] == pytest.approx(approach.allocation.a.value)
    config = logged["config"]  # the whole resolved FitConfig, and how C was counted
    assert config["holdout"] == fit.config.holdout and config["targets"] == fit.config.targets
    assert config["convention"] == fit.convention and config["bootstrap"] == fit.bootstrap.n

    (row,) = logged["history"].to_dict("records")
    for name in FIGURES:
        assert row[f"figures/{name}._type"] == "image-file"
    assert row["runs._type"] == "table-file"
    assert row["runs.nrows"] == fit.n_runs
    # The fit table: a, b of each approach and the five approach-3 parameters, with intervals.
    assert row["fit._type"] == "table-file" and row["fit.nrows"] == 2 + 2 + 7
    table = wandb_log.fit_table(fit)
    a3 = table[table["block"] == "approach3"].set_index("parameter")
    assert a3.loc["alpha", "estimate"] == pytest.approx(fit3.params["alpha"].value)
    assert [a3.loc["alpha", "lo"], a3.loc["alpha", "hi"]] == fit3.params["alpha"].ci

    artifacts = {a.name: a for a in records(run_dir, "artifact")}
    assert {m.path for m in artifacts["fit-isoflop"].manifest.contents} >= {"fit.json", "runs.csv"}


def _report(**results) -> FitReport:
    """A fit report holding only ``results`` (approaches, law fit)."""
    return FitReport(
        source="x.csv", config=FitConfig(), convention="6n", k=6.0, n_runs=9, n_fitted=9,
        excluded=[], heldout_runs=[], bootstrap=Bootstrap(n=10, seed=0, ci=0.9), targets=[],
        **results,
    )  # fmt: skip


def test_other_laws_go_to_the_fit_table_and_summary():
    law_fit = LawFit(
        law="kaplan_nd", params={"alpha_N": Estimate(0.076, [0.07, 0.08])}, objective=1e-3,
        n_starts=9, n_best=3, n_points=9, huber_delta=1e-3,
    )  # fmt: skip
    why = "approach 3 needs the chinchilla law, not 'kaplan_nd'"
    report = _report(approach3=Approach3Result(error=why), law_fit=law_fit)
    table = wandb_log.fit_table(report)
    assert table.to_dict("records") == [
        {"block": "law_fit", "parameter": "alpha_N", "estimate": 0.076, "lo": 0.07, "hi": 0.08,
         "ci": 0.9}
    ]  # fmt: skip
    summary = wandb_log.summary(report)
    assert summary["law_fit/alpha_N"] == 0.076 and summary["law_fit/alpha_N_hi"] == 0.08
    assert summary["approach3/error"] == why
    assert "law_fit/n_starts" not in summary


def test_failed_approach_goes_to_summary_as_error():
    half = Estimate(0.5)
    report = _report(
        approach1=Approach1Result(allocation=Allocation(half, half, Estimate(1.0), Estimate(1.0))),
        approach2=Approach2Result(error="no IsoFLOP budgets"),
    )
    summary = wandb_log.summary(report)
    assert summary["approach2/error"] == "no IsoFLOP budgets"
    assert summary["approach3/error"] == "not computed"
    assert summary["approach1/a"] == 0.5 and "approach2/a" not in summary
    assert "approach1/a_lo" not in summary  # no bootstrap, no interval


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
