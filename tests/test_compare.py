"""scaling-compare on synthetic ladders with a known answer, two W&B groups, and bad input.

Truth: B's law is A's with compute scaled by k (A and B of Chinchilla's law times k^-gamma,
gamma = alpha beta / (alpha + beta)), so the multiplier is k at every C; a pair of laws whose
frontiers cross at a compute found here by brute force (minimising the loss over N on a fine
grid, apart from the code's closed form); the same recipe twice with other noise seeds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
import types

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import run_summary, write_run_store
from scipy.optimize import brentq
from test_fit_doc import DOC, fields_table

from analysis.collect import collect
from analysis.compare import (
    CompareConfig,
    CompareError,
    CompareReport,
    Crossover,
    LadderFit,
    MultiplierCurve,
    TargetMultiplier,
    common_units,
)
from analysis.compare_cli import log_compare, main, parser
from analysis.wandb_offline import read_offline_run

TRUE = {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
GAMMA = TRUE["alpha"] * TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
K = 4.0  # B reaches with C what A reaches with 4 C
SCALED = {**TRUE, "A": TRUE["A"] * K**-GAMMA, "B": TRUE["B"] * K**-GAMMA}
# A lower floor, learning more slowly: worse than TRUE at small C, better at large C.
CROSSING = {"E": 1.0, "A": 330.0, "B": 330.0, "alpha": 0.30, "beta": 0.26}
FAST = ["--bootstrap", "40", "--grid", "100"]


def ladder(p: dict, seed: int, noise: float = 0.005) -> pd.DataFrame:
    """IsoFLOP runs (5 budgets x 5 sizes around the optimum, C = 6 N D) of law ``p``."""
    rng = np.random.default_rng(seed)
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    rows = []
    for c in np.logspace(17, 20, 5):
        n_opt = g * (c / 6) ** (p["beta"] / (p["alpha"] + p["beta"]))
        for n in n_opt * np.logspace(-0.7, 0.7, 5):
            d = c / (6 * n)
            loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
            loss *= math.exp(noise * rng.standard_normal())
            rows.append({"run": f"{n:.4g}-C{c:.2g}", "N": n, "D": d, "C": c, "loss": loss})
    return pd.DataFrame(rows)


def true_optimal_loss(p: dict, c: float) -> float:
    """min over N of the law at C = 6 N D, by brute force on a fine grid of N."""
    n = np.geomspace(1e3, 1e15, 200_001)
    return float(np.min(p["E"] + p["A"] / n ** p["alpha"] + p["B"] / (c / (6 * n)) ** p["beta"]))


def write(tmp_path, name: str, df: pd.DataFrame) -> str:
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    return str(path)


def compare(tmp_path_factory, a: pd.DataFrame, b: pd.DataFrame, *flags: str):
    """The comparison of CSV ladders a and b through the command line, and its folder."""
    tmp = tmp_path_factory.mktemp("compare")
    out = tmp / "out"
    rc = main([write(tmp, "a", a), write(tmp, "b", b), "--out", str(out), *FAST, *flags])
    assert rc == 0
    return CompareReport.load(out), out


def inside(x: float, ci: list[float]) -> bool:
    return ci[0] <= x <= ci[1]


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return compare(
        tmp_path_factory, ladder(TRUE, 0), ladder(SCALED, 1), "--targets", "1e18,1e19,1e21"
    )


def test_known_multiplier_is_recovered_within_its_intervals(known):
    known, _ = known
    for t in known.targets:
        assert inside(K, t.multiplier.ci), (t.C, t.multiplier)
        assert t.loss_b.value < t.loss_a.value
    inner = next(t for t in known.targets if t.C == 1e19)  # inside the ladders' range
    assert inner.multiplier.value == pytest.approx(K, rel=0.25)
    curve = known.multiplier
    in_range = [i for i, c in enumerate(curve.C) if 1e17 <= c <= 1e20]
    assert all(curve.ci[0][i] <= K <= curve.ci[1][i] for i in in_range)
    assert known.crossover.C == [] and known.crossover.better_at_high == "B"
    gamma = known.a.frontier["gamma"]
    assert inside(GAMMA, gamma.ci) and gamma.value == pytest.approx(GAMMA, rel=0.1)


def test_outputs_report_figure_and_typed_json_round_trip(known):
    _, out = known
    text = (out / "report.md").read_text()
    assert "effective compute multiplier of B over A" in text and "No crossover" in text
    for name in (
        "compare.json",
        "runs_a.csv",
        "runs_b.csv",
        "figures/compare.pdf",
        "figures/compare.png",
    ):
        assert (out / name).is_file(), name
    data = json.loads((out / "compare.json").read_text())
    assert data["format"] == 1 and data["config"]["bootstrap"] == 40
    assert CompareReport.load(out / "compare.json").to_json() == (out / "compare.json").read_text()


def test_crossover_of_laws_that_cross_is_recovered(tmp_path_factory):
    report, out = compare(tmp_path_factory, ladder(TRUE, 2), ladder(CROSSING, 3))
    truth = 10 ** brentq(
        lambda lc: true_optimal_loss(TRUE, 10**lc) - true_optimal_loss(CROSSING, 10**lc), 17, 20
    )
    cr = report.crossover
    assert len(cr.C) == 1 and cr.C[0] == pytest.approx(truth, rel=0.5)
    assert inside(truth, cr.first.ci), (truth, cr.first)
    assert cr.better_at_high == "B" and cr.fraction > 0.9
    curve = report.multiplier
    assert curve.value[0] < 1 < curve.value[-1]  # A better below the crossover, B above
    assert "above it B is better" in (out / "report.md").read_text()


class _Run:
    """One finished W&B run: its record in the summary and two logged rows of its curve."""

    def __init__(self, r, group: str, i: int, vocab: int):
        record = dataclasses.replace(run_summary(r), vocab_size=vocab)
        self.id, self.name, self.group, self.state = f"{group}{i}", r.run, group, "finished"
        self.heartbeat_at, self.summary, self.config = "2026-01-01T00:00:00", record.to_dict(), {}
        self.rows = [
            {"trainer/global_step": s, "tokens": r.D * f, "flops/chinchilla": r.C * f,
             "val/loss": r.loss / f**0.05}
            for s, f in ((1, 0.5), (2, 1.0))
        ]  # fmt: skip

    def scan_history(self, keys=None, page_size: int = 1000):
        return iter(self.rows)


class _Api:
    """Two groups of one W&B project, listed as ``wandb.Api().runs`` lists them."""

    def __init__(self, groups: dict[str, pd.DataFrame], vocab: dict[str, int] | None = None):
        self.runs_by_group = {
            group: [
                _Run(types.SimpleNamespace(**r._asdict()), group, i, (vocab or {}).get(group, 256))
                for i, r in enumerate(df.itertuples())
            ]
            for group, df in groups.items()
        }

    def runs(self, path, filters=None, order="+created_at", per_page=50, lazy=True):
        return iter(self.runs_by_group[(filters or {})["group"]])


@pytest.fixture
def two_groups(monkeypatch, tmp_path):
    import wandb

    monkeypatch.setenv("SCALING_WANDB_CACHE", str(tmp_path / "cache"))

    def use(api):
        monkeypatch.setattr(wandb, "Api", lambda *a, **k: api)

    return use


def test_same_recipe_other_seeds_from_two_wandb_groups_gives_one(two_groups, tmp_path, capsys):
    """Two W&B groups of one project, the same law with other noise: the interval holds 1."""
    two_groups(_Api({"seed0": ladder(TRUE, 6, 0.01), "seed1": ladder(TRUE, 7, 0.01)}))
    out = tmp_path / "out"
    argv = ["wandb:ent/proj", "wandb:ent/proj", "--group-a", "seed0", "--group-b", "seed1"]
    assert main([*argv, "--out", str(out), *FAST, "--targets", "1e19,1e21"]) == 0
    report = CompareReport.load(out)
    assert report.a.group == "seed0" and report.b.group == "seed1"
    assert report.a.n_fitted == report.b.n_fitted == 25
    assert "vocab 256" in report.a.unit
    for t in report.targets:
        assert inside(1.0, t.multiplier.ci), (t.C, t.multiplier)
    assert "multiplier of B over A at C = 1e+19" in capsys.readouterr().out


def test_different_tokenizers_are_refused_before_fitting(two_groups, tmp_path, capsys):
    two_groups(_Api({"bytes": ladder(TRUE, 0), "bpe": ladder(TRUE, 1)}, {"bpe": 4096}))
    out = tmp_path / "out"
    argv = ["wandb:ent/proj", "wandb:ent/proj", "--group-a", "bytes", "--group-b", "bpe"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "vocabulary size ['256']" in err and "['4096']" in err and "bits_per_byte" in err
    assert "Traceback" not in err and not out.exists()
    # bits per byte from run-store losses needs each side's bytes per token
    assert (
        main([*argv, "--out", str(out), "--unit", "bits_per_byte", "--bytes-per-token-a", "1"]) == 2
    )
    assert "--bytes-per-token-b" in capsys.readouterr().err and not out.exists()


def test_bits_per_byte_maps_both_ladders_to_one_unit(tmp_path):
    a = ladder(TRUE, 0).assign(vocab_size=256, corpus="web")
    b = ladder(TRUE, 1).assign(vocab_size=4096, corpus="web")
    cols = [collect(write(tmp_path, n, df)) for n, df in (("a", a), ("b", b))]
    with pytest.raises(CompareError, match="vocabulary size"):
        common_units(*cols, CompareConfig())
    config = CompareConfig(unit="bits_per_byte", bytes_per_token_a=1.0, bytes_per_token_b=3.5)
    unit_a, unit_b, _ = common_units(*cols, config)
    assert "bits/byte" in unit_a and "3.5 bytes/token" in unit_b
    np.testing.assert_allclose(cols[1].runs["loss"], b["loss"] / (math.log(2) * 3.5))


def test_different_flop_conventions_are_refused_unless_mapped(tmp_path, capsys):
    a = ladder(TRUE, 0)
    b = ladder(TRUE, 1).assign(C=lambda d: 8 * d["N"] * d["D"])  # another FLOP count
    pa, pb, out = write(tmp_path, "a", a), write(tmp_path, "b", b), tmp_path / "out"
    assert main([pa, pb, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "C / (N D) = 6" in err and "C / (N D) = 8" in err and "--flops 6nd" in err
    assert not out.exists()
    cols = [collect(pa), collect(pb)]
    common_units(*cols, CompareConfig(flops="6nd"))
    np.testing.assert_allclose(cols[1].runs["C"], 6 * b["N"] * b["D"])


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--bytes-per-token-a", "2"], "bytes_per_token_a = 2.0 is not valid; use only with unit"),
        (["--shared-e", "--law", "power_C"], "shared_e = True is not valid"),
        (["--law", "kaplan_nd"], "law = 'kaplan_nd' is not valid; use one of"),
        (["--c-range", "1e20,1e18"], "c_range = [1e+20, 1e+18] is not valid"),
        (["--config", "nope"], "unknown compare config 'nope'"),
        (["--flops", "guess"], "flops = 'guess' is not valid; use one of ('check', '6nd'"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, flags, named):
    pa = write(tmp_path, "a", ladder(TRUE, 0))
    assert main([pa, pa, "--out", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--shared-e", "--group-a", "--bytes-per-token-b", "--flops", "--unit", "--wandb"):
        assert flag in text


def test_wandb_view_logs_the_comparison_offline(known, monkeypatch, tmp_path):
    """--wandb: one analysis run (job type compare) with the multiplier at each target."""
    report, out = known
    for key, value in (("WANDB_SILENT", "true"), ("WANDB_DISABLE_GIT", "true")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    config = dataclasses.replace(report.config, wandb=True, wandb_mode="offline")
    run_dir = log_compare(out, report, config)
    assert run_dir.parent == out / "wandb" and run_dir.name.startswith("offline-run-")
    deadline = time.monotonic() + 20
    while (logged := read_offline_run(run_dir))[
        "exit_code"
    ] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged["job_type"] == "compare" and logged["project"] == "scaling"
    for t in report.targets:
        assert logged["summary"][f"multiplier/C={t.C:.3g}"] == pytest.approx(t.multiplier.value)
    assert logged["config"]["shared_e"] is False


@pytest.mark.slow
def test_shared_irreducible_loss_narrows_the_known_multiplier(known, tmp_path_factory):
    """One E for both ladders (a joint fit, each ladder's runs resampled apart): the interval
    still holds k, and is narrower at 10x the largest run than with independent fits."""
    separate, _ = known
    report, _ = compare(
        tmp_path_factory, ladder(TRUE, 0), ladder(SCALED, 1), "--shared-e",
        "--targets", "1e18,1e19,1e21",
    )  # fmt: skip
    assert report.shared_law is not None and report.shared_law.law == "chinchilla_shared_e"
    e = report.shared_law.params["E"]
    assert inside(TRUE["E"], e.ci) and report.a.frontier["E"].value == e.value
    for t in report.targets:
        assert inside(K, t.multiplier.ci), (t.C, t.multiplier)

    def width(est):
        return np.log(est.ci[1] / est.ci[0])

    far, far_separate = report.targets[-1], separate.targets[-1]
    assert far.C == far_separate.C == 1e21  # 10x the largest run: where E matters
    assert width(far.multiplier) < 0.5 * width(far_separate.multiplier)


COMPARE_CLASSES = (
    CompareReport, CompareConfig, LadderFit, MultiplierCurve, TargetMultiplier, Crossover,
)  # fmt: skip
DOC_BLOCK = re.compile(r"(<!-- compare-fields:start -->\n)(.*?)(<!-- compare-fields:end -->)", re.S)


def test_formats_doc_lists_the_compare_fields() -> None:
    """docs/formats.md section 4 is generated from the compare.json dataclasses' field docs
    (regenerate with SCALING_UPDATE_DOCS=1, as section 3)."""
    text = DOC.read_text()
    m = DOC_BLOCK.search(text)
    assert m, f"{DOC}: section 4 lost its <!-- compare-fields --> markers"
    want = "\n".join(line for cls in COMPARE_CLASSES for line in fields_table(cls))
    if os.environ.get("SCALING_UPDATE_DOCS"):
        DOC.write_text(text[: m.start(2)] + want + text[m.end(2) :])
        return
    assert m.group(2) == want, "regenerate with SCALING_UPDATE_DOCS=1"


def test_run_stores_of_different_corpora_are_refused(tmp_path, capsys):
    """Two run stores whose records name other corpora: refused naming both, nothing written."""
    stores = []
    for name, corpus in (("a", "stdlib"), ("b", "web")):
        runs = ladder(TRUE, 0).head(6)
        curves = runs.assign(step=1, tokens=runs["D"])
        root = write_run_store(tmp_path / name, runs, curves)
        for path in root.rglob("summary.json"):
            record = json.loads(path.read_text())
            path.write_text(json.dumps({**record, "corpus": corpus}))
        stores.append(str(root))
    out = tmp_path / "out"
    assert main([*stores, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "corpus ['stdlib']" in err and "corpus ['web']" in err and not out.exists()
