"""scaling-verify: a fit predicts a run before it is trained, the run is trained, the two meet.

Synthetic ground truth: runs drawn from a known Chinchilla law with log-normal noise are fitted
(a CSV source), and a fake trainer returns the law's loss at the chosen (N, D) with the same
noise, so the predicted interval can be checked against the truth. The slow tests train for
real: a tiny IsoFLOP sweep on CPU, its fit, and the verification run.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TINY
from fixtures_analysis import true_loss, true_n_opt

import workflows.verify as verify_mod
from analysis.cli import run_fit
from analysis.fitconfig import FitConfig
from analysis.plots import load_results, render
from analysis.report import markdown_report
from analysis.results import FitReport
from analysis.wandb_log import summary, verification_table
from workflows.verify import MIN_STEPS, TrainedRun, VerifyError, judge, main, merged, verify

BUDGETS = tuple(float(c) for c in np.logspace(13, 15, 5))  # 1e13..1e15 FLOPs, C = 6 N D
NOISE = 0.01  # log-normal noise of each run's final loss (1%)


def synthetic_fit(
    tmp: Path, seed: int, bootstrap: int, approaches=(2, 3), noise: float = NOISE
) -> Path:
    """Fit 5 IsoFLOP budgets x 5 sizes drawn from the true law; the results folder."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in BUDGETS:
        for n in true_n_opt(c) * np.logspace(-0.8, 0.8, 5):
            n, d = float(round(n)), c / (6 * round(n))
            loss = true_loss(n, d) * math.exp(noise * rng.standard_normal())
            rows.append({"run": f"r{len(rows)}", "N": n, "D": d, "C": c, "loss": loss})
    src = tmp / f"runs-{seed}.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    out = tmp / f"results-{seed}"
    config = FitConfig(approaches=list(approaches), bootstrap=bootstrap, grid=32, seed=seed)
    run_fit(src, out, config, quiet=True)
    return out


class FakeTrainer:
    """Stands in for scaling-train: the true law's loss at the plan's (N, D), with noise."""

    def __init__(self, seed: int = 0, noise: float = NOISE) -> None:
        self.rng, self.noise, self.calls, self.truth = np.random.default_rng(seed), noise, [], None

    def __call__(self, p, log) -> list[TrainedRun]:
        self.truth = float(true_loss(p.model.N, p.D))
        self.calls += p.names
        log(f"TRAINING {', '.join(p.names)}")
        noise = np.exp(self.noise * self.rng.standard_normal(len(p.seeds)))
        return [
            TrainedRun(name, Path("runs") / name, seed, self.truth * e, 3e-3)
            for name, seed, e in zip(p.names, p.seeds, noise)
        ]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """One synthetic fit (approaches 2 and 3, 50 resamples) shared by the fast tests."""
    return synthetic_fit(tmp_path_factory.mktemp("verify"), seed=0, bootstrap=50)


@pytest.fixture
def results(fitted: Path, tmp_path: Path) -> Path:
    """A private copy of the shared fit, for a test to write its verification into."""
    out = tmp_path / "results"
    out.mkdir()
    for f in ("fit.json", "runs.csv"):
        (out / f).write_bytes((fitted / f).read_bytes())
    return out


@pytest.fixture
def fake(monkeypatch) -> FakeTrainer:
    trainer = FakeTrainer()
    monkeypatch.setattr(verify_mod, "run_training", trainer)
    return trainer


def test_verification_is_predicted_first_then_recorded(results, fake, tmp_path) -> None:
    lines: list[str] = []
    c = 5 * BUDGETS[-1]
    v = verify(results, tmp_path / "runs", c, seeds=3, log=lines.append)
    text = "\n".join(lines)
    # the prediction with its interval is printed before the first training starts
    assert text.index("PREDICTED final loss") < text.index("TRAINING")
    assert "not an extrapolation" not in text
    assert len(fake.calls) == 3 and len(set(fake.calls)) == 3  # one run name per seed
    assert v.method == "approach3" and v.extrapolation == pytest.approx(5)
    assert v.C_trained == pytest.approx(c, rel=0.01)  # D rounded to whole steps only
    assert v.steps * v.batch_size * v.seq_len == v.D
    lo, hi = v.predicted.ci
    assert lo < v.predicted.value < hi and lo <= fake.truth <= hi
    losses = [r.loss for r in v.runs]
    assert v.observed == pytest.approx(np.mean(losses))
    assert v.seed_std == pytest.approx(np.std(losses, ddof=1))
    assert v.seed_range == [min(losses), max(losses)]
    j_lo, j_hi = v.judged_interval
    assert j_lo < lo and j_hi > hi  # widened by the seed noise
    assert v.inside_interval == (j_lo <= v.observed <= j_hi)
    assert v.rel_error == pytest.approx((v.predicted.value - v.observed) / v.observed)
    # recorded: fit.json (typed, round trip), report.md, the W&B summary and table
    stored = FitReport.load(results).verification
    assert stored == v
    assert "## Verification" in (results / "report.md").read_text()
    assert "verification/observed" in summary(FitReport.load(results))
    assert verification_table(FitReport.load(results))["N"].tolist() == [v.N]


