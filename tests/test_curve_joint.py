"""Joint curve laws across model sizes (issue 12, analysis/curve_joint.py): every form's map is
differentiated exactly, synthetic curves of four sizes give back the parameters they were made
from (within the bootstrap intervals) through ``scaling-fit --law multipower_joint``, the
published 25M + 100M curves are predicted as well jointly as per size, and bad input is one
line before fitting."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.curve_joint import (
    JOINT_FORMS,
    JOINT_LAWS,
    joint_law,
    parse_size,
    start_from_sizes,
)
from analysis.curves import (
    CURVE_LAWS,
    WSD,
    Constant,
    Cosine,
    Curve,
    CurveError,
    Drop,
    Shape,
    curve_table,
    multipower,
    per_curve,
    read_reference_curve,
)
from analysis.fit import fit
from analysis.results import FitReport

TOTAL, PEAK = 1600, 3e-4
SCHEDULES = {
    "cosine": Cosine(TOTAL, 100, PEAK, final_frac=0.1),
    "constant": Constant(TOTAL, 100, PEAK),
    "wsd": WSD(TOTAL, 100, PEAK, decay_start=1200, shape=Shape.sqrt),
    "drop": Drop(TOTAL, 100, PEAK, at=800, level_frac=0.3),
}
SIZES = {"1M": 1e6, "3M": 3e6, "10M": 1e7, "30M": 3e7}
TRUE = {"L0": 2.0, "p_L0": 0.05, "A": 0.3, "p_A": 0.1, "alpha": 0.5, "B": 400.0, "p_B": -0.1,
        "C": 2.0, "beta": 0.6, "gamma": 0.5}  # fmt: skip
NOISE = 5e-4


def _curves(steps: np.ndarray) -> tuple[list[Curve], list[float]]:
    curves, sizes = [], []
    for label, n in SIZES.items():
        for name, sched in SCHEDULES.items():
            curves.append(Curve(f"{label}/{name}", sched.lrs(), steps, np.ones(steps.size)))
            sizes.append(n)
    return curves, sizes


def _cols(table: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"curve": table["curve"].to_numpy(float), "step": table["step"].to_numpy(float)}


@pytest.mark.parametrize("name", JOINT_FORMS)
def test_every_form_has_an_exact_jacobian_and_round_trips_its_units(name):
    curves, sizes = _curves(np.arange(120, TOTAL, 150))
    law = joint_law(
        name, curves, sizes, tokens_per_step=[1024.0 if n < 5e6 else 2048.0 for n in sizes]
    )
    cols = _cols(curve_table(curves))
    theta = law.start_grid()[0] + 0.02 * np.arange(len(law.params))
    _, jac = law.log_predict_and_jac(theta[None], cols)
    h, numeric = 1e-6, []
    for i in range(theta.size):
        e = np.eye(theta.size)[i] * h
        hi, lo = (law.log_predict_and_jac((theta + s * e)[None], cols)[0][0] for s in (1, -1))
        numeric.append((hi - lo) / (2 * h))
    np.testing.assert_allclose(jac[0], np.array(numeric).T, atol=1e-7, rtol=1e-6)
    natural = {k: float(v) for k, v in law.to_natural(theta).items()}
    np.testing.assert_allclose(law.from_natural(natural), theta, atol=1e-12)
    assert set(law.natural_names) == set(natural) and law.name in CURVE_LAWS


def test_a_joint_law_at_one_size_is_the_multipower_law_with_those_coefficients():
    """The map is the law: at N = N_ref the joint prediction is the MPL's at the base values."""
    curves, sizes = _curves(np.arange(120, TOTAL, 100))
    law = joint_law("multipower_joint", curves, sizes)
    theta = law.from_natural(TRUE)
    table = curve_table(curves)
    one = table[table["name"].str.startswith("3M/")].reset_index(drop=True)
    n = SIZES["3M"] / law.n_ref
    mpl = {k: TRUE[k] for k in ("alpha", "C", "beta", "gamma")}
    mpl |= {k: TRUE[k] * n ** -TRUE[f"p_{k}"] for k in ("L0", "A", "B")}
    base = multipower(curves)
    np.testing.assert_allclose(
        law.predict(theta, _cols(one)), base.predict(base.from_natural(mpl), _cols(one)), rtol=1e-12
    )
    # and the start from exact per-size parameters is the truth itself
    per_size = {}
    for size in SIZES.values():
        x = size / law.n_ref
        p = mpl | {k: TRUE[k] * x ** -TRUE[f"p_{k}"] for k in ("L0", "A", "B")}
        per_size[size] = base.from_natural(p)
    np.testing.assert_allclose(start_from_sizes(law, per_size), theta, atol=1e-10)


