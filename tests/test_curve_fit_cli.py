"""Laws of the whole loss curve from the user's side (issue 12): the trainer's learning rate is
the shared schedule's at every step, a run store's runs are curves with that exact LR (a WSD
branch continues its stable run), and ``scaling-fit --law multipower|tissue`` fits, holds out,
predicts, writes fit.json's ``curves`` section, the report and the figure, and refuses bad
input with one line (exit 2) before fitting."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, compose_train

from analysis.cli import main
from analysis.curve_fit import CurveSet, fit_curves, run_curve, store_curves, tissue_window
from analysis.curves import (
    WSD,
    Constant,
    Cosine,
    Curve,
    Drop,
    Shape,
    curve_table,
    multipower,
    multipower_reference,
    tissue,
)
from analysis.fitconfig import FitConfig
from analysis.results import FitReport
from contract import read_summary
from contract.schedule import parse_spec, trainer_schedule
from scaling.module import LitGPT
from scaling.train import plan_run, train

# ----------------------------------------------------------------------------- one schedule

SCHEDULES = [
    ("schedule.kind=constant",),
    ("schedule.kind=cosine", "schedule.final_lr_frac=0.05"),
    ("schedule.kind=wsd", "schedule.cooldown_shape=linear"),
    ("schedule.kind=wsd", "schedule.cooldown_shape=sqrt", "schedule.cooldown_frac=0.3"),
    ("schedule.kind=wsd", "schedule.cooldown_shape=cosine", "schedule.wsd_total_steps=400"),
]


@pytest.mark.parametrize("overrides", SCHEDULES, ids=lambda o: "-".join(o).replace("schedule.", ""))
def test_trainer_lr_is_the_shared_schedule_at_every_step(tiny_cfg, overrides):
    """The real module's optimiser, stepped through the run: its LR is, bit for bit, the peak
    times contract.schedule's multiplier (what analysis rebuilds curves with)."""
    plan = plan_run(tiny_cfg("train.steps=120", "schedule.warmup_frac=0.1", *overrides))
    module = LitGPT(plan.conf, plan.conf.model, plan.budget, plan.lr)
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    s = plan.conf.schedule
    shared = trainer_schedule(
        s.kind.value,
        plan.budget.steps,
        warmup_frac=s.warmup_frac,
        warmup_max=s.warmup_max,
        final_lr_frac=s.final_lr_frac,
        cooldown_frac=s.cooldown_frac,
        cooldown_shape=s.cooldown_shape.value,
        wsd_total_steps=s.wsd_total_steps,
    )
    trained = []
    for _ in range(plan.budget.steps):
        trained.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradients: nothing moves, but the scheduler may step after it
        sched.step()
    assert trained == [plan.lr * shared.multiplier(k) for k in range(plan.budget.steps)]
    assert len(set(trained)) > 3  # a schedule, not a constant: warmup at least


def test_schedule_specs_name_their_errors():
    assert parse_spec("wsd:24000:0.2") == {
        "kind": "wsd",
        "total_steps": 24000,
        "cooldown_frac": 0.2,
    }
    for bad, what in [("cosine", "not valid"), ("wsd:10:1.5", "cooldown_frac '1.5'"),
                      ("linear:10", "not valid"), ("wsd:10:0.2:cubic", "cooldown_shape")]:  # fmt: skip
        with pytest.raises(ValueError, match=what):
            parse_spec(bad)


# ----------------------------------------------------------------------------- our runs


@pytest.fixture(scope="module")
def wsd_store(tmp_path_factory, data_cache):
    """A real stable WSD run (checkpoint at step 24) and a real cooldown branch from it."""
    root = tmp_path_factory.mktemp("wsdstore")
    common = (*TINY, f"runs_dir={root}", f"data.cache_dir={data_cache}", "experiment=wsd")
    common += ("schedule.kind=wsd", "schedule.warmup_frac=0.1", "schedule.wsd_total_steps=40")
    train(compose_train(*common, "train.steps=40", "train.checkpoint_steps=[24]"))
    stable = root / "wsd" / "10k-S40"
    ckpt = stable / "checkpoints" / "step24.ckpt"
    train(compose_train(*common, "train.steps=30", f"train.init_from='{ckpt}'"))
    return root


