"""Real Lightning training of a ~1e4-parameter model on CPU: records, resume, divergence, errors."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from contract import METRIC_COLUMNS, Status
from scaling.config import ConfigError
from scaling.data import DataError
from scaling.family import flops_per_token, param_counts
from scaling.module import RunRecorder
from scaling.store import config_differences, config_hash
from scaling.train import Outcome, config_changes, decide, new_summary, plan_run, train

ROOT = Path(__file__).resolve().parents[1]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_tiny_model_trains_and_records_everything(tiny_cfg) -> None:
    cfg = tiny_cfg("train.steps=60", "experiment=unit")
    s = train(cfg).summary
    run = Path(cfg.runs_dir) / "unit" / "10k-S60"
    assert s.status is Status.COMPLETED and run.is_dir()
    stored = json.loads((run / "summary.json").read_text())
    assert stored["status"] == "completed" and stored["run"] == "10k-S60"
    # exact accounting, recorded per run
    plan = plan_run(cfg)
    assert stored["N"] == param_counts(plan.conf.model).non_embedding
    assert stored["D"] == 60 * 8 * 32
    fpt = flops_per_token(plan.conf.model)
    assert stored["C"] == {k: stored["D"] * v for k, v in fpt.items()}
    assert stored["corpus_hash"] and stored["epochs"] > 0
    rows = read_metrics(run)
    assert list(rows[0].keys()) == list(METRIC_COLUMNS)
    vals = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    assert vals[-1][0] == 60 and len(vals) >= 4
    # loss starts near ln(vocab) and falls
    assert abs(vals[0][1] - math.log(256)) < 0.6
    assert vals[-1][1] < vals[0][1] - 1.0
    assert stored["final_val_loss"] == pytest.approx(vals[-1][1])
    assert float(rows[-1]["flops_chinchilla"]) == pytest.approx(stored["C"]["chinchilla"])
    assert all(r["lr"] for r in rows if r["train_loss"])
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "last.ckpt").exists()
    # a completed run relaunched with the same config is not trained again
    again = train(tiny_cfg("train.steps=60", "experiment=unit"))
    assert again.skipped and again.outcome is Outcome.ENDED
    assert read_metrics(run) == rows


def test_resume_after_crash_matches_uninterrupted_run(tiny_cfg, monkeypatch) -> None:
    args = ("train.steps=40", "train.checkpoint_every=10", "train.log_every=5")
    ref = train(tiny_cfg(*args, "experiment=ref")).summary

    real = RunRecorder.on_train_batch_end

    def crash_at_25(self, trainer, *a, **k):  # noqa: ANN001
        real(self, trainer, *a, **k)
        if trainer.global_step == 25:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(RunRecorder, "on_train_batch_end", crash_at_25)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cfg(*args, "experiment=crash"))
    run = Path(tiny_cfg().runs_dir) / "crash" / "10k-S40"
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    monkeypatch.setattr(RunRecorder, "on_train_batch_end", real)

    resumed = train(tiny_cfg(*args, "experiment=crash")).summary
    assert resumed.status is Status.COMPLETED and resumed.resumed_from_step == 20
    assert abs(resumed.final_val_loss - ref.final_val_loss) < 1e-4
    ref_rows = read_metrics(Path(tiny_cfg().runs_dir) / "ref" / "10k-S40")
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows]
    for a, b in zip(rows, ref_rows):
        for k in ("train_loss", "val_loss"):
            assert (a[k] == b[k] == "") or abs(float(a[k]) - float(b[k])) < 1e-4


DIVERGING = ("train.steps=40", "optim.lr=50", "optim.grad_clip=0", "schedule.warmup_frac=0")


def test_divergence_is_recorded_and_final(tiny_cfg) -> None:
    cfg = tiny_cfg(*DIVERGING, "experiment=div")
    s = train(cfg).summary
    assert s.status is Status.DIVERGED
    assert s.diverged_step is not None and 0 < s.diverged_step <= 40
    run = Path(cfg.runs_dir) / "div" / "10k-S40"
    stored = json.loads((run / "summary.json").read_text())
    assert stored["status"] == "diverged" and stored["diverged_step"] == s.diverged_step
    rows = read_metrics(run)
    steps = [int(r["step"]) for r in rows]  # nothing logged is lost: the bad row is the last
    assert steps and steps[-1] - 5 < s.diverged_step <= steps[-1]  # train.log_every=5
    assert train(cfg).outcome is Outcome.ENDED
    # step-exact: logging every step finds the same first bad step (same seed, CPU)
    every = train(tiny_cfg(*DIVERGING, "experiment=div1", "train.log_every=1")).summary
    assert every.diverged_step == s.diverged_step


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("train.steps=10", "train.tokens=1e6"), "exactly one budget"),
        (("train.tokens=100",), "less than one batch"),
        (("train.steps=10", "model.n_head=3"), "n_head=3 does not divide"),
        (("train.steps=10", "data.name=wikipedia"), "wikipedia"),
        (
            ("train.steps=10", "data.name=text", "data.path=/no/such/corpus.txt"),
            "/no/such/corpus.txt",
        ),
        (("train.steps=10", "train.batch_size=0"), "batch_size=0"),
    ],
)
def test_bad_config_fails_before_training(tiny_cfg, overrides, match) -> None:
    cfg = tiny_cfg(*overrides, "experiment=bad")
    with pytest.raises((ConfigError, DataError), match=match):
        train(cfg)
    assert not (Path(cfg.runs_dir) / "bad").exists()


def test_typo_and_unknown_size_fail_at_composition(tiny_cfg) -> None:
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import ConfigKeyError, ValidationError

    with pytest.raises((ConfigCompositionException, ConfigKeyError), match="n_layr"):
        tiny_cfg("model.n_layr=4")
    with pytest.raises((ConfigCompositionException, ValidationError)):
        tiny_cfg("model.n_layer=four")
    with pytest.raises(MissingConfigException, match="1T"):
        tiny_cfg("model=1T")


def test_changed_config_for_existing_run_is_refused(tiny_cfg) -> None:
    train(tiny_cfg("train.steps=10", "experiment=chg"))
    with pytest.raises(ConfigError, match="different config"):
        train(tiny_cfg("train.steps=10", "experiment=chg", "optim.lr=1e-3"))


def test_failed_run_relaunched_with_another_config_is_moved_aside(tiny_cfg) -> None:
    cfg = tiny_cfg("train.steps=10", "experiment=fix")
    root = Path(cfg.runs_dir) / "fix" / "10k-S10"
    root.mkdir(parents=True)
    failed = new_summary(plan_run(cfg), cfg, None).to_dict()
    failed.update(status="failed", config_hash="sha256:other",
                  error="OutOfMemoryError: CUDA out of memory")  # fmt: skip
    (root / "summary.json").write_text(json.dumps(failed))
    assert train(cfg).summary.status is Status.COMPLETED
    kept = Path(cfg.runs_dir) / "fix" / ".failed" / "10k-S10-1" / "summary.json"
    assert json.loads(kept.read_text()) == failed  # nothing already written is lost
    # a completed run with another config is still refused
    with pytest.raises(ConfigError, match="different config"):
        train(tiny_cfg("train.steps=10", "experiment=fix", "optim.lr=1e-3"))


def test_display_settings_do_not_make_a_different_run(tiny_cfg) -> None:
    train(tiny_cfg("train.steps=10", "experiment=disp"))
    again = train(
        tiny_cfg("train.steps=10", "experiment=disp", "trainer.progress_every_s=5",
                 "trainer.peak_flops=2e11", "trainer.num_threads=2")
    )  # fmt: skip
    assert again.outcome is Outcome.ENDED


def _without(cfg, *dotted: str):
    """`cfg` as a config written before the settings `dotted` existed (they are absent)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in dotted:
        *parents, leaf = key.split(".")
        node = c
        for part in parents:
            node = node[part]
        del node[leaf]
    return OmegaConf.create(c)


