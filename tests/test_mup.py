"""muP (Yang et al. 2022): settings, the base model is the standard one, the coordinate check,
and a real run that records its parametrisation.

The coordinate check is the paper's own test of a muP implementation (Yang et al. 2022,
section D.1): train each width a few steps at one learning rate and look at the size of
every layer type's output. Under standard parametrisation Adam's update of a hidden matrix
moves its output by ~ lr x fan_in, so activations grow with the width; under muP they stay
put.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from contract import RunSummary, read_summary
from scaling.config import ConfigError
from scaling.data import TokenBatches
from scaling.family import flops_per_token, param_counts
from scaling.model import GPT, attention_scale
from scaling.module import LitGPT
from scaling.train import plan_run, train

WIDTHS = (32, 64, 128, 256)  # x8 from the base width to the widest
BASE = WIDTHS[0]
SHAPE = ("model.n_layer=2", "model.n_head=4", "model.seq_len=32")
COORD_STEPS = 5
COORD_LR = 1e-2
# muP: every layer type's mean |activation| within this factor across the four widths
# (measured: at most x1.26, the MLP output)
FLAT_FACTOR = 1.5
# standard parametrisation: the hidden and output layers' activations at the widest width at
# least this many times those at the narrowest (measured: x5.2 (logits) to x40 (MLP output))
SP_GROWTH = 4.0


def _mup_cfg(tiny_cfg: Callable[..., DictConfig], width: int, *extra: str) -> DictConfig:
    return tiny_cfg(
        *SHAPE,
        f"model.d_model={width}",
        "model.parametrization=mup",
        f"model.base_width={BASE}",
        *extra,
    )


def _sp_cfg(tiny_cfg: Callable[..., DictConfig], width: int, *extra: str) -> DictConfig:
    return tiny_cfg(*SHAPE, f"model.d_model={width}", *extra)


def _module(cfg: DictConfig) -> tuple[LitGPT, torch.optim.Optimizer, TokenBatches]:
    """The real LightningModule, its real optimiser, and the run's real training batches."""
    plan = plan_run(cfg)
    conf = plan.conf
    torch.manual_seed(conf.train.seed)
    module = LitGPT(conf, conf.model, plan.budget, plan.lr)
    opt = module.configure_optimizers()["optimizer"]
    batches = TokenBatches(
        plan.corpus.train_tokens(), conf.train.batch_size, conf.model.seq_len, conf.train.seed
    )
    return module, opt, batches


BAD = [
    (("model.parametrization=mup",), r"model\.parametrization=mup needs model\.base_width="),
    (
        ("model.parametrization=mup", "model.base_width=64"),
        r"model\.base_width=64 must be in \[1, d_model=32\]",
    ),
    (("model.base_width=16",), r"model\.base_width=16 applies only to model\.parametrization=mup"),
    (
        ("model.parametrization=mup", "model.base_width=15"),
        r"model\.n_head=2 does not divide model\.base_width=15; set model\.base_head_dim",
    ),
]


