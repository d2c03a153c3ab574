"""LR and batch-size laws: the lr_bs sweep's plan, the fit against synthetic ground truth and
against an independent computation on Step Law's released grid, and bad input."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_sweeps import cli, plan_of

from analysis.hparams import (
    HparamsReport,
    HparamsSettings,
    fit_hparams,
    grid_from_csv,
    grid_from_store,
    main,
)
from contract import CONVENTIONS, BudgetRecord, RunSummary, Status, write_summary
from contract.settings import load_settings
from scaling.config import ConfigError, SweepSpec

ROOT = Path(__file__).resolve().parents[1]
STEPLAW = ROOT / "data" / "reference" / "steplaw_dense_lr_bs_loss.csv"
TRUE = {"c": 1.79, "a": -0.713, "b": 0.307, "k": 0.58, "m": 0.571}  # Step Law's published law
STEPLAW_ARGS = ["--columns", "B=bs,loss=smooth loss", "--batch-unit", "2048"]


def synthetic_grid(
    seed: int = 0, noise: float = 2e-4, shift: dict | None = None, jitter: float = 1.0
) -> pd.DataFrame:
    """An LR x batch grid per (N, D) cell around a known lr*(N, D) and B*(D), each point jittered
    by up to half a grid step x ``jitter``; the loss a bowl in log lr and log B. ``shift`` moves
    one cell's true optimum off the grid's centre: {(N, D): lr factor}."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1e7, 3e7, 1e8, 3e8):
        for d in (2e9, 8e9, 3.2e10):
            lr0 = TRUE["c"] * n ** TRUE["a"] * d ** TRUE["b"]
            b0 = TRUE["k"] * d ** TRUE["m"]
            grid_lr0 = lr0
            lr0 *= (shift or {}).get((n, d), 1.0)
            base = 2 + 400 * n**-0.34 + 400 * d**-0.28
            for i in range(-8, 9):
                for j in range(-5, 6):
                    lr = grid_lr0 * 2 ** (i / 4 + jitter * rng.uniform(-0.125, 0.125))
                    b = b0 * 2 ** (j / 2 + jitter * rng.uniform(-0.25, 0.25))
                    bowl = 1 + 0.01 * np.log(lr / lr0) ** 2 + 0.005 * np.log(b / b0) ** 2
                    loss = base * bowl * (1 + noise * rng.standard_normal())
                    rows.append({"N": n, "D": d, "C": 6 * n * d, "lr": lr, "B": b, "loss": loss})
    return pd.DataFrame(rows)


def test_synthetic_grid_recovers_the_known_laws_within_intervals() -> None:
    report = fit_hparams(synthetic_grid(), HparamsSettings(n_bootstrap=200), "synthetic", "6ND")
    lr, b = report.laws["lr_ND"], report.laws["B_D"]
    for law, var, true in ((lr, "N", TRUE["a"]), (lr, "D", TRUE["b"]), (b, "D", TRUE["m"])):
        est = law.exponents[var]
        assert est.ci[0] <= true <= est.ci[1], (law.formula(), var, est)
        assert est.value == pytest.approx(true, abs=0.03)
    for law, true in ((lr, TRUE["c"]), (b, TRUE["k"])):
        assert law.coef.ci[0] <= true <= law.coef.ci[1]
    assert lr.predict(N=1e8, D=8e9) == pytest.approx(
        TRUE["c"] * 1e8 ** TRUE["a"] * 8e9 ** TRUE["b"], rel=0.05
    )
    assert len(report.cells) == 12 and not report.warnings


