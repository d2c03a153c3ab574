"""scaling-fit end to end on a synthetic run store: files, fit.json keys, errors, --wandb."""

from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import TRUE_A, synthetic, write_run_store

from analysis.cli import apply_holdout, main, run_fit
from analysis.laws import LAWS
from analysis.report import LAW_TEX


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    runs, curves = synthetic(curve_points=8)
    statuses = {runs["run"][3]: "diverged"}
    return write_run_store(tmp_path_factory.mktemp("store"), runs, curves, statuses)


@pytest.fixture(scope="module")
def cli_out(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    code = main(
        [str(store), "--out", str(out), "--bootstrap", "60", "--grid", "200", "--convention", "6n",
         "--holdout", "largest-C:0.1", "--target", "1e21,1e22"]
    )  # fmt: skip
    assert code == 0
    return out


def test_writes_every_output(cli_out):
    for name in ("fit.json", "report.md", "table.tex", "runs.csv", "curves.csv"):
        assert (cli_out / name).stat().st_size > 0, name
    tex = (cli_out / "table.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\alpha" in tex
    report = (cli_out / "report.md").read_text()
    assert "FLOP convention: **6n**" in report and "status diverged" in report


def test_fit_json_follows_the_contract(cli_out):
    res = json.loads((cli_out / "fit.json").read_text())
    for key in (
        "source",
        "convention",
        "n_runs",
        "n_fitted",
        "excluded",
        "heldout_runs",
        "bootstrap",
    ):
        assert key in res
    assert res["convention"] == "6n"
    assert res["excluded"][0]["status"] == "diverged"
    for i in (1, 2, 3):
        ap = res[f"approach{i}"]
        for key in ("a", "b", "a_ci", "b_ci", "N_coef", "D_coef"):
            assert key in ap, (i, key)
        assert ap["a"] == pytest.approx(TRUE_A, abs=0.06)
    a3 = res["approach3"]
    for key in (
        "E",
        "A",
        "B",
        "alpha",
        "beta",
        "E_ci",
        "alpha_ci",
        "objective",
        "n_starts",
        "n_best",
    ):
        assert key in a3
    assert a3["n_starts"] == 200 and a3["huber_delta"] == 1e-3 and a3["law"] == "chinchilla"
    assert {"C", "N_opt", "D_opt", "loss", "run"} <= set(res["approach1"]["points"][0])
    budget = res["approach2"]["budgets"][0]
    assert {"C", "N_opt", "D_opt", "loss_opt", "coeffs", "N_range", "n_points", "edge"} <= set(
        budget
    )
    assert [t["C"] for t in res["targets"]] == [1e21, 1e22]
    for key in ("N_opt_ci", "D_opt_ci", "loss_ci", "tokens_per_param"):
        assert key in res["targets"][0]
    ho = res["holdout"]
    assert (
        ho["rule"].startswith("largest C 10%: whole budgets")
        and len(ho["runs"]) == len(res["heldout_runs"]) > 0
    )
    assert ho["mean_abs_rel_error"] < 0.02


def test_prints_summary(store, tmp_path, capsys):
    run_fit(store, tmp_path, n_bootstrap=20, grid=100, approaches=(3,))
    text = capsys.readouterr().out
    assert "L = " in text and "approach 3: a = " in text and str(tmp_path / "fit.json") in text


def test_wandb_flag_calls_log_analysis(store, tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("analysis.wandb_log")
    fake.log_analysis = lambda out_dir, project, group, mode: calls.append(
        (out_dir, project, group, mode)
    )
    monkeypatch.setitem(sys.modules, "analysis.wandb_log", fake)
    argv = [
        str(store),
        "--out",
        str(tmp_path),
        "--bootstrap",
        "0",
        "--grid",
        "50",
        "--approaches",
        "2",
    ]
    assert main([*argv, "--wandb", "--wandb-project", "proj", "--group", "g"]) == 0
    assert calls == [(tmp_path, "proj", "g", "auto")]


def test_errors_exit_2_with_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no runs in run store" in capsys.readouterr().err
    csv = tmp_path / "x.csv"
    csv.write_text("size,loss\n1,2\n")
    assert main([str(csv), "--out", str(tmp_path / "o")]) == 2
    assert "columns present: ['size', 'loss']" in capsys.readouterr().err


def test_one_model_size_is_an_error(tmp_path, capsys):
    csv = tmp_path / "one.csv"
    csv.write_text(
        "N,D,loss\n"
        + "".join(
            f"1e8,{d},{3 - i * 0.1}\n" for i, d in enumerate([1e9, 2e9, 4e9, 8e9, 16e9, 32e9])
        )
    )
    assert main([str(csv), "--out", str(tmp_path / "o"), "--bootstrap", "0"]) == 2
    assert "at least 2 model sizes" in capsys.readouterr().err


def test_other_laws_fit_from_a_csv_with_intervals_report_and_latex(tmp_path):
    """Kaplan's L(N, S) from a CSV whose column names need escaping in LaTeX."""
    rng = np.random.default_rng(0)
    n = np.repeat(np.logspace(5, 8, 6), 6)
    s = np.tile(np.logspace(3, 5, 6), 6)
    true = {"Nc": 8.8e13, "alpha_N": 0.076, "Sc": 2.1e3, "alpha_S": 0.76}
    loss = (true["Nc"] / n) ** true["alpha_N"] + (true["Sc"] / s) ** true["alpha_S"]
    loss *= np.exp(0.003 * rng.standard_normal(n.size))
    csv = tmp_path / "kaplan.csv"
    pd.DataFrame(
        {"model_params": n, "opt_steps": s, "train_flop": 6 * n * s * 512, "val_loss": loss}
    ).to_csv(csv, index=False)
    out = tmp_path / "fit"
    cols = "N=model_params,S=opt_steps,C=train_flop,loss=val_loss"
    code = main(
        [str(csv), "--out", str(out), "--law", "kaplan_ns", "--columns", cols,
         "--approaches", "3", "--bootstrap", "100"]
    )  # fmt: skip
    assert code == 0
    res = json.loads((out / "fit.json").read_text())
    lf = res["law_fit"]
    assert lf["law"] == "kaplan_ns" and "error" in res["approach3"]
    for name in ("alpha_N", "alpha_S"):
        lo, hi = lf[f"{name}_ci"]
        assert lo < true[name] < hi and hi - lo < 0.2 * true[name], name
    report = (out / "report.md").read_text()
    assert "## Law fit: kaplan_ns" in report and "| alpha_S |" in report
    tex = (out / "table.tex").read_text()
    assert r"$\alpha_S$" in tex and r"(S_c/S)^{\alpha_S}" in tex
    assert r"train\_flop" in tex  # the CSV column named in the caption, escaped
    text = re.sub(r"\$[^$]*\$", "", tex)  # outside math, every _ must be escaped
    assert not re.search(r"(?<!\\)_", text), text


def test_every_law_has_a_latex_formula():
    assert set(LAWS) <= set(LAW_TEX)


def test_compute_optimal_bands_are_pointwise_bootstrap_intervals(cli_out):
    """Each approach's band agrees with its target intervals and is narrowest where the runs are."""
    res = json.loads((cli_out / "fit.json").read_text())
    runs_c = [r for r in pd.read_csv(cli_out / "runs.csv")["C"] if r > 0]
    for i in (1, 2, 3):
        ap = res[f"approach{i}"]
        band = ap["band"]
        c = np.array(band["C"])
        assert c.min() < min(runs_c) and c.max() >= 1e22
        targets = ap["targets"] if i != 3 else res["targets"]
        for t in targets:
            j = band["C"].index(t["C"])
            for name in ("N_opt", "D_opt"):
                ends = [band[f"{name}_ci"][0][j], band[f"{name}_ci"][1][j]]
                assert ends == pytest.approx(t[f"{name}_ci"], rel=1e-9), (i, name)
        lo, hi = (np.array(e) for e in band["N_opt_ci"])
        line = ap["N_coef"] * c ** ap["a"]
        assert np.all(lo <= line * 1.000001) and np.all(line <= hi * 1.000001), i
        width = np.log(hi / lo)
        inside = (c >= min(runs_c)) & (c <= max(runs_c))
        assert width[inside].min() < width[-1], i  # extrapolating to 1e22 is less certain


def test_largest_c_holdout_takes_whole_budgets():
    # 4 IsoFLOP budgets x 4 sizes, FLOPs jittered within a budget as the trainer's rounding does
    c = np.repeat([1e17, 1e18, 1e19, 1e20], 4) * np.tile([1.0, 1.002, 0.998, 1.001], 4)
    runs = pd.DataFrame(
        {"run": [f"r{i}" for i in range(16)], "C": c, "N": 1e6, "heldout": False,
         "exclusion_reason": ""}
    )  # fmt: skip
    runs.loc[15, "exclusion_reason"] = "status diverged"  # excluded runs are never held out
    rule = apply_holdout(runs, "largest-C:0.1")  # 2 of 15 usable runs -> the whole top budget
    assert runs["heldout"].tolist() == [False] * 12 + [True] * 3 + [False]
    assert "whole budgets" in rule and "3 of 15 runs" in rule
    runs["heldout"] = False
    apply_holdout(runs, "largest-C:0.3")  # 5 runs -> two budgets
    assert runs["heldout"].sum() == 7


def test_weights_expression_weights_the_parametric_fit(store, tmp_path, capsys):
    """Zero weight on the smallest size fits like leaving it out; bad expressions fail early."""
    common = ["--approaches", "3", "--bootstrap", "0", "--grid", "200"]
    out_w, out_h = tmp_path / "w", tmp_path / "h"
    assert main([str(store), "--out", str(out_w), "--weights", "N > min(N)", *common]) == 0
    runs = pd.read_csv(out_w / "runs.csv")
    n_min = runs["N"].min()
    assert main([str(store), "--out", str(out_h), "--holdout", f"N == {n_min}", *common]) == 0
    weighted = json.loads((out_w / "fit.json").read_text())
    dropped = json.loads((out_h / "fit.json").read_text())
    assert weighted["weights"] == "N > min(N)"
    assert "weights per run: `N > min(N)`" in (out_w / "report.md").read_text()
    for name in ("E", "A", "B", "alpha", "beta"):
        assert weighted["approach3"][name] == pytest.approx(dropped["approach3"][name], rel=1e-3)
    capsys.readouterr()
    for bad, msg in (("nope * 2", "not an expression"), ("-C", "non-negative")):
        assert main([str(store), "--out", str(tmp_path / "bad"), f"--weights={bad}", *common]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # nothing written before the error