def test_the_interval_matches_the_fits_own_bootstrap(results, fake, tmp_path) -> None:
    """The refit uses the stored FitConfig (resamples, seed): at a target C the fit predicted,
    the interval at the fit's own N_opt, D_opt is the one fit.json stores."""
    report = FitReport.load(results)
    target = report.approach3.targets[0]
    law = report.approach3.fit
    p = verify_mod.plan(results, tmp_path / "runs", target.C, log=lambda s: None)
    lo, hi = p.predicted.ci
    # the chosen (N, D) is a family size near N_opt, not N_opt: compare the relative widths
    width = (target.loss.ci[1] - target.loss.ci[0]) / target.loss.value
    assert (hi - lo) / p.predicted.value == pytest.approx(width, rel=0.3)
    assert p.predicted.value == pytest.approx(float(law.predict({"N": [p.model.N], "D": [p.D]})[0]))
    assert not fake.calls


def test_one_seed_is_judged_against_the_bare_interval(results, fake, tmp_path) -> None:
    v = verify(results, tmp_path / "runs", 3 * BUDGETS[-1], log=lambda s: None)
    assert math.isnan(v.seed_std) and v.judged_interval == v.predicted.ci
    assert any("one seed" in n for n in v.notes)


def test_judge_widens_in_quadrature_at_the_coverage() -> None:
    """Interval [1.9, 2.2] around 2.0, seeds 2.3 and 2.5: mean 2.4, s = 0.1414, noise of the mean
    1.645 x 0.1 = 0.1645; judged [2 - hypot(0.1, 0.1645), 2 + hypot(0.2, 0.1645)]."""
    model = verify_mod.ModelChoice("1M", 4, 9, 144, 1_003_104, True)
    p = verify_mod.Plan(
        method="approach3", C=1e15, model=model, D=10, steps=1, batch_size=1, seq_len=10,
        C_trained=1e15, extrapolation=5, lr=None, lr_note="", predicted=verify_mod.Estimate(
            2.0, [1.9, 2.2]), interval="", ci=0.9, overrides=[], seeds=[0, 1], run_base="x",
        names=["a", "b"],
    )  # fmt: skip
    runs = [TrainedRun("a", Path("a"), 0, 2.3, 1e-3), TrainedRun("b", Path("b"), 1, 2.5, 1e-3)]
    v = judge(p, runs)
    noise = 1.6448536 * 0.1
    assert v.judged_interval == pytest.approx(
        [2 - math.hypot(0.1, noise), 2 + math.hypot(0.2, noise)]
    )
    assert v.inside_interval is False  # 2.4 > 2.2585
    assert v.rel_error == pytest.approx((2.0 - 2.4) / 2.4)


def test_parity_figure_marks_the_verification_run(results, fake, tmp_path) -> None:
    verify(results, tmp_path / "runs", 4 * BUDGETS[-1], seeds=2, log=lambda s: None)
    fig = render("parity", load_results(results))
    marked = [
        ax for ax in fig.axes if any(a.get_gid() == "runs:verification" for a in ax.get_children())
    ]
    assert len(marked) == 2  # predicted-vs-observed panel and residuals panel
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(lab.startswith("verification, ") for lab in labels)


def test_target_inside_the_fitted_range_warns_and_still_trains(results, fake, tmp_path) -> None:
    lines: list[str] = []
    v = verify(results, tmp_path / "runs", BUDGETS[2], log=lines.append)
    assert any(
        "not an extrapolation" in s and s.startswith("scaling-verify: warning") for s in lines
    )
    assert any("not an extrapolation" in n for n in v.notes) and fake.calls


def _without(results: Path, approach: str) -> None:
    report = FitReport.load(results)
    setattr(report, approach, None)
    report.save(results / "fit.json")


