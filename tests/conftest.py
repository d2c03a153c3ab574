"""Shared fixtures: the real composed config, shrunk to a tiny model and a small corpus.

Following lightning-hydra-template: compose conf/train.yaml once per test through Hydra's
compose API (so the schema, the groups and the defaults are the real ones), then point every
output at the test's tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from scaling.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
register_configs()


def compose_train(*overrides: str) -> DictConfig:
    """Compose conf/train.yaml with `overrides`, exactly as `scaling-train` would."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="test"):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared-corpus cache for the whole session (corpora are deterministic)."""
    return tmp_path_factory.mktemp("data-cache")


TINY = (
    "model=10k",
    "model.seq_len=32",
    "train.batch_size=8",
    "train.eval_tokens=512",
    "train.n_evals=5",
    "train.log_every=5",
    "data.max_bytes=300000",
    "logger.wandb.mode=disabled",
    "trainer.num_threads=1",
    "trainer.progress_every_s=0",
    "trainer.peak_flops=1e11",
)


@pytest.fixture
def tiny_cfg(tmp_path: Path, data_cache: Path) -> Callable[..., DictConfig]:
    """Factory: the real config shrunk to a ~1e4-parameter model, writing under tmp_path."""

    def make(*overrides: str) -> DictConfig:
        return compose_train(
            *TINY, f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={data_cache}", *overrides
        )

    return make
