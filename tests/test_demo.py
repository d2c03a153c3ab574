"""The demo (`scaling-demo`, `make demo`): its README block, its steps after the sweep, and (slow)
the whole demo as a new user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.results import Estimate, FitReport, Verification, VerificationRun
from workflows import demo

ROOT = Path(__file__).resolve().parents[1]


def test_readme_demo_block_is_the_one_rendered_from_docs() -> None:
    """README.md's demo section is generated from docs/demo/ (run `make readme` after a demo)."""
    assert demo.readme_block(demo.README.read_text()) == demo.render_block(demo.DOCS)
    for name in demo.README_FIGURES:
        assert (demo.FIGURES / f"{name}.png").stat().st_size > 10_000


def test_update_readme_replaces_only_the_block(tmp_path) -> None:
    results = tmp_path / "results"
    (results / "figures").mkdir(parents=True)
    for name in ("fit.json", "runs.csv"):
        shutil.copyfile(demo.DOCS / name, results / name)
    for name in demo.README_FIGURES:
        (results / "figures" / f"{name}.png").write_bytes(name.encode())
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{demo.README_BEGIN}\ntyped by hand\n{demo.README_END}\noutro\n")
    docs, figures = tmp_path / "docs" / "demo", tmp_path / "figures"
    figures.mkdir()
    demo.update_readme(results, readme=readme, docs=docs, figures=figures)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{demo.README_END}\noutro\n")
    assert "typed by hand" not in text
    assert demo.readme_block(text) == demo.render_block(docs)
    assert (figures / "parity.png").read_bytes() == b"parity"
    with pytest.raises(ValueError, match="has no <!-- demo:begin -->"):
        demo.readme_block("a README without the block")


def test_headline_is_the_narrowest_interval_and_agreement_is_overlap() -> None:
    e1, e2, e3 = (
        demo.Exponent(1, 0.5, 0.1, 0.9, 0.5),
        demo.Exponent(2, 0.45, 0.35, 0.55, 0.55),
        demo.Exponent(3, 0.42, 0.38, 0.50, 0.58),
    )
    assert demo.headline([e1, e2, e3]) is e3
    assert demo.agree([e1, e2, e3])
    assert not demo.agree([e3, demo.Exponent(2, 0.7, 0.6, 0.8, 0.3)])


def _verification(observed: float, inside: bool) -> Verification:
    return Verification(
        method="approach3", C=3e12, C_trained=3.01e12, extrapolation=3.0, model="100k",
        family=True, N=100_096, D=5_000_000, steps=100, batch_size=8, seq_len=128, lr=1e-2,
        predicted=Estimate(1.5, [1.47, 1.53]), interval="bootstrap", observed=observed,
        seed_std=float("nan"), seed_range=[observed, observed], judged_interval=[1.47, 1.53],
        rel_error=(1.5 - observed) / observed, inside_interval=inside,
        runs=[VerificationRun("100k-C3e12-seed0", "runs/demo_verify/x", 0, observed)],
    )  # fmt: skip


@pytest.mark.slow
def test_demo_fits_verifies_and_renders_what_its_sweep_left(tmp_path, monkeypatch, capsys) -> None:
    """scaling-demo's steps after the sweep (the sweep is the end-to-end test's), with the demo's
    named fit settings, on a run store the real collector reads; the verification recorded in
    fit.json lands in the rendered block with its verdict."""
    from fixtures_analysis import synthetic, write_run_store

    from workflows.verify import record

    runs, out = tmp_path / "runs", tmp_path / "results"
    write_run_store(runs, *synthetic())
    calls = []

    def fake_verify(results, root, compute, overrides, method) -> None:
        calls.append((compute, method))
        record(results, _verification(1.51, True))

    monkeypatch.setattr(demo, "run_sweep", lambda root, overrides: 0)
    monkeypatch.setattr(demo, "run_verify", fake_verify)
    args = ["--runs", str(runs), "--out", str(out), "--bootstrap", "20", "--no-wandb"]
    assert demo.main(args) == 0
    text = capsys.readouterr().out
    assert "Fitted law (approach 3, chinchilla)" in text and "approach2: N_opt ~ C^" in text
    report = FitReport.load(out / "fit.json")
    c_max = max(b.C for b in report.approach2.budgets)
    assert calls == [(pytest.approx(demo.VERIFY_FACTOR * c_max), "3")]  # the headline approach
    fit = json.loads((out / "fit.json").read_text())
    assert fit["config"]["bootstrap"] == 20
    assert (out / "figures" / "parity.png").exists() and (out / "report.md").exists()
    block = (out / "readme.md").read_text()
    assert block == demo.render_block(out)
    assert "the run trained to **1.510**" in block and "inside the interval" in block
    assert "the verification run met its targets" in block
    record(out, _verification(1.60, False))
    assert "the verification run missed its targets" in demo.render_block(out)
    assert demo.main([*args, "--no-verify"]) == 0  # a refit without verification says so
    assert "No verification run is recorded" in (out / "readme.md").read_text()
    monkeypatch.setattr(demo, "run_sweep", lambda root, overrides: 3)
    assert demo.main(args) == 3  # a failed sweep stops the demo with its exit status


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, data_cache) -> None:
    """`make demo`'s job without its verification run (tests/test_verify.py trains one for real;
    CI's time is bounded): the demo sweep (joblib, 2 jobs), the fit, the figures, the W&B view,
    the README block; every IsoFLOP profile has its minimum inside; a second demo trains nothing
    new."""
    runs, out = tmp_path / "runs", tmp_path / "results"
    cmd = [
        str(Path(sys.executable).parent / "scaling-demo"),
        "--runs",
        str(runs),
        "--out",
        str(out),
        "--bootstrap",
        "200",
        "--no-verify",
        "trainer.progress_every_s=0",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    t0 = time.time()
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    done = {
        p.parent.name: json.loads(p.read_text())
        for p in runs.glob("*/*/summary.json")
        if p.parent.parent.name in ("demo", demo.VERIFY_EXPERIMENT)
    }
    assert done and all(v["status"] == "completed" for v in done.values())
    report = FitReport.load(out)
    assert sorted(report.approaches()) == [1, 2, 3]
    a3 = report.approach3
    assert a3 and a3.allocation and a3.fit and 0 < a3.allocation.a.value < 1
    assert report.approach2 and report.approach2.budgets
    assert not any(b.edge for b in report.approach2.budgets)  # every profile has its minimum
    assert report.verification is None
    for name in ("learning_curves", "isoflop", "compute_optimal", "surface", "parity"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert (out / "report.md").exists() and (out / "table.tex").exists()
    assert (out / "readme.md").read_text() == demo.render_block(out)
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))  # the W&B analysis run
    assert list(runs.glob("demo/*/wandb/offline-run-*/run-*.wandb"))  # the training runs
    assert "Fitted law (approach 3, chinchilla)" in first.stdout
    print(f"demo wall time {time.time() - t0:.0f}s")
    stamps = {p: p.stat().st_mtime for p in runs.glob("*/*/summary.json")}
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Launching" not in again.stdout + again.stderr
    assert stamps == {p: p.stat().st_mtime for p in runs.glob("*/*/summary.json")}