def test_cell_at_the_grid_edge_is_warned() -> None:
    # one cell's optimum 4 grid steps past the highest LR tried; an exact (unjittered) grid
    grid = synthetic_grid(shift={(1e8, 8e9): 2**3}, jitter=0.0)
    report = fit_hparams(grid, HparamsSettings(n_bootstrap=0), "synthetic", "6ND")
    assert [c.edge for c in report.cells if c.edge] == [["highest lr"]]
    [warning] = report.warnings
    assert warning.startswith("cell N=1e+08, D=8e+09: the best run") and "highest lr" in warning
    cell_max_b = grid.groupby(["N", "D"])["B"].transform("max")
    one_b = grid[(grid["N"] != 1e7) | (grid["B"] == cell_max_b)]
    report = fit_hparams(one_b, HparamsSettings(n_bootstrap=0), "synthetic", "6ND")
    assert sum("has one batch size" in w for w in report.warnings) == 3  # N = 1e7's 3 cells


def _steplaw_independent(band: float = 0.0025) -> dict[str, float]:
    """The procedure computed directly: band optima per cell, then numpy least squares."""
    df = pd.read_csv(STEPLAW)
    rows = []
    for (n, d), g in df.groupby(["N", "D"]):
        near = g[g["smooth loss"] <= g["smooth loss"].min() * (1 + band)]
        lr = np.exp(np.log(near["lr"]).mean())
        b = np.exp(np.log(near["bs"] * 2048.0).mean())
        rows.append((float(n), float(d), lr, b))
    n, d, lr, b = np.array(rows).T
    (log_c, a, e_d), *_ = np.linalg.lstsq(
        np.column_stack([np.ones_like(n), np.log(n), np.log(d)]), np.log(lr), rcond=None
    )
    m, log_k = np.polyfit(np.log(d), np.log(b), 1)
    return {"c": np.exp(log_c), "a": a, "b": e_d, "k": np.exp(log_k), "m": m}


def test_steplaw_grid_matches_an_independent_computation() -> None:
    grid, convention = grid_from_csv(STEPLAW, {"B": "bs", "loss": "smooth loss"}, 2048.0)
    report = fit_hparams(grid, HparamsSettings(n_bootstrap=0), str(STEPLAW), convention)
    assert report.n_runs == 1911 and len(report.cells) == 17 and convention == "6ND"
    ref = _steplaw_independent()
    lr, b = report.laws["lr_ND"], report.laws["B_D"]
    got = {
        "c": lr.coef.value,
        "a": lr.exponents["N"].value,
        "b": lr.exponents["D"].value,
        "k": b.coef.value,
        "m": b.exponents["D"].value,
    }
    assert got == pytest.approx(ref, rel=1e-5)
    # the released grid does not reproduce the published law exactly (see the README)
    assert got["a"] == pytest.approx(TRUE["a"], abs=0.1)
    assert got["b"] == pytest.approx(TRUE["b"], abs=0.1)
    assert got["m"] == pytest.approx(TRUE["m"], abs=0.05)


def test_default_settings_are_the_shipped_steplaw_yaml() -> None:
    assert HparamsSettings.load() == HparamsSettings()
    assert HparamsSettings.load("steplaw", {"band": 0.01, "seed": None}).band == 0.01


def test_one_settings_loader_for_both_sides(tmp_path) -> None:
    """contract.settings: a name in the folder or a path, overrides, the nearest valid key."""
    (tmp_path / "a.yaml").write_text("band: 0.01\nseed: 3\n")
    load = partial(load_settings, valid=["band", "seed"], what="test", error=ValueError)
    got = load(tmp_path, "a", overrides={"seed": 4, "band": None})  # None: not given
    assert got == (tmp_path / "a.yaml", {"band": 0.01, "seed": 4})
    assert load(Path("/nowhere"), tmp_path / "a.yaml", overrides=None).path == tmp_path / "a.yaml"
    (tmp_path / "typo.yaml").write_text("bandd: 0.01\nzzz: 1\n")
    with pytest.raises(ValueError, match=r"\['bandd', 'zzz'\]; valid: \['band', 'seed'\]; "
                       r"did you mean 'band' for 'bandd'\?$"):  # fmt: skip
        load(tmp_path, tmp_path / "typo.yaml", overrides=None)
    with pytest.raises(ValueError, match=r"'nope' cannot be read.*named setting \['a', 'typo'\]"):
        load(tmp_path, "nope", overrides=None)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="expected a mapping of settings"):
        load(tmp_path, "list", overrides=None)


