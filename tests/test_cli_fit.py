"""scaling-fit end to end on a synthetic run store: files, the typed fit.json, FitConfig and its
generated options, named settings, bad input refused before anything is written, --wandb."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import TRUE_A, synthetic, write_run_store

from analysis.cli import apply_holdout, main, parser, run_fit
from analysis.fitconfig import FitConfig, FitConfigError, named_configs
from analysis.results import FitReport
from contract import field_docs


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
    report = FitReport.load(cli_out / "fit.json")
    assert report.convention == "6n" and report.config.convention == "6n"
    assert report.config.bootstrap == 60 and report.config.targets == [1e21, 1e22]
    assert report.excluded[0].status == "diverged"
    for i, ap in report.approaches().items():
        alloc = ap.allocation
        assert alloc.a.ci is not None and alloc.b.ci is not None and alloc.finite, i
        assert alloc.a.value == pytest.approx(TRUE_A, abs=0.06)
    fit3 = report.approach3.fit
    assert list(fit3.params) == ["E", "A", "B", "alpha", "beta"]
    assert all(est.ci is not None for est in fit3.params.values())
    assert fit3.n_starts == 200 and fit3.huber_delta == 1e-3 and fit3.law == "chinchilla"
    assert report.approach1.points[0].run and report.approach1.runs
    held = set(report.heldout_runs)
    assert not held & set(report.approach1.envelope.run)  # the envelope is of fitted runs only
    budget = report.approach2.budgets[0]
    assert budget.runs and budget.n_points == len(budget.runs)
    assert [t.C for t in report.approach3.targets] == [1e21, 1e22]
    t = report.approach3.targets[0]
    assert t.N_opt.ci and t.D_opt.ci and t.loss.ci and t.tokens_per_param.finite
    ho = report.holdout
    assert ho.rule.startswith("largest C 10%: whole budgets") and len(ho.runs) == len(held) > 0
    assert ho.mean_abs_rel_error < 0.02


def test_fit_report_round_trips(cli_out):
    text = (cli_out / "fit.json").read_text()
    report = FitReport.from_json(text)
    assert report.to_json() == text
    assert report.config == FitConfig.load(overrides=json.loads(text)["config"])


def test_fit_report_prediction_is_the_registry_law(cli_out):
    fit3 = FitReport.load(cli_out).approach3.fit
    p = fit3.values()
    n, d = np.array([1e8, 1e9]), np.array([2e9, 3e10])
    expected = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    np.testing.assert_allclose(fit3.predict({"N": n, "D": d}), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{not json", "not JSON"),
        ("[]", "expected an object"),
        ('{"source": "x"}', "format None is not 2"),
        ('{"format": 1}', "format 1 is not 2"),
    ],
)
def test_corrupt_or_old_fit_json_names_the_file(tmp_path, text, reason):
    path = tmp_path / "fit.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        FitReport.load(path)
    assert reason in str(err.value)


def test_fit_json_with_an_unknown_key_names_it(cli_out, tmp_path):
    data = json.loads((cli_out / "fit.json").read_text())
    data["approach2"]["budgets"][0]["colour"] = "red"
    (tmp_path / "fit.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"approach2.budgets\[0\]: unknown keys \['colour'\]"):
        FitReport.load(tmp_path)


def test_prints_summary(store, tmp_path, capsys):
    run_fit(store, tmp_path, FitConfig(bootstrap=20, grid=100, approaches=[3]))
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
    assert FitReport.load(tmp_path).config.wandb_project == "proj"


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
    res = FitReport.load(out)
    lf = res.law_fit
    assert lf.law == "kaplan_ns" and res.approach3.error and res.approach3.fit is None
    for name in ("alpha_N", "alpha_S"):
        lo, hi = lf.params[name].ci
        assert lo < true[name] < hi and hi - lo < 0.2 * true[name], name
    report = (out / "report.md").read_text()
    assert "## Law fit: kaplan_ns" in report and "| alpha_S |" in report
    tex = (out / "table.tex").read_text()
    assert r"$\alpha_S$" in tex and r"(S_c/S)^{\alpha_S}" in tex
    assert r"train\_flop" in tex  # the CSV column named in the caption, escaped
    text = re.sub(r"\$[^$]*\$", "", tex)  # outside math, every _ must be escaped
    assert not re.search(r"(?<!\\)_", text), text


def test_compute_optimal_bands_are_pointwise_bootstrap_intervals(cli_out):
    """Each approach's band agrees with its target intervals and is narrowest where the runs are."""
    res = FitReport.load(cli_out)
    runs_c = [r for r in pd.read_csv(cli_out / "runs.csv")["C"] if r > 0]
    for i, ap in res.approaches().items():
        band = ap.band
        c = np.array(band.C)
        assert c.min() < min(runs_c) and c.max() >= 1e22
        for t in ap.targets:
            j = band.C.index(t.C)
            for name in ("N_opt", "D_opt"):
                ci = getattr(band, f"{name}_ci")
                ends = [ci[0][j], ci[1][j]]
                assert ends == pytest.approx(getattr(t, name).ci, rel=1e-9), (i, name)
        lo, hi = (np.array(e) for e in band.N_opt_ci)
        line = ap.allocation.n_opt(c)
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
    weighted = FitReport.load(out_w)
    dropped = FitReport.load(out_h)
    assert weighted.config.weights == "N > min(N)"
    assert "weights per run: `N > min(N)`" in (out_w / "report.md").read_text()
    for name in ("E", "A", "B", "alpha", "beta"):
        w, d = weighted.approach3.fit.params[name], dropped.approach3.fit.params[name]
        assert w.value == pytest.approx(d.value, rel=1e-3)
    capsys.readouterr()
    for bad, msg in (("nope * 2", "not an expression"), ("-C", "non-negative")):
        assert main([str(store), "--out", str(tmp_path / "bad"), f"--weights={bad}", *common]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # nothing written before the error


# ---- FitConfig: every field is an option and a YAML key; named settings ----


def test_every_fitconfig_field_is_an_option_and_a_yaml_key(tmp_path):
    fields = [f.name for f in dataclasses.fields(FitConfig)]
    dests = {a.dest for a in parser()._actions}
    assert set(fields) <= dests
    assert set(field_docs(FitConfig)) == set(fields)  # a docstring per field (the --help text)
    # every field round-trips through YAML and the options override it field by field
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text(FitConfig(law="kaplan_nd", targets=[1e20], grid=7).to_yaml())
    assert FitConfig.load(yaml_file) == FitConfig(law="kaplan_nd", targets=[1e20], grid=7)
    loaded = FitConfig.load(yaml_file, {"grid": 9, "columns": {"N": "params"}})
    assert (loaded.grid, loaded.law, loaded.columns) == (9, "kaplan_nd", {"N": "params"})


@pytest.mark.parametrize("name", named_configs())
def test_named_configs_load(name):
    assert named_configs() == ["chinchilla_reference", "demo", "olmo_reference"]
    assert isinstance(FitConfig.load(name), FitConfig)


def test_demo_config_is_todays_demo():
    demo = FitConfig.load("demo")
    assert (demo.bootstrap, demo.targets, demo.wandb) == (1000, [1e13, 1e14], False)


def test_yaml_typo_fails_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bootstrapp: 10\n")
    with pytest.raises(FitConfigError, match=r"bootstrapp.*bad\.yaml|bad\.yaml.*bootstrapp"):
        FitConfig.load(bad)
    bad.write_text("bootstrap: many\n")
    with pytest.raises(FitConfigError, match="bootstrap"):
        FitConfig.load(bad)
    with pytest.raises(FitConfigError, match="demo"):
        FitConfig.load("no_such_setting")
    for text, why in (("a: [1\n", "is not YAML"), ("- 1\n- 2\n", "bad.yaml")):
        bad.write_text(text)
        with pytest.raises(FitConfigError, match=why):
            FitConfig.load(bad)


def test_config_on_the_command_line_with_field_overrides(tmp_path):
    csv = tmp_path / "chin.csv"
    rng = np.random.default_rng(0)
    n = np.repeat(np.logspace(6, 8, 4), 4)
    c = np.tile(np.logspace(17, 19, 4), 4)
    loss = 1.7 + 400 / n**0.34 + 410 / (c / (6 * n)) ** 0.28
    pd.DataFrame(
        {"Model Size": n, "Training FLOP": c, "loss": loss * np.exp(0.002 * rng.standard_normal(16))}
    ).to_csv(csv, index=False)
    out = tmp_path / "out"
    argv = [str(csv), "--out", str(out), "--config", "chinchilla_reference",
            "--bootstrap", "0", "--grid", "50", "--approaches", "3", "--target", "1e20"]  # fmt: skip
    assert main(argv) == 0
    config = FitReport.load(out).config
    assert config.columns == {"N": "Model Size", "C": "Training FLOP", "loss": "loss"}  # from YAML
    assert (config.drop_highest, config.bootstrap, config.targets) == (5, 0, [1e20])  # overrides
    assert "drop_highest: 5" in (out / "report.md").read_text()  # the report says how it was made


# ---- issue 17 item 8: bad input is one line, exit 2, nothing written, checked first ----


BAD_INPUT = [
    (["--law", "nonexistent"], "law = 'nonexistent' is not valid"),
    (["--target", "-1"], "targets = [-1.0] is not valid"),
    (["--target", "inf"], "targets = [inf] is not valid"),
    (["--target", "1e21,abc"], "argument --targets/--target: '1e21,abc' is not a comma-separated"),
    (["--approaches", "abc"], "argument --approaches: 'abc' is not a comma-separated list"),
    (["--approaches", "4"], "approaches = [4] is not valid"),
    (["--holdout", "largest-C:abc"], "holdout = 'largest-C:abc' is not valid"),
    (["--holdout", "largest-C:1.5"], "holdout = 'largest-C:1.5' is not valid"),
    (["--asymmetry", "0"], "asymmetry = 0.0 is not valid"),
    (["--ci", "1.5"], "ci = 1.5 is not valid"),
    (["--convention", "7n"], "convention = '7n' is not valid"),
    (["--columns", "N"], "column mapping 'N' is not TARGET=SOURCE"),
    (["--holdout", "__import__('os')"], "hold-out rule"),
    (["--config", "nope"], "unknown fit config 'nope'"),
]


@pytest.mark.parametrize("extra, message", BAD_INPUT, ids=[" ".join(b[0]) for b in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_nothing_written(store, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    with _exit_code() as code:
        code.value = main([str(store), "--out", str(out), "--bootstrap", "0", *extra])
    err = capsys.readouterr().err
    assert code.value == 2, err
    assert err.count("\n") == 1 and err.startswith("scaling-fit: error: "), err
    assert message in err, err
    assert not out.exists()


def test_out_naming_an_existing_file_is_refused(store, tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    for out in (target, target / "sub"):
        assert main([str(store), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is an existing file" in err, err
    assert target.read_text() == "keep me"


def test_out_that_would_overwrite_the_source_is_refused(tmp_path, capsys):
    runs, _ = synthetic(curve_points=2)
    csv = tmp_path / "runs.csv"
    runs.to_csv(csv, index=False)
    before = csv.read_bytes()
    assert main([str(csv), "--out", str(tmp_path)]) == 2  # would write runs.csv over it
    assert "would overwrite the source" in capsys.readouterr().err
    assert csv.read_bytes() == before and sorted(tmp_path.iterdir()) == [csv]


def test_out_inside_the_run_store_is_refused(store, capsys):
    before = sorted(store.rglob("*"))
    assert main([str(store), "--out", str(store / "results")]) == 2
    assert "inside the source" in capsys.readouterr().err
    assert main([str(store), "--out", str(store)]) == 2
    assert sorted(store.rglob("*")) == before


def test_collect_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("size,loss\n1,2\n")
    code = main([str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("scaling-fit: error: "), err
    assert not (tmp_path / "o").exists()


def test_holdout_selecting_nothing_warns(store, tmp_path, capsys):
    out = tmp_path / "o"
    argv = [str(store), "--out", str(out), "--bootstrap", "0", "--grid", "50",
            "--approaches", "3", "--holdout", "N > 1e30"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "scaling-fit: warning: hold-out rule 'N > 1e30'" in err and "selected no" in err
    report = FitReport.load(out)
    assert report.holdout.error and report.warnings
    assert "selected no usable runs" in (out / "report.md").read_text()


def test_implausible_exponents_are_flagged_and_readable(tmp_path, capsys):
    """Loss rising with D (beta < 0): flagged in the report and terminal; N_coef NaN is read."""
    n = np.repeat([1e5, 2e5, 4e5, 8e5], 4)
    d = np.tile([1e6, 2e6, 4e6, 8e6], 4)
    loss = 2.0 + 30 / n**0.3 + 1e-4 * d**0.3
    csv = tmp_path / "rising.csv"
    pd.DataFrame({"N": n, "D": d, "loss": loss}).to_csv(csv, index=False)
    out = tmp_path / "o"
    assert main([str(csv), "--out", str(out), "--bootstrap", "0", "--approaches", "3"]) == 0
    captured = capsys.readouterr()
    assert "implausible approach-3 exponents: beta = -" in captured.err
    report = FitReport.load(out)
    assert report.approach3.implausible() and not report.approach3.allocation.finite
    assert "implausible approach-3 exponents" in (out / "report.md").read_text()
    assert "\\bottomrule" in (out / "table.tex").read_text()


class _Code:
    value: int | None = None


class _exit_code:
    """Catch argparse's SystemExit as an exit code, so both error paths are tested alike."""

    def __enter__(self) -> _Code:
        self.code = _Code()
        return self.code

    def __exit__(self, kind, err, tb) -> bool:
        if kind is SystemExit:
            self.code.value = err.code
            return True
        return False