@pytest.mark.parametrize(("overrides", "match"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_mup_settings_refused_before_the_run_folder(
    tiny_cfg: Callable[..., DictConfig], overrides: tuple[str, ...], match: str
) -> None:
    cfg = tiny_cfg("train.steps=3", *overrides)
    with pytest.raises(ConfigError, match=match) as err:
        train(cfg)
    assert "\n" not in str(err.value)
    assert not Path(cfg.runs_dir).exists()


def _train_losses(cfg: DictConfig) -> tuple[list[str], str]:
    """A real training run's train_loss column (as written) and its summary."""
    result = train(cfg)
    run = Path(cfg.runs_dir) / cfg.experiment / result.summary.run
    with (run / "metrics.csv").open() as f:
        return [r["train_loss"] for r in csv.DictReader(f)], result.summary.parametrization


def test_mup_at_the_base_width_trains_as_the_standard_model(tiny_cfg) -> None:
    """m = 1: the same init, optimiser groups and gradient clip, so the same run bit for bit
    (at a high LR, where a rounding difference would grow within a few steps)."""
    run = ("train.steps=12", "optim.lr=0.05", "optim.grad_clip=0.5")
    sp = _train_losses(tiny_cfg(*run, "experiment=sp"))
    mup = _train_losses(
        tiny_cfg(*run, "experiment=mup", "model.parametrization=mup", "model.base_width=32")
    )
    assert (sp[1], mup[1]) == ("sp", "mup")
    assert len(sp[0]) > 2 and sp[0] == mup[0]


def test_mup_scales_hidden_init_lr_and_attention_only(tiny_cfg) -> None:
    """At 8x the base width: hidden matrices at std / sqrt(8) and lr / 8, the rest as SP;
    attention 1/d_head; parameter and FLOP counts those of the standard model."""
    width, m = WIDTHS[-1], WIDTHS[-1] / BASE
    module, opt, _ = _module(_mup_cfg(tiny_cfg, width, "train.steps=3"))
    model, cfg = module.model, module.model.cfg
    lr = module.lr
    hidden = {id(p) for p in model.hidden_matrices()}
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[i].split(".", 2)[-1] for i in hidden) == sorted(
        ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"] * 2
    )
    for g in opt.param_groups:
        expect = lr / m if id(g["params"][0]) in hidden else lr
        assert g["lr"] == pytest.approx(expect)
        assert all((id(p) in hidden) == (id(g["params"][0]) in hidden) for p in g["params"])
    assert opt.param_groups[0]["lr"] == pytest.approx(lr)  # the logged LR is the peak LR
    std = {n: p.std().item() for n, p in model.named_parameters()}
    assert std["blocks.0.mlp.c_fc.weight"] == pytest.approx(0.02 / math.sqrt(m), rel=0.03)
    assert std["blocks.0.attn.c_proj.weight"] == pytest.approx(
        0.02 / math.sqrt(2 * cfg.n_layer) / math.sqrt(m), rel=0.05
    )
    assert std["wte.weight"] == pytest.approx(0.02, rel=0.03)
    assert std["lm_head.weight"] == pytest.approx(0.02, rel=0.03)
    head, base_head = width // cfg.n_head, BASE // cfg.n_head
    assert attention_scale(cfg) == pytest.approx(math.sqrt(base_head) / head)
    sp = dataclasses.replace(cfg, parametrization="sp", base_width=None)
    assert attention_scale(sp) is None
    assert param_counts(cfg) == param_counts(sp)
    assert param_counts(cfg).total == sum(p.numel() for p in model.parameters())
    assert flops_per_token(cfg) == flops_per_token(sp)
    assert GPT(sp).num_params() == model.num_params()


def _activations(module: LitGPT, opt: torch.optim.Optimizer, batches: TokenBatches) -> dict:
    """Mean |output| per layer type after COORD_STEPS steps, on the next batch."""
    model = module.model
    for k in range(COORD_STEPS):
        _, loss = model(*batches.batch(k))
        opt.zero_grad()
        loss.backward()
        opt.step()
    sums: dict[str, list[float]] = {}
    layers = [("embedding", model.wte), ("logits", model.lm_head)]
    for b in model.blocks:
        layers += [("attention", b.attn), ("mlp hidden", b.mlp.c_fc), ("mlp", b.mlp)]
    hooks = [
        mod.register_forward_hook(
            lambda _m, _i, out, kind=kind: sums.setdefault(kind, []).append(
                out.detach().abs().mean().item()
            )
        )
        for kind, mod in layers
    ]
    with torch.no_grad():
        model(*batches.batch(COORD_STEPS))
    for h in hooks:
        h.remove()
    return {kind: sum(v) / len(v) for kind, v in sums.items()}


def test_coordinate_check(tiny_cfg) -> None:
    """muP: flat across 4 widths (x8); standard: hidden and output layers grow with width."""
    extra = (
        f"optim.lr={COORD_LR}",
        "schedule=constant",
        "schedule.warmup_frac=0",
        f"train.steps={COORD_STEPS + 1}",
    )
    acts = {
        (p, w): _activations(*_module(make(tiny_cfg, w, *extra)))
        for p, make in (("sp", _sp_cfg), ("mup", _mup_cfg))
        for w in WIDTHS
    }
    for kind in acts["mup", BASE]:
        mup = [acts["mup", w][kind] for w in WIDTHS]
        sp = [acts["sp", w][kind] for w in WIDTHS]
        assert max(mup) / min(mup) < FLAT_FACTOR, (kind, mup)
        if kind != "embedding":  # embeddings learn at the same LR in both
            assert sp[-1] / sp[0] > SP_GROWTH, (kind, sp)
            assert sp[-1] > sp[1] > sp[0], (kind, sp)


def test_mup_run_records_its_parametrization(tiny_cfg) -> None:
    """A real muP training run learns and writes parametrization and base_width; a record
    from before muP reads as standard."""
    cfg = tiny_cfg("model.parametrization=mup", "model.base_width=16", "train.steps=20")
    result = train(cfg)
    run = Path(cfg.runs_dir) / cfg.experiment / result.summary.run
    s = read_summary(run / "summary.json")
    assert s is not None
    assert (s.parametrization, s.base_width, s.status.value) == ("mup", 16, "completed")
    assert s.final_val_loss is not None and s.final_val_loss < math.log(s.vocab_size)
    old = s.to_dict()
    del old["parametrization"], old["base_width"]
    back = RunSummary.from_dict(old)
    assert (back.parametrization, back.base_width) == ("sp", None)