def test_cli_writes_json_report_and_figure(tmp_path, capsys) -> None:
    grid = synthetic_grid()
    small = grid[grid["N"].isin([1e7, 3e7]) & grid["D"].isin([2e9, 8e9])]  # 4 cells
    csv = tmp_path / "grid.csv"
    small.rename(columns={"B": "bs", "loss": "smooth loss"}).to_csv(csv, index=False)
    out = tmp_path / "out"
    assert main([str(csv), "--out", str(out), "--bootstrap", "20", *STEPLAW_ARGS[:2]]) == 0
    report = HparamsReport.load(out)
    assert len(report.cells) == 4 and report.settings.n_bootstrap == 20
    assert report.laws["lr_ND"].exponents["N"].ci is not None
    for name in ("hparams.json", "hparams.md", "hparams_grid.pdf", "hparams_grid.png"):
        assert (out / name).stat().st_size > 0
    assert "## Hyperparameter laws" in (out / "hparams.md").read_text()
    assert "lr* = " in capsys.readouterr().out


def _write_run(root: Path, n: int, d: int, lr: float, bs: int, loss: float) -> None:
    """A completed run's summary.json through the run contract."""
    fpt = dict.fromkeys(CONVENTIONS, 6.0 * n)
    s = RunSummary(
        run=root.name,
        experiment="lr_bs",
        sweep="lr_bs",
        status=Status.COMPLETED,
        size=f"{n}",
        N=n,
        N_total=n + 1000,
        N_with_head=n + 500,
        flops_per_token=fpt,
        D=d,
        steps=d // (bs * 32),
        batch_size=bs,
        seq_len=32,
        C={c: 6.0 * n * d for c in CONVENTIONS},
        budget=BudgetRecord(kind="tokens", value=str(d), label=f"D{d}", convention="6n"),
        lr=lr,
        seed=0,
        corpus="stdlib",
        corpus_hash="sha256:0",
        vocab_size=256,
        config_hash="x",
        final_val_loss=loss,
    )
    write_summary(root / "summary.json", s)


def test_run_store_grid_reads_batch_size_in_tokens(tmp_path) -> None:
    runs = tmp_path / "runs" / "lr_bs"
    full = synthetic_grid()
    grid = full[full.index % 6 == 0]  # a coarser grid: fewer run folders to write and read
    for i, r in enumerate(grid.itertuples()):
        bs = max(1, round(r.B / 32))  # the store records sequences of 32 tokens
        _write_run(runs / f"run{i}", int(r.N), int(r.D), r.lr, bs, r.loss)
    table = grid_from_store(runs, "6n")
    assert sorted(table["B"]) == sorted(32.0 * max(1, round(b / 32)) for b in grid["B"])
    report = fit_hparams(table, HparamsSettings(n_bootstrap=20), str(runs), "6n")
    assert report.n_runs == len(grid) and len(report.cells) == 12
    assert report.laws["B_D"].exponents["D"].value == pytest.approx(TRUE["m"], abs=0.05)
    assert report.laws["lr_ND"].exponents["N"].value == pytest.approx(TRUE["a"], abs=0.05)
    path = tmp_path / "hparams.json"
    path.write_text(report.to_json())
    assert HparamsReport.load(path) == report
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["settings"]["band"] == 0.0025