def test_a_setting_added_with_its_default_keeps_the_hash(tiny_cfg) -> None:
    """The migration rule: the hash covers the values that differ from the schema defaults."""
    cfg = tiny_cfg("train.steps=10")
    h = config_hash(cfg)
    assert config_hash(_without(cfg, "model.dropout", "optim.grad_clip", "train.tasks_path")) == h
    assert config_hash(tiny_cfg("train.steps=10", "model.dropout=0.1")) != h
    planned = tiny_cfg("train.steps=10", "trainer.num_threads=2")
    planned.sweep = {"name": "isoflop", "plan": True}  # how a sweep planned it: not the run
    assert config_hash(planned) == h
    # a setting left out counts as its default, so a non-default one cannot hide that way
    assert config_hash(_without(tiny_cfg("train.steps=10", "model.dropout=0.1"))) != h


def _stored_under_old_rule(cfg, status: str = "completed", **changed):
    """A run folder as an older version wrote it: an old-rule hash and a config.yaml without
    model.dropout (a setting added since, at its default); `changed` edits stored values."""
    plan = plan_run(cfg)
    plan.store.root.mkdir(parents=True)
    old = _without(cfg, "model.dropout")
    for key, value in changed.items():
        OmegaConf.update(old, key.replace("__", "."), value)
    plan.store.config_path.write_text(OmegaConf.to_yaml(old))
    s = new_summary(plan, cfg, None)
    s.status, s.config_hash = Status(status), "sha256:old-rule-hash"
    plan.store.write_summary(s)
    return plan