@pytest.mark.parametrize(
    ("missing", "method", "match"),
    [
        ("approach3", "3", "--method 3: .*approach 3: not computed"),
        ("approach2", "2", "--method 2: .*approach 2: not computed"),
    ],
)
def test_fit_without_the_methods_approach_fails_before_training(
    results, fake, tmp_path, missing, method, match
) -> None:
    _without(results, missing)
    with pytest.raises(VerifyError, match=match):
        verify(results, tmp_path / "runs", 5 * BUDGETS[-1], method=method, log=lambda s: None)
    assert not fake.calls and not (tmp_path / "runs").exists()


def test_approach2_fit_verifies_with_its_minima_interval(results, fake, tmp_path) -> None:
    _without(results, "approach3")
    v = verify(results, tmp_path / "runs", 5 * BUDGETS[-1], log=lambda s: None)
    assert v.method == "approach2" and "Student-t" in v.interval
    lo, hi = v.predicted.ci
    assert lo < v.predicted.value < hi
    fig = render("parity", load_results(results))  # no approach 3: the verification alone
    assert any(a.get_gid() == "runs:verification" for a in fig.axes[0].get_children())


@pytest.mark.parametrize(
    ("compute", "match"),
    [
        (1e6, "no model of the family fits N_opt"),
        (2e10, f"fewer than {MIN_STEPS}"),
        (-1.0, "must be a finite number of FLOPs > 0"),
        (math.inf, "must be a finite number of FLOPs > 0"),
    ],
)
def test_compute_no_size_fits_fails_before_training(
    results, fake, tmp_path, compute, match
) -> None:
    with pytest.raises(VerifyError, match=match):
        verify(results, tmp_path / "runs", compute, log=lambda s: None)
    assert not fake.calls and not (tmp_path / "runs").exists()