@pytest.mark.parametrize(
    "edit, args, message",
    [
        (lambda g: g.assign(lr=1e-3), [], "has one learning rate (0.001)"),
        (lambda g: g[g["N"] == 1e7], [], "1 size(s)"),
        (lambda g: g.assign(B=4096.0), [], "B*(D) needs >= 2 batch sizes"),
        (lambda g: g.drop(columns="lr"), [], "columns ['lr=lr'] not found"),
        (lambda g: g.assign(loss=np.nan), [], "no run with a finite positive"),
        (lambda g: g, ["--band", "1.5"], "band=1.5 must be a fraction"),
        (lambda g: g, ["--columns", "X=y"], "bad --columns entries ['X']"),
        (lambda g: g, ["--settings", "nope"], "give a named setting ['steplaw'] or a .yaml"),
        (lambda g: g, ["--settings", "SETTINGS"], "unknown setting(s) ['bandd']; valid: ['band'"),
    ],
)
def test_bad_grids_are_one_line_errors(tmp_path, capsys, edit, args, message) -> None:
    csv = tmp_path / "grid.csv"
    edit(synthetic_grid()).to_csv(csv, index=False)
    (tmp_path / "typo.yaml").write_text("bandd: 0.01\n")
    args = [str(tmp_path / "typo.yaml") if a == "SETTINGS" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main([str(csv), "--out", str(tmp_path / "out"), "--bootstrap", "0", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_lr_bs_sweep_plans_names_and_refuses_bad_grids(data_cache, tmp_path) -> None:
    ov = ("sweep.sizes=[10k]", "sweep.tokens=[20480]", "sweep.min_steps=1")
    sp = plan_of(data_cache, tmp_path, "lr_bs", *ov, "sweep.batch_sizes=[8,24]",
                 "sweep.lrs=[1e-3,1e-2]")  # fmt: skip
    assert [(r.name, r.tokens_per_step, r.lr, r.D) for r in sp.runs] == [
        ("10k-D2.05e4-bs8-lr1e-3", 256, 1e-3, 20480),
        ("10k-D2.05e4-bs8-lr0.01", 256, 1e-2, 20480),
    ]
    # 24 x 32 = 768 tokens per step: 27 steps train 20736 tokens, 1.2% over the cell's D
    assert [d.run for d in sp.dropped] == ["10k-D2.05e4-bs24-lr1e-3", "10k-D2.05e4-bs24-lr0.01"]
    assert all("does not divide D=20480" in d.reason for d in sp.dropped)
    assert sp.warnings == [
        "cell 10k tokens=20480 keeps 2 LR(s) x 1 batch size(s); the fit of its best LR and "
        "batch size needs >= 2 of each"
    ]
    with pytest.raises(ConfigError, match=r"sweep.lrs=\[0.001\] has one value"):
        plan_of(data_cache, tmp_path, "lr_bs", *ov, "sweep.batch_sizes=[4,8]", "sweep.lrs=[1e-3]")
    with pytest.raises(ConfigError, match=r"sweep.batch_sizes=\[8\] has one value"):
        plan_of(data_cache, tmp_path, "lr_bs", *ov, "sweep.batch_sizes=[8]")
    with pytest.raises(ConfigError, match=r"sweep.batch_sizes must be whole numbers >= 1"):
        SweepSpec(kind="lr_bs", batch_sizes=[0, 8])


@pytest.mark.slow
def test_real_lr_bs_sweep_gives_cells_and_laws(tmp_path, data_cache) -> None:
    """A tiny real lr_bs sweep (16 Lightning runs) read back by scaling-hparams."""
    out = cli(
        tmp_path,
        data_cache,
        "+sweep=lr_bs",
        "sweep.sizes=[10k,20k]",
        "sweep.tokens=[20480,40960]",
        "sweep.batch_sizes=[4,8]",
        "sweep.lrs=[3e-3,1e-2]",
        "sweep.min_steps=1",
    )
    assert out.returncode == 0, out.stderr
    assert "completed 16 / diverged 0 / failed 0" in out.stdout
    runs = tmp_path / "runs" / "lr_bs"
    assert main([str(runs), "--out", str(tmp_path / "out"), "--bootstrap", "20"]) == 0
    report = HparamsReport.load(tmp_path / "out")
    assert report.n_runs == 16 and [c.n_runs for c in report.cells] == [4] * 4
    assert all(c.Bs == [128.0, 256.0] and c.lrs == [3e-3, 1e-2] for c in report.cells)
    assert all(np.isfinite(e.value) for law in report.laws.values() for e in law.exponents.values())