def test_run_stored_before_a_setting_existed_is_the_same_run(tiny_cfg, capsys) -> None:
    cfg = tiny_cfg("train.steps=10", "experiment=old")
    plan = _stored_under_old_rule(cfg)
    assert config_changes(plan, "sha256:old-rule-hash") == []
    got = decide(plan)
    assert got.status is Status.COMPLETED  # skipped, not retrained or refused
    assert "the same run" in capsys.readouterr().err


def test_changed_setting_against_an_old_store_is_refused(tiny_cfg) -> None:
    cfg = tiny_cfg("train.steps=10", "experiment=old")
    plan = _stored_under_old_rule(cfg, optim__lr=1e-3)
    assert config_differences(plan.store.config_path, cfg) == ["optim.lr: 0.001 -> 0.003"]
    with pytest.raises(ConfigError, match=r"different config \(optim.lr: 0.001 -> 0.003\)"):
        decide(plan)
    # a setting the old store lacks, set here to a non-default value, is a difference too
    cfg2 = tiny_cfg("train.steps=10", "experiment=old2", "model.dropout=0.1")
    plan2 = _stored_under_old_rule(cfg2)
    assert config_changes(plan2, "sha256:old-rule-hash") == ["model.dropout: (absent) -> 0.1"]


def test_precision_typo_fails_at_composition(tiny_cfg) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        tiny_cfg("trainer.precision=bf17")
    assert "bf16-mixed" in str(err.value.__cause__)


