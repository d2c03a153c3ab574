"""scaling-suggest: against a fit of synthetic data with a known optimum (tests/fixtures_results),
with LR and batch-size laws, its command planned by the trainer itself, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import TINY, compose_train
from fixtures_results import LAW, TARGET, write_results
from test_hparams import synthetic_grid

from analysis.hparams import HparamsSettings, fit_hparams
from analysis.results import Approach1Result, Approach2Result, Approach3Result, FitReport
from scaling.family import SIZES, model_config, param_counts
from scaling.train import plan_run
from workflows.suggest import SuggestError, main, suggest


def true_n_opt(c: float, k: float = 6.0) -> float:
    """N_opt(C) of the fixture's true law under C = k N D (Hoffmann et al. 2022, eq. 4)."""
    a, b = LAW["alpha"], LAW["beta"]
    g = (a * LAW["A"] / (b * LAW["B"])) ** (1 / (a + b))
    return g * (c / k) ** (b / (a + b))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """fit.json of the fixture's synthetic sweep (the real fitter), with hparams.json beside."""
    out = write_results(tmp_path_factory.mktemp("fit"))
    report = fit_hparams(synthetic_grid(), HparamsSettings(n_bootstrap=0), "synthetic", "6ND")
    (out / "hparams.json").write_text(report.to_json())
    return out


def test_compute_target_gives_the_known_optimum_and_its_loss_interval(results) -> None:
    s = suggest(results / "fit.json", "compute", TARGET)
    assert s.method == "approach3" and s.C_opt == TARGET
    assert s.N_opt == pytest.approx(true_n_opt(TARGET), rel=0.15)
    assert not s.model.family  # 5e9 is past the family's largest size (1B): a new shape
    assert pytest.approx(s.N_opt, rel=0.1) == s.model.N
    assert s.steps * s.batch_size * s.seq_len == s.D
    assert pytest.approx(TARGET, rel=1e-6) == s.C
    true_loss = LAW["E"] + LAW["A"] / s.model.N ** LAW["alpha"] + LAW["B"] / s.D ** LAW["beta"]
    assert s.loss.ci[0] < s.loss.value < s.loss.ci[1]
    assert s.loss.value == pytest.approx(true_loss, rel=0.02)
    assert s.lr is None and s.batch_size == 32  # no hparams given: the config's defaults


def test_hparams_laws_set_batch_and_lr_and_the_command_plans(results, data_cache, tmp_path):
    c = 3e12
    s = suggest(results / "fit.json", "compute", c, hparams_path=results / "hparams.json")
    hp = fit_hparams(synthetic_grid(), HparamsSettings(n_bootstrap=0), "synthetic", "6ND")
    d_ideal = c / (FitReport.load(results).k * s.model.N)
    assert s.batch_size == round(hp.laws["B_D"].predict(D=d_ideal) / 128)
    assert s.lr == pytest.approx(hp.laws["lr_ND"].predict(N=s.model.N, D=d_ideal))
    assert any("outside the hparams grid's N range" in n for n in s.notes)  # 1e4 vs 1e7-3e8
    assert pytest.approx(d_ideal, rel=0.5 * s.batch_size * 128 / d_ideal + 1e-12) == s.D
    # the printed command, as scaling-train composes and plans it, trains exactly this
    overrides = s.command.split()[1:]
    keep = [
        o for o in TINY if o.split("=")[0] not in ("model", "model.seq_len", "train.batch_size")
    ]
    cfg = compose_train(*keep, f"runs_dir={tmp_path}", f"data.cache_dir={data_cache}", *overrides)
    plan = plan_run(cfg)
    assert plan.counts.non_embedding == s.model.N
    assert (plan.budget.tokens, plan.budget.steps) == (s.D, s.steps)
    assert plan.lr == pytest.approx(s.lr, rel=1e-3)


def test_family_size_when_near_and_fixed_n_and_target_loss(results) -> None:
    n_10m = param_counts(model_config("10M", vocab_size=256)).non_embedding
    s = suggest(results / "fit.json", "params", n_10m)
    assert s.model.family and s.model.name == "10M" and n_10m == s.model.N
    report = FitReport.load(results)
    alloc = report.approach3.allocation
    assert alloc.n_opt(s.C_opt) == pytest.approx(n_10m, rel=1e-9)
    assert pytest.approx(alloc.d_opt(s.C_opt), rel=0.01) == s.D
    # a target loss: the compute whose optimum reaches it, by the fitted law
    t = suggest(results / "fit.json", "loss", 2.5)
    law = report.approach3.fit
    got = law.predict({"N": [alloc.n_opt(t.C_opt)], "D": [alloc.d_opt(t.C_opt)]})[0]
    assert got == pytest.approx(2.5, rel=1e-9)
    assert math.isfinite(t.loss.value) and t.model.N > 0


def test_json_output_and_cli(results, capsys) -> None:
    assert main([str(results), "--compute", "1e14", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == 1 and data["hparams"] == str(results / "hparams.json")
    assert data["model"]["family"] and data["model"]["name"] in SIZES
    assert data["command"].startswith(f"scaling-train model={data['model']['name']} ")
    assert main([str(results / "fit.json"), "--compute", "1e14", "--method", "2"]) == 0
    out = capsys.readouterr().out
    assert "approach2 of" in out and "expected loss: n/a" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss", "1.0"], "at or below the fitted irreducible loss E = 1.6"),
        (["--loss", "2.5", "--method", "2"], "--loss needs approach 3's loss law"),
        (["--compute", "1e3"], "no model of the family fits N_opt"),
        (["--compute", "-1"], "give a positive compute"),
    ],
)
def test_bad_targets_are_one_line_errors(results, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(results), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err


def test_a_fit_without_a_usable_law_is_refused(results, tmp_path, capsys) -> None:
    report = FitReport.load(results)
    for i, result in ((1, Approach1Result), (2, Approach2Result), (3, Approach3Result)):
        setattr(report, f"approach{i}", result(error="too few runs"))
    path = report.save(tmp_path / "fit.json")
    with pytest.raises(SuggestError, match="approach 3: too few runs; approach 2: too few"):
        suggest(path, "compute", 1e20)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "bad.json"), "--compute", "1e20"])
    assert exc.value.code == 2 and "bad.json" in capsys.readouterr().err
    (tmp_path / "hparams.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main([str(results), "--compute", "1e14", "--hparams", str(tmp_path / "hparams.json")])
    assert exc.value.code == 2 and "format None is not 1" in capsys.readouterr().err
