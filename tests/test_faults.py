"""Faults that must not wedge a run: damaged or hostile checkpoints, bad metrics rows, a run
launched twice at once, and CLI errors that are one line (real training on the tiny config)."""

from __future__ import annotations

import csv
import os
import pathlib
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contract import Status, SummaryError
from scaling.module import RunRecorder
from scaling.store import RunFolderError, RunStore
from scaling.train import Outcome, train

ROOT = Path(__file__).resolve().parents[1]
ARGS = ("train.steps=40", "train.checkpoint_every=10", "train.log_every=5")


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def crash_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the next training raise once it reaches `step` (after that step's metrics row)."""
    real = RunRecorder.on_train_batch_end

    def crash(self, trainer, *a, **k):  # noqa: ANN001
        real(self, trainer, *a, **k)
        if trainer.global_step == step:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(RunRecorder, "on_train_batch_end", crash)


def crashed_run(tiny_cfg, monkeypatch, experiment: str) -> Path:  # noqa: ANN001
    """A run killed at step 25: last.ckpt at step 20, prev.ckpt at step 10."""
    crash_at(monkeypatch, 25)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cfg(*ARGS, f"experiment={experiment}"))
    monkeypatch.undo()
    run = Path(tiny_cfg().runs_dir) / experiment / "10k-S40"
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert (run / "checkpoints" / "prev.ckpt").exists()
    return run