def test_missing_or_corrupt_fit_is_one_error_line(results, fake, tmp_path, capsys) -> None:
    (results / "fit.json").write_text('{"format": 2, "source": ')
    assert main([str(results), "--runs", str(tmp_path / "runs"), "--compute", "1e16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scaling-verify: error: cannot read fit result") and "\n" not in err
    assert main([str(tmp_path / "nowhere"), "--runs", "r", "--compute", "1e16"]) == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(VerifyError, match="--seeds 0 must be >= 1"):
        verify(results, tmp_path / "runs", 1e16, seeds=0)
    assert not fake.calls and not (tmp_path / "runs").exists()


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scaling-verify") and "--compute" in out and "--seeds" in out


def test_later_overrides_replace_earlier_ones() -> None:
    assert merged(["a=1", "++d={}", "b=2"], ["a=3", "+c=4", "d={}"]) == [
        "b=2",
        "a=3",
        "+c=4",
        "d={}",
    ]


def test_copied_settings_compose(tmp_path) -> None:
    """The fitted runs' settings as overrides compose to the same values (quoting, dicts, lists)."""
    from conftest import compose_train
    from omegaconf import OmegaConf

    base = ("train.tokens=1e5", "optim.lr_table={}")
    ref = compose_train(*base, "++optim.lr_table={10k:0.01,20k:0.02}", "optim.betas=[0.8,0.9]",
                        f"data.path={tmp_path}/a b", "schedule.kind=wsd", "model.seq_len=32")  # fmt: skip
    cfg = OmegaConf.to_container(ref, resolve=True)
    again = compose_train(*base, *verify_mod.copied_overrides(cfg))
    for section in ("data", "optim", "schedule"):
        assert again[section] == ref[section]
    assert again.model.seq_len == 32 and again.model.name == ref.model.name


@pytest.mark.slow
def test_interval_covers_the_truth_at_its_nominal_rate(tmp_path, monkeypatch) -> None:
    """Over 40 synthetic studies (25 runs, 1% noise, 200 resamples), each verified at 5x its
    largest budget with 3 seeds, the 90% interval covers the true loss at the chosen (N, D) in
    0.78-0.99 of them (2 binomial sd at 40 draws: 0.095). Measured: 0.925 (README, Verify a fit)."""
    covered, inside = [], []
    for draw in range(40):
        out = synthetic_fit(tmp_path, seed=draw, bootstrap=200, approaches=(3,))
        trainer = FakeTrainer(seed=draw)
        monkeypatch.setattr(verify_mod, "run_training", trainer)
        v = verify(out, tmp_path / "runs", 5 * BUDGETS[-1], seeds=3, log=lambda s: None)
        lo, hi = v.predicted.ci
        covered.append(lo <= trainer.truth <= hi)
        inside.append(v.inside_interval)
    rate, judged = float(np.mean(covered)), float(np.mean(inside))
    print(
        f"coverage of the truth {rate:.3f}, observed mean inside the judged interval {judged:.3f}"
    )
    assert 0.78 <= rate <= 0.99
    assert judged >= 0.78


SWEEP = (
    "+sweep=isoflop",
    "sweep.budgets=[1e10,2e10,4e10]",
    "sweep.sizes=[10k,20k,50k]",
    "sweep.min_steps=20",
    "sweep.tokens_per_param=[0.1,1000]",
    "hydra/launcher=basic",
    *(o for o in TINY if not o.startswith("model=")),
)


@pytest.mark.slow
def test_real_verification_trains_the_predicted_run(tmp_path, data_cache) -> None:
    """A tiny real study on CPU (9 runs), its fit, then scaling-verify trains the predicted run
    (2 seeds, in parallel by the joblib launcher) with the fitted runs' settings and records it;
    a rerun reuses the finished runs."""
    runs = tmp_path / "runs"
    common = (f"runs_dir={runs}", f"data.cache_dir={data_cache}")
    cmd = [sys.executable, "-m", "scaling.train", "-m", *SWEEP, *common]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "results"
    run_fit(runs / "isoflop", out, FitConfig(bootstrap=50, grid=64), quiet=True)
    from analysis.plots import plot_all

    plot_all(out, fmt=("png",))
    lines: list[str] = []
    tiny = ("logger.wandb.mode=disabled", "trainer.progress_every_s=0", "trainer.num_threads=1",
            "hydra/launcher=local")  # fmt: skip
    v = verify(out, runs, 3 * 4e10, seeds=2, overrides=tiny, log=lines.append)
    assert "PREDICTED final loss" in "\n".join(lines)
    run, other = v.runs  # two seeds, trained in parallel by the joblib launcher
    assert (run.seed, other.seed) == (0, 1) and run.loss != other.loss
    summary_path = Path(run.path) / "summary.json"
    assert summary_path.is_file() and math.isfinite(v.observed) and v.seed_std > 0
    cfg = (Path(run.path) / "config.yaml").read_text()
    assert "batch_size: 8" in cfg and "seq_len: 32" in cfg  # the fitted runs' settings
    assert not any("trained N" in n for n in v.notes)  # N and D as predicted
    assert FitReport.load(out).verification == v
    assert "## Verification" in (out / "report.md").read_text()
    assert (out / "figures" / "parity.png").is_file()
    stamp = summary_path.stat().st_mtime_ns
    again = verify(out, runs, 3 * 4e10, seeds=2, overrides=tiny, log=lambda s: None)
    assert again.observed == v.observed and summary_path.stat().st_mtime_ns == stamp
    print(markdown_report(FitReport.load(out)).split("## Verification")[1][:600])


@pytest.mark.slow
def test_wandb_analysis_run_carries_the_verification(results, fake, tmp_path, monkeypatch) -> None:
    """The W&B analysis run (offline) has the verification numbers in its summary and a table."""
    from test_wandb_log import read_flushed

    from analysis.wandb_log import log_analysis

    for key, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"),
                       ("WANDB_DISABLE_GIT", "true"), ("WANDB_DIR", str(tmp_path))):  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    v = verify(results, tmp_path / "runs", 5 * BUDGETS[-1], seeds=2, log=lambda s: None)
    logged = read_flushed(log_analysis(results, project="scaling-test", group="verify-test"))
    s = logged["summary"]
    assert s["verification/observed"] == pytest.approx(v.observed)
    assert (s["verification/predicted_lo"], s["verification/predicted_hi"]) == tuple(v.predicted.ci)
    assert s["verification/inside_interval"] == v.inside_interval and s["verification/seeds"] == 2
    (row,) = logged["history"].to_dict("records")
    assert row["verification._type"] == "table-file" and row["verification.nrows"] == 1


def test_a_fit_without_bootstrap_verifies_without_a_verdict(results, fake, tmp_path) -> None:
    report = FitReport.load(results)
    report.config.bootstrap = 0
    report.save(results / "fit.json")
    v = verify(results, tmp_path / "runs", 5 * BUDGETS[-1], seeds=2, log=lambda s: None)
    assert v.predicted.ci is None and v.inside_interval is None and v.judged_interval is None
    assert "no interval to judge" in (results / "report.md").read_text()
    assert FitReport.load(results).verification == v
    fig = render("parity", load_results(results))
    assert any(a.get_gid() == "runs:verification" for a in fig.axes[0].get_children())
