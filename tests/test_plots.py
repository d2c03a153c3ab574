"""Figures from a results dir made by the real fitter (tests/fixtures_results.py): content,
determinism, what is drawn comes from fit.json, nothing that scaling-fit accepted crashes."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from fixtures_results import BUDGETS, HELDOUT, SIZES, write_results, write_source
from matplotlib.figure import Figure

from analysis import plots
from analysis import style as st
from analysis.cli import run_fit
from analysis.fitconfig import FitConfig
from analysis.results import FitReport


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return write_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def res(results_dir):
    return plots.load_results(results_dir)


@pytest.fixture(scope="module")
def rendered(results_dir):
    """Every figure rendered once as PNG into <results>/figures."""
    return plots.plot_all(results_dir, fmt=("png",))


def draw(plotter, res, **kw):
    with st.paper_style():
        return plotter(res, **kw)


def gids(ax, prefix):
    return [a for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)]


def notes(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "note"]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plot_all_writes_every_figure(rendered, results_dir):
    assert [p.name for p in rendered] == [f"{name}.png" for name in plots.FIGURES]
    assert all(p.parent == results_dir / "figures" for p in rendered)
    # 300 dpi: a double-column PNG is about 6.75 in * 300 px wide.
    width_px = int.from_bytes((results_dir / "figures/compute_optimal.png").read_bytes()[16:20])
    assert abs(width_px - st.WIDTHS["double"] * 300) < 5


# Byte-identical regeneration: one figure (PNG and PDF) in the fast suite, the rest under `slow`.
REGENERATED_FAST = ["isoflop"]
REGENERATED_SLOW = [f for f in plots.FIGURES if f not in REGENERATED_FAST]


@pytest.mark.parametrize(
    "only",
    [REGENERATED_FAST, pytest.param(REGENERATED_SLOW, marks=pytest.mark.slow)],
    ids=["fast", "rest"],
)
def test_regenerating_gives_identical_bytes(rendered, results_dir, tmp_path, only):
    again = plots.plot_all(results_dir, out_dir=tmp_path / "again", fmt=("png",), only=only)
    first = {p.name: sha256(p) for p in rendered}
    assert [sha256(p) for p in again] == [first[f"{name}.png"] for name in only]
    pdfs = [
        plots.plot_all(results_dir, out_dir=tmp_path / d, fmt=("pdf",), only=only[:1])[0]
        for d in ("pdf1", "pdf2")
    ]
    assert sha256(pdfs[0]) == sha256(pdfs[1])
    assert b"CreationDate" not in pdfs[0].read_bytes()


@pytest.mark.parametrize("width", ["double", pytest.param("single", marks=pytest.mark.slow)])
def test_no_label_overlaps_or_sticks_out(res, width):
    with st.paper_style():
        for name in plots.FIGURES:
            assert st.label_problems(plots.render(name, res, width)) == [], name


def test_declutter_unlabels_crowded_ticks_and_keeps_the_ticks():
    with st.paper_style():
        fig = Figure(figsize=(1.2, 1.0), layout="constrained")
        ax = fig.subplots()
        ax.set_xscale("log")
        ax.set_xlim(1.5e8, 9e8)  # under a decade: minor labels 2, 3, 4, 6 x 1e8 crowd
        ax.plot([2e8, 8e8], [1, 2])
        crowded = st.label_problems(fig)
        assert crowded and all("overlaps" in p for p in crowded)
        n_ticks = len(ax.xaxis.get_minorticklocs())
        assert st.declutter(fig) >= 1
        assert st.label_problems(fig) == []
        assert len(ax.xaxis.get_minorticklocs()) == n_ticks  # only labels went
        labels = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
        assert labels  # not everything was thrown away


def test_learning_curves_one_colour_per_size_with_envelope(res):
    fig = draw(plots.plot_learning_curves, res)
    ax_d, ax_c = fig.axes[:2]
    for ax in (ax_d, ax_c):
        curves = gids(ax, "curve:")
        assert len(curves) == res.curves["run"].nunique()
        assert len({c.get_color() for c in curves}) == len(SIZES)
        assert ax.get_xscale() == ax.get_yscale() == "log"
    assert gids(ax_c, "envelope") and gids(ax_c, "approach1")
    # Colours follow N on the sequential map: luminance is monotone in size, smallest darkest.
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == list(SIZES)
    rgb = np.array([matplotlib.colors.to_rgb(h.get_color()) for h in legend.legend_handles])
    luminance = rgb @ [0.2126, 0.7152, 0.0722]
    assert np.all(np.diff(luminance) > 0), luminance


def test_learning_curves_without_curves_plots_final_points(tmp_path):
    res = plots.load_results(write_results(tmp_path, curves=False))
    fig = draw(plots.plot_learning_curves, res)
    assert gids(fig.axes[1], "final")
    assert not gids(fig.axes[1], "curve:")
    assert any("final losses only" in n for n in notes(fig))


def test_isoflop_one_parabola_per_budget(res):
    fig = draw(plots.plot_isoflop, res)
    ax = fig.axes[0]
    assert len(gids(ax, "parabola")) == len(BUDGETS)
    edge = [b for b in res.fit.approach2.budgets if b.edge]
    assert len(gids(ax, "edge_minimum")) == len(edge)
    assert len(gids(ax, "minimum")) == len(BUDGETS) - len(edge)
    assert sum(len(c.get_offsets()) for c in gids(ax, "heldout")) == 1


def test_compute_optimal_has_approaches_bands_and_references(res):
    fig = draw(plots.plot_compute_optimal, res)
    for ax in fig.axes[:2]:
        for key in plots.APPROACHES:
            assert gids(ax, f"fit:{key}") and gids(ax, f"band:{key}")
        refs = {a.get_gid() for a in gids(ax, "reference:")}
        assert refs == {f"reference:{name}" for name, *_ in plots.REFERENCES}
    legend = fig.legends[0]
    title = legend.get_title().get_text()
    assert "anchored" in title
    # every approach has a pointwise bootstrap band in fit.json, drawn as stored
    assert "90% bootstrap intervals" in title
    band = res.fit.approach3.band
    (poly,) = gids(fig.axes[0], "band:approach3")
    verts = poly.get_paths()[0].vertices
    for c, lo, hi in list(zip(band.C, *band.N_opt_ci))[::7]:
        ys = verts[np.isclose(verts[:, 0], c, rtol=1e-9), 1]
        assert np.allclose(sorted(ys)[:1] + sorted(ys)[-1:], [lo, hi], rtol=1e-9), c
    labels = [t.get_text() for t in legend.get_texts()]
    assert any("Kaplan" in t and "0.73" in t for t in labels)
    assert any("Chinchilla approach 3" in t and "0.46" in t for t in labels)


def test_surface_has_contours_frontier_isoflops_and_runs(res):
    fig = draw(plots.plot_surface, res)
    ax, ax_c = fig.axes[:2]  # (N, D) and (C, N) planes
    for panel in (ax, ax_c):
        assert gids(panel, "frontier")
        assert len(gids(panel, "isoflop")) == len(BUDGETS)
        assert len(gids(panel, "runs:heldout")[0].get_offsets()) == 1
        assert any(type(a).__name__ == "QuadContourSet" for a in panel.get_children())
    # Both frontiers are the fixture's compute-optimal N_opt(C) = G (C/6)^a.
    alloc = res.fit.approach3.allocation
    (n_d, d_n), (c, n_c) = (gids(p, "frontier")[0].get_xydata().T for p in (ax, ax_c))
    np.testing.assert_allclose(n_c, alloc.N_coef.value * c**alloc.a.value)
    np.testing.assert_allclose(6 * n_d * d_n, np.geomspace(c[0], c[-1], len(c)), rtol=1e-6)
    # Runs sit at their (N, D) on the left and (C, N) on the right.
    fitted = gids(ax_c, "runs:fitted")[0].get_offsets()
    np.testing.assert_allclose(
        fitted[:, 0] / fitted[:, 1], 6 * gids(ax, "runs:fitted")[0].get_offsets()[:, 1], rtol=1e-6
    )


def test_parity_marks_heldout_and_shows_residuals(res):
    fig = draw(plots.plot_parity, res)
    ax_p, ax_r = fig.axes[:2]
    assert gids(ax_p, "parity")
    for ax in (ax_p, ax_r):
        assert len(gids(ax, "runs:heldout")[0].get_offsets()) == 1
        n_fitted = len(gids(ax, "runs:fitted")[0].get_offsets())
        assert n_fitted == len(res.runs) - 2  # one held out, one diverged
    assert "held-out" in ax_r.get_title()
    # Predictions are the fitted law's own, at each run's (N, D).
    fitted = res.runs[~res.runs["heldout"] & ~res.runs["excluded"]]
    predicted = gids(ax_p, "runs:fitted")[0].get_offsets()[:, 1]
    np.testing.assert_allclose(predicted, res.fit.approach3.fit.predict(fitted))


def test_approach_with_error_is_skipped_with_a_note(tmp_path):
    why = {"approach2": "no IsoFLOP budgets", "approach3": "L-BFGS did not converge"}
    res = plots.load_results(write_results(tmp_path, errors=why))
    assert "no IsoFLOP budgets" in " ".join(notes(draw(plots.plot_isoflop, res)))
    fig = draw(plots.plot_compute_optimal, res)
    assert gids(fig.axes[0], "fit:approach1") and not gids(fig.axes[0], "fit:approach3")
    assert gids(fig.axes[0], "reference:Kaplan")  # anchored on approach 1 instead
    for plotter in (plots.plot_surface, plots.plot_parity):
        assert "approach 3 skipped: L-BFGS did not converge" in notes(draw(plotter, res))


def test_missing_fit_json_names_the_file(tmp_path):
    write_results(tmp_path)
    (tmp_path / "fit.json").unlink()
    with pytest.raises(FileNotFoundError, match="fit.json"):
        plots.plot_all(tmp_path)


def test_cli_reports_missing_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        plots.main([str(tmp_path)])
    assert exc.value.code == 2
    assert "runs.csv" in capsys.readouterr().err


def test_user_style_and_width_override(results_dir, tmp_path):
    venue = tmp_path / "venue.mplstyle"
    venue.write_text("font.size: 11\naxes.labelsize: 11\n")
    res = plots.load_results(results_dir)
    with st.paper_style(venue):
        fig = plots.plot_isoflop(res, width="double")
    assert fig.get_figwidth() == st.WIDTHS["double"]
    assert fig.axes[0].xaxis.label.get_fontsize() == 11
    with st.paper_style():
        stacked = plots.plot_parity(res, width="single")
    assert stacked.get_figwidth() == st.WIDTHS["single"]
    stacked.draw_without_rendering()
    ax_p, ax_r = stacked.axes[:2]
    assert ax_p.get_position().y0 > ax_r.get_position().y1  # two panels stacked, not squeezed


def test_unknown_figure_and_width_are_rejected(results_dir):
    with pytest.raises(ValueError, match="unknown figures"):
        plots.plot_all(results_dir, only=["nope"])
    with pytest.raises(ValueError, match="single"):
        st.width_inches("triple")


def test_drawn_envelope_is_approach1s_never_heldout_or_excluded(tmp_path):
    """A held-out and an excluded run whose curves are the lowest at large C stay off the drawn
    envelope: it is the one approach 1 fitted, read from fit.json."""
    source, config = write_source(tmp_path / "src")
    failed = "320M-C1e19"
    runs = pd.read_csv(source)
    runs.loc[runs["run"] == failed, "status"] = "failed"
    runs.to_csv(source, index=False)
    for run in (HELDOUT, failed):
        path = tmp_path / "src" / "curves" / f"{run}.csv"
        curve = pd.read_csv(path)
        curve.assign(loss=curve["loss"] * 0.8).to_csv(path, index=False)
    config = dataclasses.replace(config, bootstrap=0, approaches=[1], grid=50)
    out = tmp_path / "out"
    run_fit(source, out, config, quiet=True)
    res = plots.load_results(out)
    assert failed in {e.run for e in res.fit.excluded} and HELDOUT in res.fit.heldout_runs
    env = res.fit.approach1.envelope
    assert not {HELDOUT, failed} & set(env.run)
    (line,) = gids(draw(plots.plot_learning_curves, res).axes[1], "envelope")
    c, loss = line.get_xydata().T
    np.testing.assert_array_equal(c, env.C)
    np.testing.assert_array_equal(loss, env.loss)
    for run in (HELDOUT, failed):  # either curve would have pulled the envelope down
        g = res.curves[res.curves["run"] == run]
        inside = (c >= g["C"].min()) & (c <= g["C"].max())
        below = np.interp(np.log(c[inside]), np.log(g["C"]), g["loss"]) < loss[inside] - 1e-6
        assert below.any(), run


def test_curves_and_runs_without_a_size_are_skipped_with_a_note(results_dir, tmp_path, capsys):
    """Issue 17 item 10a: a run whose summary.json was unreadable has curve rows (and a runs.csv
    row) with N = NaN; the figures skip it, say so on the figure and the terminal."""
    out = tmp_path / "res"
    shutil.copytree(results_dir, out, ignore=shutil.ignore_patterns("figures"))
    curves = pd.read_csv(out / "curves.csv")
    ghost = curves[curves["run"] == curves["run"].iloc[0]].assign(run="ghost", N=np.nan)
    pd.concat([curves, ghost]).to_csv(out / "curves.csv", index=False)
    runs = pd.read_csv(out / "runs.csv")
    pd.concat([runs, runs.iloc[:1].assign(run="ghost", N=np.nan)]).to_csv(
        out / "runs.csv", index=False
    )
    assert plots.main([str(out), "--format", "png", "--only", "learning_curves", "isoflop"]) == 0
    err = capsys.readouterr().err
    assert "learning_curves: 1 curves without a model size N not drawn (ghost)" in err
    assert "1 runs without finite N, D, C not drawn (ghost)" in err
    assert "Traceback" not in err
    assert (out / "figures" / "learning_curves.png").is_file()
    fig = draw(plots.plot_learning_curves, plots.load_results(out))
    assert any("without a model size" in n for n in notes(fig))
    assert not gids(fig.axes[0], "curve:ghost")


def implausible_source(folder):
    """IsoFLOP runs whose loss grows with N at fixed D: approach 3 fits alpha < 0."""
    rng = np.random.default_rng(0)
    rows = []
    for c in (1e15, 4e15, 1.6e16):
        for n in np.geomspace(1e4, 5e4, 5):
            d = c / (6 * n)
            loss = (2.0 + 0.02 * n**0.15 + 300 / d**0.3) * np.exp(0.002 * rng.standard_normal())
            rows.append({"run": f"{n:.0f}-{c:.0e}", "N": n, "D": d, "C": c, "loss": loss})
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    return folder / "runs.csv"


@pytest.mark.slow
def test_implausible_approach3_fit_is_skipped_with_a_note(tmp_path, capsys):
    """Issue 17 item 10b: alpha <= 0 gives N_coef null in fit.json; the compute-optimal and
    surface figures draw everything else and say why approach 3's lines are missing. (The fit
    of an implausible law is slow; fast twins: the fuzz case fitjson-a3-alpha-negative draws
    such a fit.json, test_cli_fit's test_implausible_exponents_are_flagged_and_readable fits
    one.)"""
    out = tmp_path / "out"
    run_fit(implausible_source(tmp_path / "src"), out, FitConfig(bootstrap=0, grid=300), quiet=True)
    a3 = FitReport.load(out).approach3
    assert a3.fit.params["alpha"].value <= 0 and not a3.allocation.N_coef.finite
    capsys.readouterr()
    assert plots.main([str(out), "--format", "png", "--only", "compute_optimal", "surface"]) == 0
    err = capsys.readouterr().err
    for name in ("compute_optimal", "surface"):
        assert f"{name}: approach 3: N_opt(C) not drawn: implausible approach-3 exponents" in err
    assert "Traceback" not in err
    res = plots.load_results(out)
    fig = draw(plots.plot_compute_optimal, res)
    assert gids(fig.axes[0], "fit:approach1") and not gids(fig.axes[0], "fit:approach3")
    assert any("alpha" in n for n in notes(fig))
    fig = draw(plots.plot_surface, res)
    assert not gids(fig.axes[0], "frontier") and gids(fig.axes[0], "runs:fitted")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "fit.json").write_text('{"format": 2, "source": '), "not JSON"),
        (lambda d: (d / "fit.json").write_text('{"approach1": {}}'), "format None"),
        (lambda d: (d / "runs.csv").write_text(""), "runs.csv is not a readable CSV"),
        (lambda d: (d / "runs.csv").write_text("run,N\nx,1\n"), "lacks columns"),
        (lambda d: (d / "runs.csv").write_text("run,N,D,C,loss\nx,a,b,c,d\n"), "no run with"),
        (lambda d: (d / "curves.csv").write_bytes(b"\x00\xff\xfe" * 50), "curves.csv"),
    ],
)
def test_cli_one_line_error_on_a_corrupt_results_dir(
    results_dir, tmp_path, capsys, damage, message
):
    out = tmp_path / "res"
    shutil.copytree(results_dir, out, ignore=shutil.ignore_patterns("figures"))
    damage(out)
    with pytest.raises(SystemExit) as exc:
        plots.main([str(out), "--format", "png"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("scaling-plot: error: ") and err.count("\n") == 1 and message in err
    assert not (out / "figures").exists()