class Payload:
    """A pickle that creates a file when unpickled (what a crafted checkpoint could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.touch, (self.marker,))


def damage(path: Path, how: str, marker: Path) -> None:
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        torch.save({"global_step": Payload(marker), "state_dict": {}}, path)


def test_damaged_or_hostile_last_checkpoint_resumes_from_the_previous_one(
    tiny_cfg, monkeypatch, tmp_path, capfd
) -> None:
    ref = train(tiny_cfg(*ARGS, "experiment=ref")).summary
    ref_rows = read_metrics(Path(tiny_cfg().runs_dir) / "ref" / "10k-S40")
    marker = tmp_path / "pwned"
    for how in ("zero-byte", "truncated", "payload"):
        run = crashed_run(tiny_cfg, monkeypatch, f"dmg-{how}")
        damage(run / "checkpoints" / "last.ckpt", how, marker)
        capfd.readouterr()
        s = train(tiny_cfg(*ARGS, f"experiment=dmg-{how}")).summary
        err = capfd.readouterr().err
        assert not marker.exists(), "unpickling the checkpoint ran code"
        assert f"unreadable checkpoint {run / 'checkpoints' / 'last.ckpt'}" in err, how
        assert (run / "checkpoints" / "last.damaged-1.ckpt").exists()
        assert s.status is Status.COMPLETED and s.resumed_from_step == 10, how
        assert abs(s.final_val_loss - ref.final_val_loss) < 1e-4
        assert [r["step"] for r in read_metrics(run)] == [r["step"] for r in ref_rows]


def test_both_checkpoints_unreadable_restarts_from_scratch(tiny_cfg, monkeypatch) -> None:
    run = crashed_run(tiny_cfg, monkeypatch, "both")
    for name in ("last.ckpt", "prev.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    s = train(tiny_cfg(*ARGS, "experiment=both")).summary
    assert s.status is Status.COMPLETED and s.resumed_from_step is None
    steps = [int(r["step"]) for r in read_metrics(run)]
    assert steps == sorted(steps) and steps[-1] == 40  # rows of the killed launch dropped


def test_metrics_rows_with_unparsable_steps_are_dropped_and_reported(
    tiny_cfg, monkeypatch, capfd
) -> None:
    run = crashed_run(tiny_cfg, monkeypatch, "rows")
    with (run / "metrics.csv").open("a") as f:
        f.write("1e2,,,,,,,,,,\nnan,,,,,,,,,,\n")
    capfd.readouterr()
    s = train(tiny_cfg(*ARGS, "experiment=rows")).summary
    assert s.status is Status.COMPLETED and s.resumed_from_step == 20
    assert (
        "dropped 2 rows whose step is not a whole number ('1e2', 'nan')" in capfd.readouterr().err
    )
    assert all(r["step"].isdigit() for r in read_metrics(run))


def test_open_metrics_keeps_rows_up_to_the_checkpoint(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.metrics_path.write_text("step,tokens\n5,1\n1e2,2\n10,3\n,4\n15,5\n")
    assert store.open_metrics(keep_until_step=10) == ["1e2", ""]
    store.close()
    assert [r["step"] for r in read_metrics(store.root)] == ["5", "10"]


def test_a_held_run_is_skipped_naming_the_holder(tiny_cfg) -> None:
    cfg = tiny_cfg("train.steps=10", "experiment=lock")
    store = RunStore(Path(cfg.runs_dir) / "lock" / "10k-S10")
    with store.lock() as holder:
        assert holder is None
        res = train(cfg)
        assert res.outcome is Outcome.LOCKED and res.skipped and res.summary is None
        assert res.holder == f"host {socket.gethostname()} pid {os.getpid()}"
        assert not store.summary_path.exists()  # nothing of the holder's was touched
    # released with its holder: the next launch trains; a stale lock file never blocks
    store.lock_path.write_text("host elsewhere pid 999999\n")
    assert train(cfg).summary.status is Status.COMPLETED


def cli(*overrides: str, data_cache: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "scaling.train", "model=10k", "train.steps=10", "model.seq_len=32",
        "train.batch_size=8", "train.eval_tokens=256", "data.max_bytes=300000",
        f"data.cache_dir={data_cache}", "logger.wandb.mode=disabled", *overrides,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_cli_skips_a_run_another_process_holds(tmp_path, data_cache) -> None:
    """The console script (fast twin: test_a_held_run_is_skipped_naming_the_holder)."""
    store = RunStore(tmp_path / "default" / "10k-S10")
    with store.lock():
        out = cli(f"runs_dir={tmp_path}", data_cache=data_cache)
    assert out.returncode == 0, out.stderr
    assert f"held by host {socket.gethostname()} pid {os.getpid()}: skipped" in out.stderr
    assert not store.summary_path.exists()


def _read_only_runs_dir(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through file modes; /sys refuses even root
        return Path("/sys/scaling-test-runs")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    return ro


FAULTS = ["corrupt summary", "runs_dir is a file", "read-only runs_dir"]
CORRUPT = '{"run": "10k-S10", "status": "comp'


def _fault(tmp_path: Path, fault: str) -> tuple[Path, Path]:
    """Make `fault` under tmp_path: (the runs_dir to give, the path the error must name)."""
    runs = tmp_path / "runs"
    if fault == "corrupt summary":
        (runs / "default" / "10k-S10").mkdir(parents=True)
        bad = runs / "default" / "10k-S10" / "summary.json"
        bad.write_text(CORRUPT)
        return runs, bad
    if fault == "runs_dir is a file":
        runs.write_text("not a folder")
        return runs, runs
    ro = _read_only_runs_dir(tmp_path)
    return ro, ro


@pytest.mark.parametrize("fault", FAULTS)
def test_run_folder_faults_name_the_path(tiny_cfg, tmp_path, fault) -> None:
    """In-process: each fault is the error the console script prints as one line (below)."""
    runs, named = _fault(tmp_path, fault)
    with pytest.raises((SummaryError, RunFolderError), match=re.escape(str(named))):
        train(tiny_cfg("train.steps=10", f"runs_dir={runs}"))
    if fault == "corrupt summary":
        assert named.read_text() == CORRUPT  # left as it was, for the user to look at


@pytest.mark.parametrize(
    "fault", [f if f == FAULTS[0] else pytest.param(f, marks=pytest.mark.slow) for f in FAULTS]
)
def test_cli_run_folder_faults_are_one_line(tmp_path, data_cache, fault) -> None:
    runs, named = _fault(tmp_path, fault)
    out = cli(f"runs_dir={runs}", data_cache=data_cache)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("scaling-train: error:")]
    assert len(lines) == 1 and str(named) in lines[0], out.stderr
    if fault == "corrupt summary":
        assert named.read_text() == CORRUPT
