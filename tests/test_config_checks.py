"""Every bad setting is refused with one line before the run folder exists (issue 17, 6 and 7).

Each case trains for real through `scaling.train.train` (which plans with `plan_run`, as the
sweep planner does) and checks that nothing at all was written under runs_dir, so the corrected
relaunch is never refused as "a different config".
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY, compose_train
from omegaconf import DictConfig, OmegaConf

from scaling.config import ConfigError
from scaling.data import DataError
from scaling.family import SIZES
from scaling.sweep.plan import plan_sweep
from scaling.sweep.spec import parse_spec
from scaling.train import plan_run, train

# (override(s), a regex the one-line error must match)
BAD: list[tuple[tuple[str, ...], str]] = [
    (("train.seed=-1",), r"train\.seed=-1 must be in \[0, 4294967295\]"),
    (("train.seed=4294967296",), r"train\.seed=4294967296"),
    (("train.log_every=0",), r"train\.log_every=0 must be >= 1"),
    (("train.checkpoint_every=-5",), r"train\.checkpoint_every=-5 must be >= 0"),
    (("train.divergence_factor=0",), r"train\.divergence_factor=0\.0 must be > 0"),
    (("train.divergence_factor=-1",), r"train\.divergence_factor=-1\.0 must be > 0"),
    (("train.divergence_factor=nan",), r"train\.divergence_factor=nan must be > 0"),
    (("train.checkpoint_steps=[0]",), r"train\.checkpoint_steps=\[0\]"),
    (("optim.betas=[2,3]",), r"optim\.betas=\[2\.0, 3\.0\] must each be in \[0, 1\)"),
    (("optim.betas=[0.9]",), r"optim\.betas=\[0\.9\] must have two values"),
    (("optim.eps=-1",), r"optim\.eps=-1\.0 must be a finite number > 0"),
    (("optim.eps=inf",), r"optim\.eps=inf must be a finite number > 0"),
    (("optim.lr=inf",), r"optim\.lr=inf must be a finite number > 0"),
    (("optim.lr=nan",), r"optim\.lr=nan must be a finite number > 0"),
    (("optim.weight_decay=-0.1",), r"optim\.weight_decay=-0\.1 must be a finite number >= 0"),
    (("optim.grad_clip=-1",), r"optim\.grad_clip=-1\.0 must be a finite number >= 0"),
    (("optim.lr_rule_ref_params=0",), r"optim\.lr_rule_ref_params=0\.0"),
    (("++optim.lr_table={10k: inf}",), r"optim\.lr_table\[10k\]=inf"),
    (("optim.lr_rule_exponent=nan",), r"optim\.lr_rule_exponent=nan must be finite"),
    # a peak LR that no single field shows is bad: checked after the rule is applied
    (("optim.lr_rule_exponent=1000",), r"peak learning rate of model 10k .* is inf: "),
    (("optim.lr_rule_exponent=-1000",), r"peak learning rate of model 10k .* is 0\.0: "),
    (("trainer.accelerator=tpu",), r"trainer\.accelerator='tpu' is not supported; valid: "),
    (("trainer.strategy=deepspeed",), r"trainer\.strategy='deepspeed' is not supported; valid: "),
    (("trainer.devices=0",), r"trainer\.devices=0 must be >= 1"),
    (("trainer.num_threads=0",), r"trainer\.num_threads=0 must be >= 1"),
    (("schedule.warmup_max=-1",), r"schedule\.warmup_max=-1 must be >= 0"),
    (
        ("train.steps=null", "train.tokens=1e30"),
        r"train\.tokens=1e\+30 gives .* optimiser steps; at most 1e\+12",
    ),
    (("train.steps=null", "train.flops=1e40"), r"train\.flops=1e\+40 gives"),
    (("train.batch_size=${train.nope}",), r"^Interpolation key 'train\.nope' not found$"),
    # runs stay inside runs_dir
    (("run_name=/tmp/escaped",), r"run_name='/tmp/escaped' .* a plain folder name"),
    (("run_name=../escaped",), r"run_name='\.\./escaped'"),
    (("experiment=../..",), r"experiment='\.\./\.\.'"),
    (("experiment=.hydra",), r"experiment='\.hydra'"),
    (("model.name=../10k",), r"model\.name='\.\./10k'"),
    # +key typos (issue 17 item 7): not in the schema, with the nearest valid key
    (
        ("+optim.weight_decy=0.5",),
        r"optim\.weight_decy is not a setting; did you mean optim\.weight_decay\?",
    ),
    (("+train.sede=3",), r"train\.sede is not a setting; did you mean train\.seed\?"),
    (("+model.trainer.devices=2",), r"model\.trainer is not a setting"),
    (("+batch_size=4",), r"batch_size is not a setting; did you mean train\.batch_size\?"),
    (("+optim.zzz=1",), r"optim\.zzz is not a setting; valid: optim\.lr, optim\.lr_table, "),
]


def _no_run_store(cfg: DictConfig) -> None:
    runs = Path(cfg.runs_dir)
    assert not runs.exists(), sorted(str(p) for p in runs.rglob("*"))


@pytest.mark.parametrize(("overrides", "match"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_setting_refused_before_the_run_folder(
    tiny_cfg: Callable[..., DictConfig], overrides: tuple[str, ...], match: str
) -> None:
    cfg = tiny_cfg("train.steps=3", *overrides)
    with pytest.raises(ConfigError, match=match) as err:
        train(cfg)
    assert "\n" not in str(err.value)
    _no_run_store(cfg)


def _small_jsonl(tmp_path: Path, n_docs: int) -> Path:
    path = tmp_path / "small.jsonl"
    docs = (f'{{"text": "the quick brown fox jumps over the lazy dog {i}"}}' for i in range(n_docs))
    path.write_text("\n".join(docs) + "\n")
    return path


# (documents, data.val_fraction, regex): the validation split is a hash-chosen share of documents
SMALL_CORPORA = [
    (
        10,
        0.5,
        r"training split of the text corpus \(1 files: .*small\.jsonl\) has 230 tokens = 7 "
        r"windows of seq_len\+1=33; one batch of train\.batch_size=8 needs 8 windows \(257 "
        r"tokens\); the largest batch that fits: train\.batch_size=7\.",
    ),
    (
        200,
        0.02,
        r"validation split of the text corpus \(1 files: .*small\.jsonl\) has 234 tokens = 7 "
        r"windows of seq_len\+1=33; train\.eval_tokens=512 needs 16 \(at most "
        r"train\.eval_tokens=224 fits\)",
    ),
]


@pytest.mark.parametrize(("n_docs", "val_fraction", "match"), SMALL_CORPORA, ids=["train", "val"])
def test_corpus_too_small_refused_before_the_run_folder(
    tiny_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    n_docs: int,
    val_fraction: float,
    match: str,
) -> None:
    path = _small_jsonl(tmp_path, n_docs)
    cfg = tiny_cfg(
        "train.steps=3", "data=text", f"data.path={path}", f"data.val_fraction={val_fraction}"
    )
    with pytest.raises(DataError, match=match):
        train(cfg)
    _no_run_store(cfg)


def test_corrected_relaunch_trains(tiny_cfg: Callable[..., DictConfig]) -> None:
    """A refused run leaves nothing behind, so the corrected command simply runs."""
    with pytest.raises(ConfigError):
        train(tiny_cfg("train.steps=3", "train.seed=-1"))
    with pytest.raises(ConfigError):
        train(tiny_cfg("train.steps=3", "+optim.weight_decy=0.5"))
    result = train(tiny_cfg("train.steps=3", "train.seed=1"))
    assert result.summary is not None and result.summary.status == "completed"


def test_checkpoint_every_zero_warns(
    tiny_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        plan_run(tiny_cfg("train.steps=3", "train.checkpoint_every=0"))
    lines = [r.getMessage() for r in caplog.records if "checkpoint_every" in r.getMessage()]
    assert lines == [
        "train.checkpoint_every=0 saves no checkpoint: an interrupted run cannot "
        "resume and restarts from step 0"
    ]


def test_valid_settings_still_plan(tiny_cfg: Callable[..., DictConfig]) -> None:
    """The edges of every range are accepted (and dict-typed nodes take any key)."""
    plan = plan_run(
        tiny_cfg(
            "train.steps=3",
            "train.seed=0",
            "optim.betas=[0,0.999]",
            "optim.weight_decay=0",
            "optim.grad_clip=0",
            "train.divergence_factor=inf",
            "trainer.accelerator=auto",
            "train.flops_convention=6n",
            "++optim.lr_table={10k: 0.01, 1M: 0.001}",
            "run_name=my-run_1.5",
        )
    )
    assert plan.run_name == "my-run_1.5" and plan.lr == 0.01


def test_sweep_refuses_bad_settings_at_plan_time(data_cache: Path, tmp_path: Path) -> None:
    """The sweep planner plans every run with plan_run, so nothing of a bad sweep launches."""
    ov = (
        "+sweep=demo",
        *TINY,
        "sweep.sizes=[10k]",
        f"runs_dir={tmp_path / 'runs'}",
        f"data.cache_dir={data_cache}",
        "train.eval_tokens=512",
        "+optim.weight_decy=0.5",
    )
    base = compose_train(*ov)
    with pytest.raises(ConfigError, match=r"did you mean optim\.weight_decay\?"):
        plan_sweep(
            parse_spec(base.sweep),
            lambda extra: compose_train(*ov, *extra),
            list(SIZES),
            OmegaConf.create({}),
            base,
        )
    assert not (tmp_path / "runs").exists()


def _cli(tmp_path: Path, data_cache: Path, *overrides: str) -> subprocess.CompletedProcess:
    args = [*TINY, f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={data_cache}", *overrides]
    return subprocess.run(
        [sys.executable, "-m", "scaling.train", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_refusals_leave_nothing(tmp_path: Path, data_cache: Path) -> None:
    """The real command: one error line, and no .hydra/ folder (or anything else) left behind."""
    typo = _cli(tmp_path, data_cache, "train.steps=3", "+optim.weight_decy=0.5")
    assert typo.returncode != 0
    assert typo.stderr.strip().splitlines()[-1] == (
        "scaling-train: error: optim.weight_decy is not a setting; did you mean optim.weight_decay?"
    )
    bad = _cli(tmp_path, data_cache, "train.steps=3", "train.log_every=0")
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1] == (
        "scaling-train: error: train.log_every=0 must be >= 1"
    )
    assert "Traceback" not in typo.stderr + bad.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_missing_init_from_refused_before_the_run_folder(
    tiny_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = tiny_cfg("train.steps=3", f"train.init_from={tmp_path / 'nowhere.ckpt'}")
    with pytest.raises(ConfigError, match=r"train\.init_from=.*nowhere\.ckpt does not exist"):
        train(cfg)
    _no_run_store(cfg)
