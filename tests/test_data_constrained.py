"""The data-constrained law (Muennighoff et al. 2023) through the one fit: ground truth and the
datablations runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.fit import fit
from analysis.laws import data_constrained_repeats, get_law

REF = Path(__file__).resolve().parents[1] / "data" / "reference" / "datablations_contour_losses.csv"
PAPER = dict(E=1.87, A=521.0, B=1488.0, alpha=0.353, beta=0.353, RD_star=15.4, RN_star=5.3)
LAW = get_law("data_constrained")
CHINCHILLA = get_law("chinchilla")


def _datablations() -> pd.DataFrame:
    d = pd.read_csv(REF)
    return pd.DataFrame(
        {"N": d.num_params, "D": d.token_num, "U": d.token_num / d.epochs, "loss": d.openLM_loss}
    )


def test_effective_data_matches_the_paper_formula():
    """D' = U + U R* (1 - exp(-R/R*)): one epoch is U, and repeats saturate at U (1 + R*)."""
    u = np.array([1e9, 1e9, 1e9])
    d = np.array([1e9, 4e9, 1e13])
    n = np.full(3, 1e6)  # small: N below N_opt(U), so N' = N
    pred = LAW.predict_natural(PAPER, {"N": n, "D": d, "U": u})
    d_eff = np.array([1e9, 1e9 * (1 + 15.4 * (1 - np.exp(-3 / 15.4))), 1e9 * 16.4])
    want = 1.87 + 521 / n**0.353 + 1488 / d_eff**0.353
    np.testing.assert_allclose(pred, want, rtol=1e-6)


def _two_stage(data: pd.DataFrame) -> dict[str, float]:
    """The paper's procedure: chinchilla on the single-epoch runs (U = D), then R_D*, R_N* with
    that held (analysis.laws.data_constrained_repeats); natural parameters, all seven."""
    single = data[data["D"] <= data["U"]]
    head = {k: float(v) for k, v in CHINCHILLA.to_natural(fit(CHINCHILLA, single).theta).items()}
    law = data_constrained_repeats(head)
    return {k: float(v) for k, v in law.to_natural(fit(law, data, workers=1).theta).items()}


@pytest.mark.slow
def test_two_stage_fit_recovers_known_repetition_constants():
    """Synthetic losses from known parameters with 0.2% noise: stage 1 finds the single-epoch
    coefficients on single-epoch ladders (20, 40 and 80 tokens per parameter, so N <= N_opt(U):
    nothing repeats, N' = N), stage 2 R_D* and R_N* on repeated-data runs at 4-64 epochs."""
    rng = np.random.default_rng(0)
    truth = PAPER | {"RD_star": 10.0, "RN_star": 4.0}
    ladder = np.geomspace(1e7, 3e9, 8)
    n = np.concatenate([np.tile(ladder, 3), np.repeat(ladder, 9)])
    u = np.concatenate([np.repeat([20.0, 40.0, 80.0], 8) * np.tile(ladder, 3),
                        np.tile(np.repeat([1e8, 1e9, 1e10], 3), 8)])  # fmt: skip
    epochs = np.concatenate([np.ones(24), np.tile([4.0, 16.0, 64.0], 24)])
    cols = {"N": n, "D": u * epochs, "U": u}
    loss = LAW.predict_natural(truth, cols) * np.exp(rng.normal(0, 0.002, n.size))
    got = _two_stage(pd.DataFrame(cols | {"loss": loss}))
    assert got["E"] == pytest.approx(1.87, rel=0.05)
    assert got["RD_star"] == pytest.approx(10.0, rel=0.15)
    assert got["RN_star"] == pytest.approx(4.0, rel=0.3)


def _turned_up(d: pd.DataFrame) -> np.ndarray:
    """Runs whose loss is above a run with the same U and N on fewer tokens, or the same U and
    D with fewer parameters: more epochs or parameters hurt there, which the law cannot fit."""
    bad = np.zeros(len(d), dtype=bool)
    for i, r in enumerate(d.itertuples()):
        fewer_epochs = d[(d.U == r.U) & (d.N == r.N) & (d.D < r.D)]
        fewer_params = d[(d.U == r.U) & (d.D == r.D) & (d.N < r.N)]
        bad[i] = bool((fewer_epochs.loss < r.loss).any() or (fewer_params.loss < r.loss).any())
    return bad


@pytest.mark.slow
def test_datablations_two_stage_fit_and_four_epochs_cost_little():
    """The paper's two-stage fit on its runs (data/reference: 229 runs, 33 single-epoch; 68
    where the loss turned up are left out). Measured: R_D* = 54.6, bootstrap 90% interval
    [37.3, 139.0] over 200 resamples of the runs with the single-epoch fit held; the paper's 15.4
    lies outside it. This file's losses sit above the paper's single-epoch law (its E 1.87,
    A 521, B 1488, alpha = beta = 0.353 predict 6.1 where the file has 8.1 and 2.19 for 2.34),
    so the head fitted here (E 1.92, A 426, B 5726, alpha 0.33, beta 0.40) differs and R_D*
    follows it; holding the paper's head instead, stage 2 degenerates (R_N* -> 0). So the test
    holds R_D* to the interval the bootstrap supports, not to 15.4, and checks the finding
    that does carry over: 4 epochs of U lose < 0.5% against 4U fresh tokens, while 40 epochs
    lose several times more (the law is not flat). The size is below N_opt(U) (50M for 1.5B
    unique tokens), so only the data repeats, as in the paper's statement."""
    runs = _datablations()
    nat = _two_stage(runs[~_turned_up(runs)])
    assert 37.3 <= nat["RD_star"] <= 139.0  # the bootstrap 90% interval (docstring)
    n, u = np.array([5e7]), np.array([1.5e9])

    def excess(epochs: float) -> float:
        repeated = LAW.predict_natural(nat, {"N": n, "D": epochs * u, "U": u})[0]
        fresh = LAW.predict_natural(nat, {"N": n, "D": epochs * u, "U": epochs * u})[0]
        return repeated / fresh - 1.0

    assert 0.0 <= excess(4.0) < 0.005
    assert excess(40.0) > 3 * excess(4.0)
