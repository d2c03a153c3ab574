"""Budget arithmetic and LR schedules (pure functions, no training)."""

from __future__ import annotations

import math

import pytest

from scaling.budget import fmt_num, parse_multiple, resolve
from scaling.config import ConfigError, FlopConvention, ScheduleConfig, ScheduleKind, TrainConfig
from scaling.module import eval_steps, lr_multiplier

FPT = {"kaplan": 6.0e5, "6n": 7.0e5, "chinchilla": 9.0e5}
N = 100_000
TPS = 32 * 128  # tokens per step


def test_chinchilla_multiple_is_20_tokens_per_param() -> None:
    b = resolve(TrainConfig(tokens="1xC"), FPT, N, TPS)
    assert b.label == "1xC"
    assert abs(b.tokens - 20 * N) <= TPS / 2
    assert b.steps == round(20 * N / TPS)
    assert resolve(TrainConfig(tokens="0.5xC"), FPT, N, TPS).label == "0.5xC"
    assert parse_multiple("2.5xC") == 2.5 and parse_multiple("2e7") is None


@pytest.mark.parametrize("conv", ["kaplan", "6n", "chinchilla"])
def test_flops_budget_within_one_percent(conv: str) -> None:
    c = 3e12
    b = resolve(TrainConfig(flops=c, flops_convention=FlopConvention(conv)), FPT, N, TPS)
    assert b.steps >= 50
    assert abs(b.flops[conv] - c) / c < 0.01
    assert b.flops == {k: b.tokens * v for k, v in FPT.items()}
    assert b.label == "C3e12"


@pytest.mark.parametrize("conv", ["kaplan", "6n", "chinchilla"])
def test_flop_convention_override_by_the_name_the_readme_uses(conv: str) -> None:
    from conftest import compose_train
    from omegaconf import OmegaConf

    cfg = compose_train("train.flops=1e12", f"train.flops_convention={conv}")
    assert OmegaConf.to_object(cfg.train).flops_convention is FlopConvention(conv)


def test_unknown_flop_convention_lists_the_valid_ones() -> None:
    from conftest import compose_train
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        compose_train("train.flops_convention=n6")
    assert "kaplan, 6n, chinchilla" in str(err.value.__cause__)


def test_tokens_and_steps_budgets() -> None:
    assert resolve(TrainConfig(tokens=2e7), FPT, N, TPS).label == "D2e7"
    b = resolve(TrainConfig(steps=500), FPT, N, TPS)
    assert (b.steps, b.tokens, b.label) == (500, 500 * TPS, "S500")


def test_budget_errors_name_the_value() -> None:
    with pytest.raises(ConfigError, match="exactly one budget"):
        resolve(TrainConfig(), FPT, N, TPS)
    with pytest.raises(ConfigError, match="exactly one budget"):
        TrainConfig(tokens=1e6, steps=10)
    with pytest.raises(ConfigError, match="less than one batch"):
        resolve(TrainConfig(tokens=100), FPT, N, TPS)
    with pytest.raises(ConfigError, match=r"train.tokens='lots' is not a number"):
        resolve(TrainConfig(tokens="lots"), FPT, N, TPS)
    with pytest.raises(ConfigError, match="positive"):
        resolve(TrainConfig(flops=-1.0), FPT, N, TPS)


def test_fmt_num() -> None:
    assert [fmt_num(x) for x in (2e7, 2.5e7, 1e15, 500, 1.23e-3)] == [
        "2e7",
        "2.5e7",
        "1e15",
        "500",
        "1.23e-3",
    ]


def test_cosine_schedule_warms_up_and_ends_at_final_fraction() -> None:
    s = ScheduleConfig(kind=ScheduleKind.cosine, warmup_frac=0.1, final_lr_frac=0.1)
    m = [lr_multiplier(i, 1000, s) for i in range(1000)]
    assert m[0] == pytest.approx(0.01) and m[99] == pytest.approx(1.0)
    assert max(m) == pytest.approx(1.0)
    assert m[-1] == pytest.approx(0.1, abs=1e-4)
    assert all(a >= b for a, b in zip(m[100:], m[101:]))


def test_wsd_branches_share_the_stable_run() -> None:
    long = ScheduleConfig(kind=ScheduleKind.wsd, cooldown_frac=0.2, wsd_total_steps=1000)
    # a branch of 500 steps decays over its last 100 steps; before that it equals the long run
    branch = [lr_multiplier(i, 500, long) for i in range(500)]
    stable = [lr_multiplier(i, 1000, long) for i in range(400)]
    assert branch[:400] == stable
    assert branch[399] == 1.0 and branch[-1] < 0.15
    assert all(a >= b for a, b in zip(branch[400:], branch[401:]))
    const = ScheduleConfig(kind=ScheduleKind.constant, warmup_frac=0.0)
    assert {lr_multiplier(i, 100, const) for i in range(100)} == {1.0}


def test_eval_steps_are_log_spaced_and_end_at_last_step() -> None:
    steps = eval_steps(10_000, 30)
    assert steps[-1] == 10_000 and steps[0] == 1
    ratios = [b / a for a, b in zip(steps[10:], steps[11:])]
    assert max(ratios) / min(ratios) < 1.2  # even in log space once past the integer regime
    assert len(steps) <= 31 and not math.isnan(sum(steps))
