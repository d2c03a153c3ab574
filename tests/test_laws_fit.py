"""The law registry, the batched multi-start fit, bootstrap and approaches 1-3 on synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import TRUE, TRUE_A, synthetic, true_n_opt
from scipy.optimize import minimize

from analysis.fit import FitError, Objective, bootstrap, fit, interval
from analysis.laws import LAWS, get_law
from analysis.optimal import approach1, approach2, approach3, chinchilla_optimum


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def fitted(data):
    runs, _ = data
    result = fit("chinchilla", runs, starts=get_law("chinchilla").start_grid()[::30])
    return result, bootstrap(result, runs, n=150, seed=1)


def _cols(law, n=40, seed=0):
    rng = np.random.default_rng(seed)
    return {v: 10 ** rng.uniform(6, 10, n) for v in law.variables}


@pytest.mark.parametrize("name", sorted(LAWS))
def test_objective_gradient_matches_finite_differences(name):
    law = get_law(name)
    cols = _cols(law)
    theta = law.start_grid()[len(law.start_grid()) // 3]
    theta = theta + 0.05  # off the grid, away from alpha = 0
    y = law.predict(theta, cols) * np.exp(0.05 * np.random.default_rng(1).standard_normal(40))
    obj = Objective(law, cols, y, delta=0.01, asymmetry=2.0)
    _, g = obj.value_grad(theta[None])
    eps = 1e-6
    fd = [
        (
            obj.value_grad((theta + eps * e)[None])[0][0]
            - obj.value_grad((theta - eps * e)[None])[0][0]
        )
        / (2 * eps)
        for e in np.eye(len(theta))
    ]
    np.testing.assert_allclose(g[0], fd, rtol=1e-4, atol=1e-8)


def test_law_predict_in_natural_units():
    law = get_law("chinchilla")
    theta = np.log([TRUE["A"], TRUE["B"], TRUE["E"]]).tolist() + [TRUE["alpha"], TRUE["beta"]]
    n, d = np.array([1e8, 1e9]), np.array([2e9, 2e10])
    expected = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
    np.testing.assert_allclose(law.predict(np.array(theta), {"N": n, "D": d}), expected)
    assert law.to_natural(np.array(theta))["A"] == pytest.approx(TRUE["A"])
    assert len(law.start_grid()) == 4500  # Hoffmann et al.'s grid


def test_unknown_law_lists_known():
    with pytest.raises(ValueError, match="chinchilla"):
        get_law("nope")


def test_batched_optimum_matches_scipy_per_start(data):
    runs, _ = data
    law = get_law("chinchilla")
    starts = law.start_grid()[::450]
    result = fit(law, runs, starts=starts)
    obj = Objective(law, {"N": runs["N"].to_numpy(), "D": runs["D"].to_numpy()}, runs["loss"])

    def fun(x):
        f, g = obj.value_grad(x[None])
        return f[0], g[0]

    naive = min(minimize(fun, s, jac=True, method="L-BFGS-B").fun for s in starts)
    assert result.objective <= naive * (1 + 1e-6)
    assert result.n_best >= 1 and result.n_starts == len(starts)


def test_recovers_true_parameters_within_bootstrap_intervals(fitted):
    result, boot = fitted
    nat = result.law.to_natural(boot)
    for name, truth in TRUE.items():
        lo, hi = interval(nat[name], 0.99)
        assert lo <= truth <= hi, f"{name}: {truth} not in [{lo}, {hi}]"
    assert result.params["alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert result.params["beta"] == pytest.approx(TRUE["beta"], abs=0.05)
    assert result.params["E"] == pytest.approx(TRUE["E"], abs=0.1)


def test_approaches_agree_with_true_exponent(data, fitted):
    runs, curves = data
    result, boot = fitted
    a3, targets = approach3(result, 6.0, boot, 0.99, [1e21])
    a1 = approach1(curves, runs, 6.0, n_boot=100, targets=[1e21])
    a2 = approach2(runs, 6.0, n_boot=100, targets=[1e21])
    assert a3["a"] == pytest.approx(TRUE_A, abs=0.03)
    assert a3["a_ci"][0] <= a3["a"] <= a3["a_ci"][1]
    assert a2["a"] == pytest.approx(TRUE_A, abs=0.03)
    assert a1["a"] == pytest.approx(TRUE_A, abs=0.05)
    for a in (a1, a2, a3):
        assert a["a"] + a["b"] == pytest.approx(1.0, abs=0.05)
    assert a2["n_edge"] == 0 and len(a2["budgets"]) == 7
    assert targets[0]["tokens_per_param"] == pytest.approx(
        targets[0]["D_opt"] / targets[0]["N_opt"]
    )
    assert targets[0]["loss_ci"][0] <= targets[0]["loss"] <= targets[0]["loss_ci"][1]
    # Approaches 1 and 2 predict the allocation at the target too, near the truth, with
    # intervals from their own bootstrap (the power laws evaluated at C per resample).
    for a in (a1, a2):
        (t,) = a["targets"]
        assert t["N_opt"] == pytest.approx(a["N_coef"] * 1e21 ** a["a"])
        assert t["N_opt"] == pytest.approx(true_n_opt(1e21), rel=0.15)
        assert t["N_opt_ci"][0] < true_n_opt(1e21) < t["N_opt_ci"][1]
        assert t["tokens_per_param"] == pytest.approx(t["D_opt"] / t["N_opt"])


def test_approach2_flags_budget_with_minimum_at_edge(data):
    runs, _ = data
    # keep only the smaller half of the sizes of the first budget: its minimum is at the edge
    first = runs["C"] == runs["C"].min()
    small = runs[first].nsmallest(4, "N")
    out = approach2(pd.concat([small, runs[~first]]), 6.0)
    assert out["budgets"][0]["edge"] is True
    assert out["n_edge"] == 1


def test_optimum_formula_matches_brute_force():
    theta = np.array([np.log(400.0), np.log(410.0), np.log(1.7), 0.34, 0.28])
    opt = chinchilla_optimum(theta, 6.0)
    c = 1e21
    n = np.logspace(8, 12, 20001)
    loss = get_law("chinchilla").predict(theta, {"N": n, "D": c / (6 * n)})
    assert opt["N_coef"] * c ** opt["a"] == pytest.approx(n[np.argmin(loss)], rel=1e-3)


def test_lower_envelope_fit_lies_below_points(data):
    runs, _ = data
    starts = get_law("chinchilla").start_grid()[::30]
    sym = fit("chinchilla", runs, starts=starts)
    low = fit("chinchilla", runs, starts=starts, asymmetry=20.0)
    below = lambda r: np.mean(r.predict(runs) <= runs["loss"])  # noqa: E731
    assert below(low) > below(sym)
    assert below(low) > 0.7


def test_weights_zero_ignores_points(data):
    runs, _ = data
    bad = runs.copy()
    bad.loc[:4, "loss"] = 10.0
    w = np.ones(len(bad))
    w[:5] = 0
    starts = get_law("chinchilla").start_grid()[::30]
    r = fit("chinchilla", bad, starts=starts, weights=w)
    assert r.params["alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)


@pytest.mark.parametrize(
    "name, truth",
    [
        ("saturating_N", {"E": 2.0, "A": 50.0, "alpha": 0.3}),
        ("power_C", {"A": 30.0, "alpha": 0.05}),
    ],
)
def test_single_variable_laws_recover_truth(name, truth):
    law = get_law(name)
    x = np.logspace(6, 10, 30)
    var = law.variables[0]
    y = truth.get("E", 0.0) + truth["A"] * x ** -truth["alpha"]
    r = fit(law, pd.DataFrame({var: x, "loss": y}))
    for k, v in truth.items():
        assert r.params[k] == pytest.approx(v, rel=1e-3)


def test_kaplan_nd_recovers_exponents():
    law = get_law("kaplan_nd")
    n = np.repeat(np.logspace(6, 9, 6), 6)
    d = np.tile(np.logspace(8, 11, 6), 6)
    nc, dc, an, ad = 6.4e13, 1.8e13, 0.076, 0.103
    y = ((nc / n) ** (an / ad) + dc / d) ** ad
    r = fit(law, pd.DataFrame({"N": n, "D": d, "loss": y}))
    assert r.params["alpha_N"] == pytest.approx(an, rel=0.02)
    assert r.params["alpha_D"] == pytest.approx(ad, rel=0.02)


def test_kaplan_ns_fits():
    law = get_law("kaplan_ns")
    n = np.repeat(np.logspace(6, 9, 5), 5)
    s = np.tile(np.logspace(3, 5, 5), 5)
    y = (8.8e13 / n) ** 0.076 + (2.1e3 / s) ** 0.76
    r = fit(law, pd.DataFrame({"N": n, "S": s, "loss": y}))
    assert r.params["alpha_S"] == pytest.approx(0.76, rel=0.02)
    assert r.objective < 1e-8


def test_fit_errors_are_clear(data):
    runs, _ = data
    with pytest.raises(FitError, match="5 parameters but only 3 points"):
        fit("chinchilla", runs.head(3))
    one = runs.assign(N=1e8)
    with pytest.raises(FitError, match="at least 2 model sizes"):
        fit("chinchilla", one)
    for bad in (np.nan, np.inf, 0.0, -1.0):
        b = runs.copy()
        b.loc[0, "loss"] = bad
        with pytest.raises(FitError, match="non-finite or non-positive"):
            fit("chinchilla", b)
    with pytest.raises(FitError, match=r"missing; columns present: \['run', 'N', 'C', 'loss'\]"):
        fit("chinchilla", runs.drop(columns="D"))
    assert issubclass(FitError, ValueError)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_every_law_predicts_from_natural_parameters_and_labels_them(name):
    """One registry for readers: natural parameters map back to theta, predict_natural agrees
    with the log-space prediction, and every parameter and the formula have LaTeX."""
    law = get_law(name)
    theta = law.start_grid()[len(law.start_grid()) // 2] + 0.1
    natural = {k: float(v) for k, v in law.to_natural(theta).items()}
    assert list(natural) == sorted(natural, key=law.natural_names.index)
    np.testing.assert_allclose(law.from_natural(natural), theta, rtol=1e-12)
    cols = _cols(law)
    np.testing.assert_allclose(law.predict_natural(natural, cols), law.predict(theta, cols))
    assert set(law.labels) == set(law.natural_names)
    assert all(label.startswith("$") for label in law.labels.values())
    assert law.tex.startswith("$L = ") and law.tex.endswith("$")
    with pytest.raises(ValueError, match=law.natural_names[0]):
        law.predict_natural({}, cols)
