"""Laws of the whole loss curve (issue 12): schedules, exact fast evaluation, fits, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.curves import (
    WSD,
    Constant,
    Cosine,
    Curve,
    CurveError,
    Drop,
    Shape,
    block_groups,
    curve_table,
    held_out_rows,
    multipower,
    multipower_reference,
    per_curve,
    read_curve,
    read_reference_curve,
    reference_to_csv,
    tissue,
    trainer_schedule,
)
from analysis.fit import FitError, Objective, batched_lbfgs, bootstrap, fit, interval
from scaling.config import CooldownShape, ScheduleConfig, ScheduleKind
from scaling.module import lr_multiplier

REF = Path(__file__).resolve().parents[1] / "data" / "reference" / "multipower_curves"
TRAIN = ("cosine_24000", "constant_24000", "wsdcon_9")


def cols_of(table: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"curve": table["curve"].to_numpy(float), "step": table["step"].to_numpy(float)}


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "kw",
    [
        {"kind": "constant"},
        {"kind": "cosine", "final_lr_frac": 0.1},
        {"kind": "cosine", "warmup_frac": 0.0},
        {"kind": "wsd", "cooldown_shape": "sqrt"},
        {"kind": "wsd", "cooldown_shape": "linear", "cooldown_frac": 0.3},
        {"kind": "wsd", "cooldown_shape": "cosine", "wsd_total_steps": 900},
    ],
)
def test_trainer_schedule_is_the_trainers_lr_multiplier(kw):
    total = 500
    cfg = dict(kw)
    cfg["kind"] = ScheduleKind[cfg["kind"]]
    if "cooldown_shape" in cfg:
        cfg["cooldown_shape"] = CooldownShape[cfg["cooldown_shape"]]
    sched = ScheduleConfig(**cfg)
    ours = trainer_schedule(total_steps=total, **kw).lrs()
    theirs = [lr_multiplier(s, total, sched) for s in range(total)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-15, atol=0)


def test_reference_schedules_rebuild_every_logged_lr():
    for path in sorted(REF.glob("*/*.csv")):
        curve = read_reference_curve(path)  # raises, naming the row, on any mismatch
        assert curve.lr[2160] == pytest.approx(3e-4) and curve.lr[0] == 0.0
        assert curve.peak_step == 2160


def test_decay_shapes_reach_their_final_value():
    for shape in Shape:
        s = WSD(100, 10, 1.0, False, 50, 0.1, shape, decay_end=90)
        lr = s.lrs()
        assert lr[49] == 1.0 and lr[90] == pytest.approx(0.1) and lr[99] == pytest.approx(0.1)
        assert np.all(np.diff(lr[50:]) <= 1e-15)
    with pytest.raises(ValueError, match="exponential decay needs final_frac > 0"):
        WSD(100, 10, decay_start=50, shape=Shape.exponential)


# ----------------------------------------------------------------------------- exactness


def naive_multipower(p: dict, lr: np.ndarray, t: int, warmup_drop: bool = True) -> float:
    """The MPL at step t as written in the paper: a double loop over steps (from step 1, as
    the paper's code sums, or from the peak)."""
    first = 1 if warmup_drop else int(np.argmax(lr)) + 1
    drop = 0.0
    for k in range(first, t + 1):
        s_k = sum(lr[k : t + 1])
        g = 1.0 - (p["C"] * lr[k] ** -p["gamma"] * s_k + 1.0) ** -p["beta"]
        drop += (lr[k - 1] - lr[k]) * g
    return p["L0"] + p["A"] * sum(lr[: t + 1]) ** -p["alpha"] - p["B"] * drop


def naive_tissue(p: dict, lr: np.ndarray, t: int, lam: float) -> float:
    peak = int(np.argmax(lr))
    m = s2 = 0.0
    for i in range(peak + 1, t + 1):
        m = lam * m + (lr[i - 1] - lr[i])
        s2 += m
    return p["L0"] + p["A"] * sum(lr[: t + 1]) ** -p["alpha"] - p["C"] * s2


def small_curves(total: int = 240, peak: float = 1e-3) -> list[Curve]:
    scheds = [
        Cosine(total, 20, peak, final_frac=0.1),
        Constant(total, 20, peak),
        WSD(total, 20, peak, decay_start=160, final_frac=0.05, shape=Shape.exponential),
        WSD(total, 20, peak, decay_start=150, shape=Shape.sqrt),
        Drop(total, 20, peak, at=120, level_frac=0.3),
    ]
    steps = np.arange(3, total, 7)
    return [Curve(f"s{i}", s.lrs(), steps, np.full(steps.size, 3.0)) for i, s in enumerate(scheds)]


MPL_TRUE = {"L0": 2.0, "A": 0.8, "alpha": 0.45, "B": 300.0, "C": 2.0, "beta": 0.6, "gamma": 0.5}


@pytest.mark.parametrize("warmup_drop", [True, False])
def test_fast_evaluation_equals_the_double_loop(warmup_drop):
    curves = small_curves()
    table = curve_table(curves)
    law, tis = multipower(curves, warmup_drop=warmup_drop), tissue(curves, decay=0.99)
    tis_p = {"L0": 2.0, "A": 0.8, "alpha": 0.45, "C": 0.5}
    fast = law.predict(law.from_natural(MPL_TRUE), cols_of(table))
    fast_t = tis.predict(tis.from_natural(tis_p), cols_of(table))
    for (cid, step), f, ft in zip(table[["curve", "step"]].to_numpy(), fast, fast_t):
        lr = curves[cid - 1].lr
        naive = naive_multipower(MPL_TRUE, lr, step, warmup_drop)
        assert f == pytest.approx(naive, rel=1e-12)
        ref = multipower_reference(MPL_TRUE, lr, [step], warmup_drop)[0]
        assert ref == pytest.approx(naive, rel=1e-12)
        assert ft == pytest.approx(naive_tissue(tis_p, lr, step, 0.99), rel=1e-12)


def test_warmup_change_to_zero_refused():
    lr = Constant(50, 5, 1e-3).lrs()
    lr[2] = 0.0  # a warmup that falls back to 0 at step 2
    curve = Curve("c", lr, np.array([10, 40]), np.array([3.0, 2.9]))
    table = curve_table([curve])
    with pytest.raises(CurveError, match="lr changes to 0 at step 2"):
        multipower([curve]).predict(np.zeros(7), cols_of(table))
    multipower([curve], warmup_drop=False).predict(np.zeros(7), cols_of(table))


def test_far_field_compression_matches_every_change_summed():
    curves = [
        read_reference_curve(REF / "25M" / f"{n}.csv") for n in ("cosine_24000", "wsd_20000_24000")
    ]
    table = curve_table(curves)
    fast, exact = multipower(curves), multipower(curves, tol=0)
    theta = fast.start_grid()[::5]
    lp, jac = fast.log_predict_and_jac(theta, cols_of(table))
    lp0, jac0 = exact.log_predict_and_jac(theta, cols_of(table))
    np.testing.assert_allclose(lp, lp0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(jac, jac0, rtol=1e-9, atol=1e-12)
    pairs = fast.plans(cols_of(table))[0].pairs
    assert pairs.row.size < 0.05 * curves[0].steps.size * 24_000 / 2  # compressed


@pytest.mark.parametrize("make", [multipower, tissue])
def test_analytic_gradient_is_fits_gradient(make):
    curves = small_curves()
    table = curve_table(curves)
    law = make(curves)
    theta = law.start_grid()[:3] + 0.05
    lp, jac = law.log_predict_and_jac(theta, cols_of(table))
    h = 1e-6
    for p in range(theta.shape[1]):
        up, down = theta.copy(), theta.copy()
        up[:, p] += h
        down[:, p] -= h
        fd = (law.log_predict(up, cols_of(table)) - law.log_predict(down, cols_of(table))) / (2 * h)
        np.testing.assert_allclose(jac[..., p], fd, rtol=1e-5, atol=1e-9)
    # log_predict is complex-step exact, and fit's objective reads the Jacobian directly
    tangent = law.log_predict(theta + 1e-30j * np.eye(theta.shape[1])[2], cols_of(table))
    np.testing.assert_allclose(tangent.imag / 1e-30, jac[..., 2], rtol=1e-12, atol=1e-15)
    loss = np.exp(lp[0]) * (1 + 0.01 * np.sin(np.arange(lp.shape[1])))
    obj = Objective(law, cols_of(table), loss)
    assert obj.value_jac is not None
    _, g = obj.value_grad(theta)
    num = np.array(
        [
            (obj.value_grad(theta + h * e)[0] - obj.value_grad(theta - h * e)[0]) / (2 * h)
            for e in np.eye(theta.shape[1])
        ]
    ).T
    np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-10)


@pytest.mark.slow
def test_levenberg_marquardt_from_strided_starts_reaches_the_lbfgs_optimum():
    """fit on a law with a Jacobian: Gauss-Newton steps, starts on every 4th point, polish on
    all; the same optimum as L-BFGS on all points with the complex-step gradient."""
    curves = small_curves()
    table = curve_table(curves)
    law = multipower(curves)
    truth = law.predict(law.from_natural(MPL_TRUE), cols_of(table))
    table["loss"] = truth * np.exp(1e-3 * np.random.default_rng(1).standard_normal(truth.size))
    starts = law.from_natural(MPL_TRUE)[None] + np.array(
        [[0.1, -0.2, 0.1, 0.3, -0.3, 0.2, -0.1], [-0.1, 0.2, -0.05, -0.3, 0.3, -0.2, 0.1]]
    )
    strided = fit(law, table, starts=starts)
    full = fit(law, table, starts=starts, stride=1)
    obj = Objective(law, cols_of(table), table["loss"])
    obj.value_jac = None  # L-BFGS on the complex-step gradient, as before the hook
    _, f, _ = batched_lbfgs(obj, starts, ftol=1e-14, gtol=1e-14, maxiter=3000)
    assert strided.objective == pytest.approx(f.min(), rel=1e-7)
    assert full.objective == pytest.approx(strided.objective, rel=1e-9)
    np.testing.assert_allclose(full.theta, strided.theta, atol=1e-4)


# ----------------------------------------------------------------------------- synthetic


TRUE_SYN = {"L0": 2.0, "A": 0.3, "alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.5}
NOISE = 5e-4


@pytest.fixture(scope="module")
def synthetic():
    """Five schedules, MPL curves from TRUE_SYN with 0.05% noise; fitted on four of them."""
    total, peak = 4000, 3e-4
    scheds = {
        "cosine": Cosine(total, 200, peak, final_frac=0.1),
        "constant": Constant(total, 200, peak),
        "wsd_sqrt": WSD(total, 200, peak, decay_start=3200, shape=Shape.sqrt),
        "drop": Drop(total, 200, peak, at=2000, level_frac=0.3),
        "wsd_linear": WSD(total, 200, peak, decay_start=2800, final_frac=0.1, shape=Shape.linear),
    }
    steps = np.arange(240, total, 50)
    rng = np.random.default_rng(0)
    clean = [Curve(n, s.lrs(), steps, np.ones(steps.size)) for n, s in scheds.items()]
    law0 = multipower(clean)
    table = curve_table(clean)
    truth = law0.predict(law0.from_natural(TRUE_SYN), cols_of(table))
    table["loss"] = truth * np.exp(NOISE * rng.standard_normal(truth.size))
    curves = [
        Curve(c.name, c.lr, steps, table["loss"][table["name"] == c.name].to_numpy()) for c in clean
    ]
    law = multipower(curves)
    held = held_out_rows(table, ["wsd_linear"])
    train = table[~held].reset_index(drop=True)
    starts = law.from_natural(TRUE_SYN)[None] + np.array([[0.1, -0.2, 0.1, 0.3, -0.3, 0.2, -0.1]])
    result = fit(law, train, starts=starts, delta=1.0)
    return law, table, train, truth, held, result


def test_synthetic_parameters_recovered_within_bootstrap_intervals(synthetic):
    law, _, train, _, _, result = synthetic
    boot = bootstrap(result, train, n=20, groups=block_groups(train, 5), n_warm=0)
    nat = law.to_natural(boot)
    for name, truth in TRUE_SYN.items():
        lo, hi = interval(nat[name], 0.99)
        assert lo <= truth <= hi, f"{name}: {truth} not in [{lo}, {hi}] (fit {result.params})"


def test_bootstrap_passes_its_stopping_rule_to_the_optimiser(synthetic):
    law, _, train, _, _, result = synthetic
    # maxiter 0: no step, so every resample stays at the full-data optimum
    boot = bootstrap(result, train, n=3, groups=block_groups(train, 5), n_warm=0, maxiter=0)
    np.testing.assert_array_equal(boot, np.repeat(result.theta[None], 3, axis=0))
    with pytest.raises(FitError, match="stride must be >= 1"):
        fit(law, train, starts=result.theta[None], stride=0)


def test_synthetic_unseen_schedule_predicted_within_the_noise(synthetic):
    law, table, _, truth, held, result = synthetic
    assert result.params["alpha"] == pytest.approx(TRUE_SYN["alpha"], abs=0.01)
    assert result.params["L0"] == pytest.approx(TRUE_SYN["L0"], rel=0.01)
    pred = result.predict(table)
    rel = np.abs(pred[held] - truth[held]) / truth[held]
    assert rel.mean() < NOISE / 2  # against the noiseless truth: well within the noise
    scores = per_curve(law, result.theta, table, ["wsd_linear"])
    assert scores["wsd_linear"]["held_out"] and not scores["cosine"]["held_out"]
    assert scores["wsd_linear"]["mean_rel_err"] < 2 * NOISE


def test_block_groups_keep_blocks_within_one_curve():
    table = curve_table(small_curves())
    groups = block_groups(table, 5)
    per_group = pd.Series(table["curve"].to_numpy()).groupby(groups).nunique()
    assert per_group.max() == 1
    assert pd.Series(groups).value_counts().max() == 5


# ----------------------------------------------------------------------------- published curves

# Fitted on cosine_24000, constant_24000 and wsdcon_9 over each law's start grid (Huber delta
# 1e-3 on log loss; test_published_fit_from_the_grid_reaches_the_stored_optimum redoes it):
# (log-space theta, objective) per law and size.
PUBLISHED = {
    ("multipower", "25M"): (
        [
            1.0944442831603,
            -0.5748580260214542,
            0.4909775145957835,
            6.616892322334621,
            6.292202827398896,
            0.11269733640147486,
            0.8950853996556726,
        ],
        1.3836108031127e-04,
    ),
    ("multipower", "100M"): (
        [
            0.9582446866928424,
            -0.4613578135689936,
            0.4491115037720875,
            6.456631058932015,
            4.771089759234136,
            0.24491167164552458,
            1.356477928604851,
        ],
        2.1332505201429e-05,
    ),
    ("tissue", "25M"): (
        [1.150004676922163, -0.666278776855146, 0.513209013190850, -0.911514166055437],
        2.0178928633194e-04,
    ),
    ("tissue", "100M"): (
        [1.025604361740886, -0.523166966700510, 0.454810571554094, -0.731412088626516],
        1.2414700099204e-04,
    ),
}
LAWS = {"multipower": multipower, "tissue": tissue}
# Mean over the six held-out curves at those optima: (r2 at least, mean rel err at most). The
# paper reports 0.9988 / 0.110% (25M) and 0.9983 / 0.142% (100M) for the MPL with parameters
# that are not its Huber optimum (test_paper_parameters_give_the_papers_scores): its code stops
# AdamW after 200 steps from a heuristic start; the optimum here extrapolates cosine_72000 (3x
# the fitted length) and wsdcon_3 less well.
HELD_OUT_BARS = {
    ("multipower", "25M"): (0.9976, 0.0014),  # measured 0.99764 / 0.137%
    ("multipower", "100M"): (0.9971, 0.0017),  # measured 0.99712 / 0.165%
    ("tissue", "25M"): (0.9979, 0.0015),  # measured 0.99793 / 0.141%
    ("tissue", "100M"): (0.9977, 0.0016),  # measured 0.99778 / 0.154%
}


def published(law_name: str, size: str):
    curves = [read_reference_curve(f) for f in sorted((REF / size).glob("*.csv"))]
    table = curve_table(curves)
    held = [c.name for c in curves if c.name not in TRAIN]
    train = table[~held_out_rows(table, held)].reset_index(drop=True)
    return LAWS[law_name](curves), table, train, held


@pytest.mark.parametrize("key", list(PUBLISHED))
def test_published_curves_held_out_predicted(key):
    law, table, train, held = published(*key)
    theta, objective = np.array(PUBLISHED[key][0]), PUBLISHED[key][1]
    obj = Objective(law, cols_of(train), train["loss"])
    f, g = obj.value_grad(theta[None])
    assert f[0] == pytest.approx(objective, rel=1e-9)  # the evaluation is unchanged
    assert np.abs(g).max() < 1e-6  # ... and this is the fit's optimum
    scores = per_curve(law, theta, table, held)
    r2 = np.mean([scores[n]["r2"] for n in held])
    mre = np.mean([scores[n]["mean_rel_err"] for n in held])
    min_r2, max_mre = HELD_OUT_BARS[key]
    assert r2 >= min_r2 and mre <= max_mre, f"{key}: held-out r2 {r2:.5f}, rel err {mre:.4%}"
    assert all(scores[n]["r2"] > 0.99 for n in TRAIN)


# The paper's fitted parameters (its repository's src/config.py PARAMS, natural units) and the
# held-out means it reports for them.
PAPER = {
    "25M": ((3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013,
             0.64142257), 0.9988, 0.00110),
    "100M": ((2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199,
              0.65523644), 0.9983, 0.00142),
}  # fmt: skip


@pytest.mark.parametrize("size", list(PAPER))
def test_paper_parameters_give_the_papers_scores(size):
    """The paper's code sums the loss drop over every LR change from step 1, the warmup's rises
    included (``warmup_drop``): only then do its parameters give its reported scores."""
    values, paper_r2, paper_mre = PAPER[size]
    curves = [read_reference_curve(f) for f in sorted((REF / size).glob("*.csv"))]
    held = [c.name for c in curves if c.name not in TRAIN]
    for warmup_drop in (True, False):
        # without the warmup's term two short held-out curves are enough to show the misfit
        names = held if warmup_drop else ["wsd_20000_24000", "wsdcon_3"]
        some = [c for c in curves if c.name in names]
        law = multipower(some, warmup_drop=warmup_drop)
        theta = law.from_natural(dict(zip(law.natural_names, values)))
        scores = per_curve(law, theta, curve_table(some), names)
        r2 = np.mean([scores[n]["r2"] for n in names])
        mre = np.mean([scores[n]["mean_rel_err"] for n in names])
        if warmup_drop:
            assert r2 == pytest.approx(paper_r2, abs=5e-5)
            assert mre == pytest.approx(paper_mre, abs=5e-6)
        else:
            assert r2 < 0.9 and mre > 0.01  # the paper's parameters need the warmup's term


def test_reference_curves_convert_to_the_external_format(tmp_path):
    files = reference_to_csv(REF / "25M", tmp_path)
    assert sorted(f.name for f in files) == sorted(f.name for f in (REF / "25M").glob("*.csv"))
    for f in files:
        ours, ref = read_curve(f), read_reference_curve(REF / "25M" / f.name)
        assert np.array_equal(ours.lr, ref.lr) and ours.lr.size == int(ref.lr.size)
        assert np.array_equal(ours.steps, ref.steps) and np.array_equal(ours.loss, ref.loss)
    with pytest.raises(CurveError, match="no reference curve files"):
        reference_to_csv(tmp_path / "empty", tmp_path / "out")


@pytest.mark.slow
def test_published_curves_through_the_cli_give_the_benchmarks_split_scores(tmp_path):
    """scaling-fit on the converted 25M curves, with the paper's split: the same fit and the
    same per-curve scores as fitting the reference files directly (two starts, no bootstrap)."""
    from analysis.cli import main
    from analysis.results import FitReport

    reference_to_csv(REF / "25M", tmp_path / "csv")
    law, table, train, held = published("multipower", "25M")
    out = tmp_path / "fit"
    argv = [str(tmp_path / "csv" / "*.csv"), "--law", "multipower", "--out", str(out)]
    argv += ["--held-out-curves", ",".join(held), "--bootstrap", "0", "--grid", "2"]
    assert main(argv) == 0
    cr = FitReport.load(out).curves
    # the CLI's --grid 2 draws two starts of the grid with the seed (0)
    starts = law.start_grid()[np.random.default_rng(0).choice(len(law.start_grid()), 2, False)]
    direct = per_curve(law, fit(law, train, starts=starts).theta, table, held)
    assert set(cr.per_curve) == set(direct)
    for name, want in direct.items():
        got = cr.per_curve[name]
        assert got.held_out == want["held_out"]
        assert got.r2 == pytest.approx(want["r2"], abs=1e-9)
        assert got.mean_rel_err == pytest.approx(want["mean_rel_err"], rel=1e-6)
    r2 = np.mean([cr.per_curve[n].r2 for n in held])
    mre = np.mean([cr.per_curve[n].mean_rel_err for n in held])
    min_r2, max_mre = HELD_OUT_BARS["multipower", "25M"]
    assert r2 >= min_r2 and mre <= max_mre, f"held-out r2 {r2:.5f}, rel err {mre:.4%}"


@pytest.mark.slow
@pytest.mark.parametrize("size", ["25M", "100M"])
def test_published_fit_from_the_grid_reaches_the_stored_optimum(size):
    law, _, train, _ = published("multipower", size)
    result = fit(law, train)
    assert result.objective <= PUBLISHED["multipower", size][1] * (1 + 1e-6)


# ----------------------------------------------------------------------------- bad input


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.csv"
    path.write_text(text)
    return path


def good_rows(n: int = 6) -> list[str]:
    return [f"{s},{1e-3 if s else 0.0},{4.0 - 0.1 * s if s % 2 else ''}" for s in range(n)]


def test_external_csv_read_with_rows_without_loss(tmp_path):
    curve = read_curve(write(tmp_path, "\n".join(["step,lr,loss", *good_rows()])))
    assert curve.steps.tolist() == [1, 3, 5] and curve.lr.size == 6


def test_external_csv_columns_mappable(tmp_path):
    text = "\n".join(["it,eta,val", *good_rows()])
    curve = read_curve(write(tmp_path, text), {"step": "it", "lr": "eta", "loss": "val"})
    assert curve.loss.tolist() == pytest.approx([3.9, 3.7, 3.5])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda r: r[:3] + r[4:], r"row 5: step 4 leaves a gap \(after 2"),
        (lambda r: r[:3] + [r[4], r[3]] + r[5:], r"row 5: step 4 leaves a gap"),
        (lambda r: r[:4] + [r[2]] + r[5:], r"row 6: step 2 goes backwards \(after 3"),
        (lambda r: r[:2] + ["2,nan,3.8"] + r[3:], r"row 4 \(step 2\): lr is nan"),
        (lambda r: r[:2] + ["2,,3.8"] + r[3:], r"row 4 \(step 2\): lr is nan"),
        (lambda r: r[:2] + ["2,-1e-3,3.8"] + r[3:], r"row 4 \(step 2\): lr is -0.001"),
        (lambda r: r[:1] + ["1,1e-3,nan"] + r[2:], r"row 3 \(step 1\): loss"),
    ],
)
def test_external_csv_refused_with_file_and_row(tmp_path, edit, match):
    path = write(tmp_path, "\n".join(["step,lr,loss", *edit(good_rows())]))
    with pytest.raises(CurveError, match=match) as err:
        read_curve(path)
    assert str(path) in str(err.value)