def test_runs_are_curves_with_the_exact_lr_and_branches_continue_the_stable_run(wsd_store):
    stable_dir, branch_dir = wsd_store / "wsd" / "10k-S40", wsd_store / "wsd" / "10k-S30"
    stable, branch = (
        read_summary(stable_dir / "summary.json"),
        read_summary(branch_dir / "summary.json"),
    )
    assert branch.init_from and branch.init_from.endswith("step24.ckpt")
    curve = run_curve(branch_dir, branch, "train_loss")
    # the branch's LR: the stable run's warmup and plateau, then its own cooldown from 24
    logged = pd.read_csv(stable_dir / "metrics.csv")
    early = logged[logged["step"] <= 24]
    np.testing.assert_allclose(curve.lr[early["step"]], early["lr"], rtol=1e-12)
    assert curve.lr[1] < curve.lr[23] == stable.lr and curve.lr[29] < 0.2 * stable.lr
    own = pd.read_csv(branch_dir / "metrics.csv")
    assert own["step"].min() > 24  # the branch folder holds only its cooldown ...
    assert curve.steps.min() + 1 <= 10  # ... and the curve starts with the stable run's rows
    np.testing.assert_allclose(curve.loss[-1], own["train_loss"].iloc[-1])
    cset = store_curves(wsd_store, "train_loss")
    assert sorted(c.name for c in cset.curves) == ["10k-S30", "10k-S40"]
    # a schedule the user describes gets the runs' peak LR and warmup
    lr = cset.make("cosine:40")
    assert lr.max() == stable.lr and np.argmax(lr) == 3


def test_fit_on_a_run_store_writes_the_curves_section(wsd_store, tmp_path, capsys):
    out = tmp_path / "fit"
    argv = [str(wsd_store), "--law", "tissue", "--out", str(out), "--curve-loss", "train_loss"]
    assert main([*argv, "--bootstrap", "0", "--held-out-curves", "10k-S30"]) == 0, (
        capsys.readouterr()
    )
    data = json.loads((out / "fit.json").read_text())["curves"]
    assert data["law"] == "tissue" and data["loss"] == "train_loss"
    assert {k: set(v) for k, v in data["per_curve"].items()} == dict.fromkeys(
        ("10k-S40", "10k-S30"), {"held_out", "r2", "mean_rel_err", "max_rel_err"}
    )
    assert data["per_curve"]["10k-S30"]["held_out"] and not data["per_curve"]["10k-S40"]["held_out"]
    assert (out / "figures" / "curve_law.png").is_file()


def test_tissue_momentum_window_of_a_run_store_scales_with_each_runs_steps(wsd_store):
    """On a run store Tissue's lambda is per curve, its momentum window curve_decay_window x
    the curve's steps (the paper's 0.999 is a 1000-step window, longer than these runs); curve
    files and curve_decay_window=None keep curve_decay."""
    cset = store_curves(wsd_store, "train_loss")
    assert tissue_window(cset, FitConfig(law="tissue")) == 0.05
    assert tissue_window(cset, FitConfig(law="tissue", curve_decay_window=None)) == 0
    files = [dataclasses.replace(c, source="x.csv") for c in cset.curves]
    assert tissue_window(dataclasses.replace(cset, curves=files), FitConfig(law="tissue")) == 0
    with pytest.raises(ValueError, match="curve_decay_window = 0"):
        FitConfig(curve_decay_window=0)
    # each curve's lambda from its own steps: the 40-step run's 0.9, the 30-step branch's 0.8
    theta = tissue(cset.curves).from_natural({"L0": 1.0, "A": 1.0, "alpha": 0.5, "C": 1.0})
    windowed = tissue(cset.curves, decay_window=0.25)
    for i, curve in enumerate(cset.curves, start=1):
        cols = {"curve": np.full(curve.steps.size, float(i)), "step": curve.steps.astype(float)}
        fixed = tissue(cset.curves, decay=1 - 1 / (0.25 * curve.lr.size))
        np.testing.assert_allclose(windowed.predict(theta, cols), fixed.predict(theta, cols))
        other = tissue(cset.curves, decay=0.999)
        assert not np.allclose(windowed.predict(theta, cols), other.predict(theta, cols))
    assert sorted(c.lr.size for c in cset.curves) == [30, 40]


# ----------------------------------------------------------------------------- synthetic truth