def test_size_labels_parse():
    assert [parse_size(s) for s in ("25M", "100k", "1.3B", "2.5e7", "cosine")] == [
        2.5e7, 1e5, 1.3e9, 2.5e7, None
    ]  # fmt: skip


# ----------------------------------------------------------------------------- synthetic truth


@pytest.fixture(scope="module")
def size_folders(tmp_path_factory):
    """Four sizes x four schedules of joint-MPL curves from TRUE with 0.05% noise, as curve
    files in folders named by size (1M/cosine.csv, ...)."""
    root = tmp_path_factory.mktemp("sizes")
    steps = np.arange(120, TOTAL, 40)
    curves, sizes = _curves(steps)
    law, table = joint_law("multipower_joint", curves, sizes), curve_table(curves)
    truth = law.predict(law.from_natural(TRUE), _cols(table))
    noisy = truth * np.exp(NOISE * np.random.default_rng(1).standard_normal(truth.size))
    for c in curves:
        loss = np.full(TOTAL, np.nan)
        loss[steps] = noisy[(table["name"] == c.name).to_numpy()]
        path = root / f"{c.name}.csv"
        path.parent.mkdir(exist_ok=True)
        pd.DataFrame({"step": np.arange(TOTAL), "lr": c.lr, "loss": loss}).to_csv(path, index=False)
    return root


@pytest.mark.slow
def test_joint_fit_of_four_sizes_recovers_the_truth_through_the_cli(size_folders, tmp_path):
    out = tmp_path / "fit"
    argv = [str(size_folders / "*" / "*.csv"), "--law", "multipower_joint", "--out", str(out)]
    argv += ["--held-out-curves", "3M/wsd,30M/drop", "--predict", "cosine:1600"]
    assert main([*argv, "--bootstrap", "8", "--ci", "0.99"]) == 0
    cr = FitReport.load(out).curves
    assert cr is not None and cr.law == "multipower_joint"
    for name in ("L0", "p_L0", "A", "p_A", "alpha"):  # the well-identified parameters
        lo, hi = cr.params[name].ci
        assert lo <= TRUE[name] <= hi, (name, cr.params[name])
    assert abs(cr.params["p_L0"].value - TRUE["p_L0"]) < 0.01
    # per-size coefficients are stored, named by the size folders
    assert {"L0@1M", "A@30M", "B@10M"} <= set(cr.params)
    for held in ("3M/wsd", "30M/drop"):  # unseen schedules at their sizes: within the noise
        assert cr.per_curve[held].held_out and cr.per_curve[held].mean_rel_err < 2 * NOISE
    # one prediction per size, at the truth of that size's cosine
    assert [p.schedule for p in cr.predictions] == [f"cosine:1600@{s}" for s in SIZES]
    curves, sizes = _curves(np.array([TOTAL - 2, TOTAL - 1]))
    law = joint_law("multipower_joint", curves, sizes)
    truth = law.predict(law.from_natural(TRUE), _cols(curve_table(curves)))[1::2]
    for p, t in zip(cr.predictions, truth[:: len(SCHEDULES)]):  # each size's cosine
        assert abs(p.final_loss.value / t - 1) < 2 * NOISE


# ----------------------------------------------------------------------------- published data

REF = Path(__file__).resolve().parents[1] / "data" / "reference" / "multipower_curves"
FITTED = ("cosine_24000", "constant_24000", "wsdcon_9")