def test_curve_without_learning_rate_refused(tmp_path):
    path = write(tmp_path, "step,loss\n0,4.0\n1,3.9\n")
    with pytest.raises(CurveError, match=r"run.csv: no column \['lr'\]"):
        read_curve(path)
    with pytest.raises(CurveError, match="no learning rate given"):
        Curve("x", np.array([]), np.array([0]), np.array([3.0]))


def test_curve_with_one_point_refused_before_fitting(tmp_path):
    rows = ["step,lr,loss", "0,0.0,", "1,1e-3,4.0", "2,1e-3,"]
    curve = read_curve(write(tmp_path, "\n".join(rows)))
    with pytest.raises(CurveError, match=r"run.csv: 1 logged loss\(es\); a curve needs at least 2"):
        curve_table([curve])


def test_schedule_with_nan_refused():
    lr = Cosine(50, 5, 1e-3).lrs()
    lr[20] = np.nan
    with pytest.raises(CurveError, match="lr at step 20 is nan"):
        Curve("c", lr, np.array([10, 30]), np.array([3.0, 2.9]))


def test_zero_lr_after_warmup_refused():
    lr = Constant(50, 5, 1e-3).lrs()
    lr[30] = 0.0
    with pytest.raises(CurveError, match="lr is 0 at step 30 after the peak"):
        Curve("c", lr, np.array([10, 40]), np.array([3.0, 2.9]))


def test_held_out_curve_must_exist():
    table = curve_table(small_curves())
    with pytest.raises(CurveError, match=r"held-out curve\(s\) \['nope'\] not among"):
        held_out_rows(table, ["nope"])
    with pytest.raises(CurveError, match="leaves no curve to fit"):
        held_out_rows(table, ["s0", "s1", "s2", "s3", "s4"])


def test_curve_id_outside_the_laws_curves_refused():
    curves = small_curves()
    law = multipower(curves[:2])
    table = curve_table(curves)
    with pytest.raises(CurveError, match=r"column 'curve' has 3.0; valid: 1..2"):
        law.predict(law.start_grid()[0], cols_of(table))