TRUE = {"L0": 2.0, "A": 0.3, "alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.5}
NOISE = 5e-4
TOTAL, PEAK = 4000, 3e-4
SYN = {
    "cosine": Cosine(TOTAL, 200, PEAK, final_frac=0.1),
    "constant": Constant(TOTAL, 200, PEAK),
    "wsd_sqrt": WSD(TOTAL, 200, PEAK, decay_start=3200, shape=Shape.sqrt),
    "drop": Drop(TOTAL, 200, PEAK, at=2000, level_frac=0.3),
    "wsd_linear": WSD(TOTAL, 200, PEAK, decay_start=2800, final_frac=0.1, shape=Shape.linear),
}


@pytest.fixture(scope="module")
def curve_files(tmp_path_factory):
    """Five schedules' MPL curves from TRUE with 0.05% noise, as curve CSV files."""
    folder = tmp_path_factory.mktemp("curves")
    steps = np.arange(240, TOTAL, 50)
    clean = [Curve(n, s.lrs(), steps, np.ones(steps.size)) for n, s in SYN.items()]
    law, table = multipower(clean), curve_table(clean)
    cols = {"curve": table["curve"].to_numpy(float), "step": table["step"].to_numpy(float)}
    truth = law.predict(law.from_natural(TRUE), cols)
    noisy = truth * np.exp(NOISE * np.random.default_rng(0).standard_normal(truth.size))
    for c in clean:
        loss = np.full(TOTAL, np.nan)
        loss[steps] = noisy[(table["name"] == c.name).to_numpy()]
        frame = pd.DataFrame({"step": np.arange(TOTAL), "lr": c.lr, "loss": loss})
        frame.to_csv(folder / f"{c.name}.csv", index=False)
    return folder


@pytest.mark.slow
def test_synthetic_curves_fit_hold_out_and_predict_through_the_cli(curve_files, tmp_path):
    """Parameters in their bootstrap intervals: 30 resamples, so that the 99% interval is not
    just the range of a handful (the range of 8 misses the truth about one time in five)."""
    out = tmp_path / "fit"
    argv = [str(curve_files / "*.csv"), "--law", "multipower", "--out", str(out)]
    argv += ["--held-out-curves", "wsd_linear", "--predict", "cosine:4000,wsd:6000:0.2"]
    assert main([*argv, "--bootstrap", "30", "--ci", "0.99"]) == 0
    report = FitReport.load(out)
    cr = report.curves
    assert cr is not None and cr.per_curve["wsd_linear"].held_out
    assert cr.per_curve["wsd_linear"].mean_rel_err < NOISE  # unseen schedule: within the noise
    assert all(s.r2 > 0.999 for s in cr.per_curve.values())
    for name in ("L0", "A", "alpha"):  # the well-identified parameters, in their intervals
        lo, hi = cr.params[name].ci
        assert lo <= TRUE[name] <= hi and abs(cr.params[name].value / TRUE[name] - 1) < 0.05
    # the prediction of a schedule nobody trained: the truth of that schedule's last step
    cosine = cr.predictions[0]
    truth = multipower_reference(TRUE, np.array(SYN["cosine"].lrs()), [TOTAL - 1])[0]
    assert cosine.total_steps == TOTAL and abs(cosine.final_loss.value / truth - 1) < NOISE
    assert cosine.final_loss.ci[0] <= cosine.final_loss.value <= cosine.final_loss.ci[1]
    rows = pd.read_csv(out / "curves.csv")
    assert set(rows["kind"]) == {"fitted", "held_out", "predicted"}
    assert rows.loc[rows["curve"] == "wsd:6000:0.2", "step"].max() == 5999
    text = (out / "report.md").read_text()
    assert "| wsd_linear | yes |" in text and "`wsd:6000:0.2`" in text


# ----------------------------------------------------------------------------- bad input


def _curve_file(path: Path, lr: np.ndarray | None, loss: np.ndarray) -> str:
    columns = {"step": np.arange(loss.size), **({"lr": lr} if lr is not None else {}), "loss": loss}
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


LR = np.array(Constant(100, 10, 1e-3).lrs())
LOSS = np.where(np.arange(100) % 10 == 5, 3.0, np.nan)
ONE_POINT = np.where(np.arange(100) == 55, 3.0, np.nan)
NAN_LR = np.where(np.arange(100) == 7, np.nan, LR)
BAD = {  # case: (the other curve file's lr and loss, or extra options; the message)
    "one point": ((LR, ONE_POINT), r"bad.csv: 1 logged loss\(es\); a curve needs at least 2"),
    "no lr": ((None, LOSS), r"bad.csv: no column \['lr'\]"),
    "nan lr": ((NAN_LR, LOSS), r"bad.csv, row 9 \(step 7\): lr is nan"),
    "missing held-out": (["--held-out-curves", "nope"], r"\['nope'\] not among the curves"),
    "bad predict": (["--predict", "cosine:x"], r"schedule 'cosine:x': total_steps 'x'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2_before_fitting(case, tmp_path, capsys, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted despite bad input")

    monkeypatch.setattr("analysis.curve_fit.fit", no_fit)
    given, match = BAD[case]
    argv = [_curve_file(tmp_path / "good.csv", LR, LOSS)]
    if isinstance(given, tuple):
        argv.append(_curve_file(tmp_path / "bad.csv", *given))
    else:
        argv += given
    rc = main([*argv, "--law", "multipower", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("scaling-fit: error:") and len(err.splitlines()) == 1, err
    assert re.search(match, err), err
    assert not (tmp_path / "out").exists()


def test_several_sources_need_a_curve_law(tmp_path, capsys):
    assert main(["a.csv", "b.csv", "--out", str(tmp_path / "o")]) == 2
    assert "give one (several only as curve files" in capsys.readouterr().err


# ----------------------------------------------------------------------------- our own runs

ROOT = Path(__file__).resolve().parents[1]
# Two sizes, 188-563 steps of 256 tokens: the smallest grid where a WSD run, its cooldowns and
# cosine runs of three lengths still differ by more than the law's error
TINY_CURVES = (
    "sweep.sizes=[10k,20k]",
    "sweep.tokens=[48000,96000,144000]",
    "sweep.tokens_per_param=[1,1000]",
    "model.seq_len=32",
    "train.eval_tokens=2048",
    "schedule.warmup_max=28",  # 5% of the longest run, the same in every run
    "data.max_bytes=300000",
    "logger.wandb.mode=disabled",
    "trainer.num_threads=1",
    "trainer.progress_every_s=0",
)


@pytest.mark.slow
def test_wsd_sweep_predicts_cosine_runs_final_loss(tmp_path, data_cache):
    """Issue 12's own-runs check at the smallest scale: the real trainer runs the wsd_curves
    and cosine_curves sweeps (2 sizes); the multi-power and Tissue laws fitted on each size's WSD
    run and cooldown branches alone predict the cosine runs' final validation loss, for less compute
    than the cosine grid took."""
    for sweep in ("wsd_curves", "cosine_curves"):
        cmd = [sys.executable, "-m", "scaling.train", "-m", f"+sweep={sweep}", *TINY_CURVES]
        cmd += [f"runs_dir={tmp_path}", f"data.cache_dir={data_cache}"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0 and "completed 6 / diverged 0" in done.stdout, done.stdout
    wsd, cos = store_curves(tmp_path / "wsd_curves"), store_curves(tmp_path / "cosine_curves")
    assert len(wsd.curves) == len(cos.curves) == 6
    errors: dict[str, list[float]] = {"multipower": [], "tissue": []}
    for label in ("10k", "20k"):
        mine = [c for c, s in zip(wsd.curves, wsd.size_labels) if s == label] + [
            dataclasses.replace(c, name=f"cos/{c.name}")
            for c, s in zip(cos.curves, cos.size_labels)
            if s == label
        ]
        held = [c.name for c in mine if c.name.startswith("cos/")]
        cset = CurveSet(mine, wsd.make, [])
        for law in errors:
            config = FitConfig(law=law, bootstrap=0, held_out_curves=held)
            _, rows = fit_curves(cset, config)
            last = rows[rows["kind"] == "held_out"].groupby("curve").tail(1)
            errors[law] += list(np.abs(last["predicted"] / last["loss"] - 1))
    print({law: f"{np.mean(e):.2%} (max {np.max(e):.2%})" for law, e in errors.items()})
    # Measured: multi-power 2.9% mean (max 5.9%), every prediction too low, as at 10k-50k in
    # benchmarks/bench_curve_runs.py (3.9%); Tissue with the run-store momentum window (0.05 x
    # each run's steps) 4.8% (max 6.7%), every prediction too high, where at 10k-50k it meets
    # the 1% (0.83%): these 188-563-step runs of 32-token sequences are far noisier
    # (the WSD-twin guess is off by 2.3% here, 1.2% there). This guards the whole path (real
    # sweeps, exact LR, branches, per-run lambda, fit, prediction) at that level.
    assert np.mean(errors["multipower"]) < 0.05 and np.mean(errors["tissue"]) < 0.07, errors
    flops = {}
    for sweep in ("wsd_curves", "cosine_curves"):
        total = 0.0
        for path in (tmp_path / sweep).glob("*/summary.json"):
            s = read_summary(path)
            start = int(Path(s.init_from).stem.removeprefix("step")) if s.init_from else 0
            total += (s.steps - start) * s.batch_size * s.seq_len * s.flops_per_token["chinchilla"]
        flops[sweep] = total
    assert flops["wsd_curves"] < 0.7 * flops["cosine_curves"]