@pytest.mark.slow
def test_published_25m_and_100m_jointly_predict_their_six_unseen_schedules():
    """The issue's split at both sizes at once: per-size MPL fits give the joint start; the
    joint form predicts each size's six held-out schedules as well as its own per-size fit."""
    curves, sizes = [], []
    for label in ("25M", "100M"):
        for path in sorted((REF / label).glob("*.csv")):
            c = read_reference_curve(path)
            curves.append(Curve(f"{label}/{c.name}", c.lr, c.steps, c.loss, c.source))
            sizes.append(parse_size(label))
    table = curve_table(curves)
    held = [c.name for c in curves if c.name.split("/")[1] not in FITTED]
    train = table[~table["name"].isin(held)].reset_index(drop=True)
    base = multipower(curves)
    per_size, own = {}, {}
    for label, n in (("25M", 2.5e7), ("100M", 1e8)):
        rows = train[train["name"].str.startswith(f"{label}/")].reset_index(drop=True)
        per_size[n] = fit(base, rows).theta
        mine = table[table["name"].str.startswith(f"{label}/")].reset_index(drop=True)
        own |= per_curve(base, per_size[n], mine, held)
    law = joint_law("multipower_joint", curves, sizes)
    result = fit(law, train, starts=start_from_sizes(law, per_size)[None])
    joint = per_curve(law, result.theta, table, held)
    for label in ("25M", "100M"):
        names = [h for h in held if h.startswith(f"{label}/")]
        r2 = np.mean([joint[h]["r2"] for h in names])
        err = np.mean([joint[h]["mean_rel_err"] for h in names])
        err_own = np.mean([own[h]["mean_rel_err"] for h in names])
        # measured: 25M 0.99612 / 0.163% (own fit 0.137%), 100M 0.99780 / 0.145% (0.165%)
        assert r2 >= 0.995 and err <= 0.0025 and err <= 1.25 * err_own, (label, r2, err, err_own)


# ----------------------------------------------------------------------------- bad input


def _file(path: Path, n: int = 100) -> str:
    lr = np.array(Constant(n, 10, 1e-3).lrs())
    loss = np.where(np.arange(n) % 10 == 5, 3.0, np.nan)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": np.arange(n), "lr": lr, "loss": loss}).to_csv(path, index=False)
    return str(path)


BAD = {  # case: (files under tmp_path, extra options, the message)
    "no size": (["a/x.csv", "b/y.csv"], [], r"curve 'x' .* has no model size N; --law "),
    "one size": (["1M/x.csv", "1M/y.csv"], [], r"needs curves of at least 2 model sizes"),
    "held-out size": (
        ["1M/x.csv", "2M/x.csv"],
        ["--held-out-curves", "2M/x"],
        r"the fitted curves \(not held out\) have 1 model size",
    ),
    "unknown law": (
        ["1M/x.csv", "2M/x.csv"],
        ["--law", "multipower_jiont"],
        r"law = .multipower_jiont. is not valid; use one of .*multipower_joint",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_joint_input_is_one_line_and_exit_2_before_fitting(case, tmp_path, capsys, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted despite bad input")

    monkeypatch.setattr("analysis.curve_fit.fit", no_fit)
    files, extra, match = BAD[case]
    argv = [_file(tmp_path / f) for f in files]
    law = extra[1] if extra[:1] == ["--law"] else "multipower_joint"
    extra = extra[2:] if extra[:1] == ["--law"] else extra
    rc = main([*argv, "--law", law, *extra, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("scaling-fit: error:") and len(err.splitlines()) == 1, err
    assert re.search(match, err), err
    assert not (tmp_path / "out").exists()


def test_joint_law_names_its_bad_arguments():
    curves, sizes = _curves(np.arange(120, TOTAL, 400))
    for kwargs, match in [
        ({"name": "nope"}, r"unknown joint curve law 'nope'; valid: \["),
        ({"sizes": sizes[:-1]}, r"needs the model size N of every curve: 16 curves, 15 sizes"),
        ({"sizes": [0.0, *sizes[1:]]}, r"has model size N = 0.0; need N > 0"),
        ({"tokens_per_step": [1.0] * 15 + [2.0]}, r"different tokens per step"),
    ]:
        args = {"name": "multipower_joint", "curves": curves, "sizes": sizes} | kwargs
        with pytest.raises(CurveError, match=match):
            joint_law(**args)
    assert set(JOINT_LAWS) == set(JOINT_FORMS)