def test_wandb_offline_run_is_written_and_readable(tiny_cfg, tmp_path, monkeypatch) -> None:
    from analysis.wandb_offline import read_offline_run

    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = tiny_cfg("train.steps=20", "experiment=wb", "logger.wandb.mode=offline")
    s = train(cfg).summary
    run = Path(cfg.runs_dir) / "wb" / "10k-S20"
    files = list(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    rec = read_offline_run(files[0])
    for _ in range(50):  # the W&B service may still be flushing the file after finish()
        if rec["exit_code"] is not None and "val/loss" in rec["history"]:
            break
        time.sleep(0.2)
        rec = read_offline_run(files[0])
    hist = rec["history"]
    assert {"train/loss", "val/loss", "tokens", "flops", "lr"} <= set(hist.columns)
    assert hist["tokens"].dropna().max() == s.D
    last_val = hist["val/loss"].dropna().iloc[-1]
    assert last_val == pytest.approx(s.final_val_loss)
    assert rec["summary"]["final_val_loss"] == pytest.approx(s.final_val_loss)
    assert rec["config"]["experiment"] == "wb"
    # grouped so the dashboard shows an experiment (a sweep) at a glance
    assert (rec["group"], rec["job_type"], rec["name"]) == ("wb", "train", "10k-S20")
    assert {"size:10k", "budget:S20"} <= set(rec["tags"])
    # W&B is a complete view: the offline files alone give the run store's table and curves
    assert_wandb_view_is_complete(run.parent, tmp_path / "offline", 1)


def _logged_in_without_network(monkeypatch) -> None:
    """A W&B login whose host refuses connections (a cluster node, a train)."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: refused


def test_auto_mode_with_login_but_no_network_trains_offline(tiny_cfg, monkeypatch) -> None:
    _logged_in_without_network(monkeypatch)
    cfg = tiny_cfg("train.steps=10", "experiment=wbauto", "logger.wandb.mode=auto")
    assert train(cfg).summary.status is Status.COMPLETED
    run = Path(cfg.runs_dir) / "wbauto" / "10k-S10"
    assert len(list(run.glob("wandb/offline-run-*/run-*.wandb"))) == 1


@pytest.mark.slow
def test_failed_online_init_falls_back_offline_or_is_recorded(tiny_cfg, monkeypatch) -> None:
    """auto: a login and a host that passed the probe but an init that fails -> offline run.
    online (asked for explicitly): the run is recorded as failed, not left 'running'."""
    import contract as contract

    _logged_in_without_network(monkeypatch)
    monkeypatch.setattr(contract, "wandb_reachable", lambda timeout=2.0: True)
    cfg = tiny_cfg("train.steps=10", "experiment=wbfall", "logger.wandb.mode=auto")
    assert train(cfg).summary.status is Status.COMPLETED
    run = Path(cfg.runs_dir) / "wbfall" / "10k-S10"
    assert len(list(run.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    cfg = tiny_cfg("train.steps=10", "experiment=wbon", "logger.wandb.mode=online")
    with pytest.raises(Exception, match="127.0.0.1:9"):
        train(cfg)
    summary = json.loads((Path(cfg.runs_dir) / "wbon" / "10k-S10" / "summary.json").read_text())
    assert summary["status"] == "failed" and "127.0.0.1:9" in summary["error"]


@pytest.mark.slow
def test_cli_single_run(tmp_path, data_cache) -> None:
    """The console script, as a user runs it (a real Hydra launch, W&B offline). Fast twins:
    the in-process runs above, test_config_checks' CLI refusals, --help in test_architecture."""
    cmd = [
        sys.executable,
        "-m",
        "scaling.train",
        "model=10k",
        "train.steps=10",
        "model.seq_len=32",
        "train.batch_size=8",
        "train.eval_tokens=256",
        "train.n_evals=2",
        "trainer.num_threads=1",
        "data.max_bytes=300000",
        f"data.cache_dir={data_cache}",
        f"runs_dir={tmp_path}",
        "logger.wandb.mode=offline",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "anonymous" not in out.stderr  # W&B's warning on every run (WandbLogger's default)
    assert (
        json.loads((tmp_path / "default" / "10k-S10" / "summary.json").read_text())["status"]
        == "completed"
    )
    bad = subprocess.run(
        [
            *cmd[:3],
            "train.steps=10",
            "train.tokens=5e6",
            f"runs_dir={tmp_path}",
            "logger.wandb.mode=disabled",
            f"data.cache_dir={data_cache}",
            "data.max_bytes=300000",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert bad.returncode != 0 and "exactly one budget" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_peak_lr_per_size_table_and_rule(tiny_cfg) -> None:
    from scaling.train import peak_lr

    conf = plan_run(tiny_cfg("train.steps=10", "++optim.lr_table={10k: 0.01, 1M: 0.001}")).conf
    assert peak_lr(conf, 12_768) == 0.01
    conf = plan_run(
        tiny_cfg(
            "train.steps=10",
            "optim.lr=1e-3",
            "optim.lr_rule_exponent=0.5",
            "optim.lr_rule_ref_params=1e6",
        )
    ).conf
    assert peak_lr(conf, 10_000) == pytest.approx(1e-2)
    assert peak_lr(plan_run(tiny_cfg("train.steps=10", "optim.lr=2e-3")).conf, 10_000) == 2e-3


def assert_wandb_view_is_complete(store: Path, offline: Path, n_runs: int) -> None:
    """Collecting the offline .wandb files of `store`'s runs (copied to `offline`) gives the run
    store's own runs and curves tables."""
    import shutil

    from pandas.testing import assert_frame_equal

    from analysis.collect import collect

    for d in store.glob("*/wandb/offline-run-*"):
        shutil.copytree(d, offline / d.name)
    cols = ["run", "N", "D", "C", "C_kaplan", "C_6n", "loss", "status"]
    a = collect(store).runs.sort_values("run")[cols].reset_index(drop=True)
    b = collect(offline).runs.sort_values("run")[cols].reset_index(drop=True)
    assert len(a) == n_runs
    assert_frame_equal(a, b, check_dtype=False)
    keys = ["run", "step", "tokens", "C", "C_kaplan", "loss", "train_loss"]
    ca, cb = (collect(p).curves.sort_values(["run", "step"])[keys] for p in (store, offline))
    assert len(ca) >= 4 * n_runs  # the learning curves too, through contract.WANDB_KEYS
    assert_frame_equal(ca.reset_index(drop=True), cb.reset_index(drop=True))


@pytest.mark.slow
def test_wandb_offline_files_alone_give_the_run_store_table(
    tiny_cfg, tmp_path, monkeypatch
) -> None:
    """W&B is a complete view, for two runs of a sweep-like experiment (the fast suite checks
    one run in test_wandb_offline_run_is_written_and_readable)."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for size in ("10k", "20k"):
        train(
            tiny_cfg(
                f"model={size}", "train.steps=15", "experiment=view", "logger.wandb.mode=offline"
            )
        )
    assert_wandb_view_is_complete(Path(tiny_cfg().runs_dir) / "view", tmp_path / "offline", 2)
