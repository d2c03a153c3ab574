"""Approaches 1 and 2 decide their envelope and budget groups once; degenerate resamples are
counted, never fatal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import synthetic

from analysis import cli
from analysis.fit import bootstrap, fit
from analysis.laws import get_law
from analysis.optimal import approach1, approach2, approach3, degenerate
from analysis.results import FitReport


def _run(c: float, x: float, loss: float) -> dict:
    return {"run": f"{x:.2f}-C{c:.0e}", "N": 10**x, "C": c, "D": c / (6 * 10**x), "loss": loss}


def fragile_isoflops() -> pd.DataFrame:
    """Two IsoFLOP budgets; the second is a parabola only thanks to its smallest model. A
    resample without that run leaves three sizes on a line of tiny positive curvature whose
    vertex lies ~1e8 decades away, so 10**x_opt underflows to 0."""
    rows = [_run(1e17, x, 3 + 0.2 * (x - 7) ** 2) for x in np.linspace(6, 8, 5)]
    rows.append(_run(1e19, 6.0, 4.0))
    rows += [_run(1e19, x, 3.0 + 0.1 * x + 1e-9 * x**2) for x in (6.5, 7.0, 7.5)]
    return pd.DataFrame(rows)


def test_degenerate_resamples_are_counted_not_fatal():
    runs = fragile_isoflops()
    full = approach2(runs, 6.0)
    out = approach2(runs, 6.0, n_boot=50, targets=[1e21], band_c=[1e18, 1e21])
    # the resamples do not change the full-data fit, and the usable ones give the intervals
    assert {k: out[k] for k in ("a", "b", "N_coef", "D_coef")} == {
        k: full[k] for k in ("a", "b", "N_coef", "D_coef")
    }
    assert 0 < out["n_degenerate"] < 50
    assert all(np.isfinite(out[f"{k}_ci"]).all() for k in ("a", "b", "N_coef", "D_coef"))
    assert np.isfinite(out["targets"][0]["N_opt_ci"]).all() and "band" in out
    assert "n_degenerate" not in full  # no bootstrap, nothing to count


def test_scaling_fit_survives_a_degenerate_resample(tmp_path, capsys):
    """Issue 17 item 9, end to end: the bootstrap used to raise ZeroDivisionError."""
    source = tmp_path / "isoflops.csv"
    fragile_isoflops().to_csv(source, index=False)
    out = tmp_path / "out"
    argv = [str(source), "--out", str(out), "--approaches", "2", "--bootstrap", "50"]
    assert cli.main(argv) == 0
    a2 = FitReport.load(out).approach2
    assert a2.error is None and 0 < a2.n_degenerate < 50
    assert "Traceback" not in capsys.readouterr().err


def test_vertex_out_of_float_range_is_no_minimum():
    runs = fragile_isoflops()
    without_anchor = runs[runs["run"] != "6.00-C1e+19"]
    out = approach2(without_anchor, 6.0)
    far = out["budgets"][1]
    assert far["edge"] and np.isnan(far["N_opt"]) and np.isnan(far["D_opt"])
    assert "error" in out  # one usable budget is not a power law; said, not raised


def test_degenerate_rows():
    rows = np.array(
        [[0.5, 0.5, 1.0, 1.0], [np.nan, 0.5, 1.0, 1.0], [0.5, 0.5, 0.0, 1.0], [0.5, np.inf, 1, 1]]
    )
    assert degenerate(rows).tolist() == [False, True, True, True]


def test_approach1_degenerate_count_and_approach3_count():
    runs, curves = synthetic(budgets=(1e17, 1e18, 1e19), sizes_per_budget=5)
    a1 = approach1(curves, runs, 6.0, n_boot=20)
    assert a1["n_degenerate"] == 0
    # every 50th start of the law's grid (90) finds the full grid's optimum here; this test
    # counts degenerate resamples, it does not need the 4,500-start search
    result = fit("chinchilla", runs, starts=get_law("chinchilla").start_grid()[::50])
    boot = bootstrap(result, runs, n=8, groups=runs["run"].to_numpy())
    boot[0, 3] = -0.1  # alpha < 0: no compute-optimal allocation from this resample
    a3, _ = approach3(result, 6.0, boot)
    assert a3["n_degenerate"] == 1


@pytest.fixture(scope="module")
def ladder():
    return synthetic(budgets=(1e17, 1e18, 1e19), sizes_per_budget=5)


def test_approach1_envelope_is_the_lowest_fitted_curve(ladder):
    runs, curves = ladder
    out = approach1(curves, runs, 6.0)
    env = pd.DataFrame(out["envelope"])
    assert len(env) > 100 and env["C"].is_monotonic_increasing
    assert env["C"].min() >= runs["C"].min() * 0.999  # starts where approach 1 starts
    assert set(env["run"]) <= set(runs["run"])
    curves = curves[curves["C"] >= runs["C"].min() * 0.999]  # the part approach 1 looks at
    span = curves.groupby("run")["C"].agg(["min", "max"])
    overlap = [((span["min"] <= c) & (c <= span["max"])).sum() for c in env["C"]]
    assert min(overlap) >= 2  # only where approach 1 picks minima: two or more runs overlap
    for c, loss, run in env.iloc[::17].itertuples(index=False):
        at_c = [
            np.interp(np.log10(c), np.log10(g["C"]), g["loss"])
            for _, g in curves.groupby("run")
            if g["C"].min() <= c <= g["C"].max()
        ]
        assert loss == pytest.approx(min(at_c))
        g = curves[curves["run"] == run]
        assert loss == pytest.approx(np.interp(np.log10(c), np.log10(g["C"]), g["loss"]))
    # the minima approach 1 fitted lie on its envelope
    for p in out["points"]:
        assert p["loss"] >= env["loss"][np.isclose(env["C"], p["C"])].iloc[0] - 1e-12


def test_approach1_envelope_only_from_the_curves_it_was_given(ladder):
    runs, curves = ladder
    best = curves.groupby("run")["loss"].min().idxmin()  # the run that wins at the top
    fitted = runs[runs["run"] != best]
    out = approach1(curves[curves["run"] != best], fitted, 6.0)
    assert best not in set(out["envelope"]["run"]) | set(out["runs"])
    assert sorted(out["runs"]) == sorted(fitted["run"])
    assert approach1(None, runs, 6.0)["envelope"] is None  # final points only: no curves


def test_approach2_budgets_list_their_runs_and_heldout(ladder):
    runs, _ = ladder
    held = runs[runs["C"] == runs["C"].max()].nlargest(1, "N")
    fitted = runs.drop(held.index)
    out = approach2(fitted, 6.0, heldout=held)
    assert [len(b["runs"]) for b in out["budgets"]] == [5, 5, 4]
    assert sorted(r for b in out["budgets"] for r in b["runs"]) == sorted(fitted["run"])
    for b in out["budgets"]:
        assert np.allclose(runs.set_index("run").loc[b["runs"], "C"], b["C"], rtol=0.01)
    assert [b["heldout_runs"] for b in out["budgets"]] == [[], [], held["run"].tolist()]
    # a held-out budget of its own joins no fitted budget
    far = held.assign(C=held["C"] * 10)
    assert all(not b["heldout_runs"] for b in approach2(fitted, 6.0, heldout=far)["budgets"])


def test_approach1_envelope_stops_where_one_run_is_left(ladder):
    """Past the other runs' curves a single run is no minimum over sizes: approach 1 fits no
    point there, and its envelope does not run on along that one curve."""
    runs, curves = ladder
    top = runs[runs["C"] == runs["C"].max()]
    keep = runs[(runs["C"] < runs["C"].max()) | (runs["run"] == top["run"].iloc[2])]
    out = approach1(curves[curves["run"].isin(keep["run"])], keep, 6.0)
    second = keep.loc[keep["C"] < keep["C"].max(), "C"].max()
    assert max(out["envelope"]["C"]) <= second * 1.0001
    assert max(p["C"] for p in out["points"]) <= second * 1.0001
