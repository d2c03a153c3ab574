"""The model family: shape rule, shipped configs, exact parameter and FLOP counts."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from scaling.config import ConfigError, MLPKind, ModelConfig, PosEmb
from scaling.family import (
    CONF_DIR,
    HEAD_DIMS,
    SIZES,
    config_yaml,
    flops_per_token,
    flops_per_token_for,
    model_config,
    nominal_params,
    param_counts,
    write_configs,
)
from scaling.model import GPT

VOCAB = 256


def module_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(non_embedding, total) of the real module, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = GPT(cfg)
    total = sum(p.numel() for p in model.parameters())
    embeddings = {"wte.weight", "wpe.weight"}
    if not cfg.tie_embeddings:
        embeddings.add("lm_head.weight")
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if n not in embeddings)
    assert model.num_params() == non_embedding
    return non_embedding, total


@pytest.mark.parametrize("name", list(SIZES))
def test_param_counts_match_module_for_every_size(name: str) -> None:
    cfg = model_config(name, vocab_size=VOCAB)
    counts = param_counts(cfg)
    assert (counts.non_embedding, counts.total) == module_counts(cfg)
    assert counts.with_head == counts.non_embedding + VOCAB * cfg.d_model


@pytest.mark.parametrize(
    ("pos_emb", "mlp", "tie", "bias"),
    list(itertools.product(PosEmb, MLPKind, (False, True), (False, True))),
)
def test_param_counts_match_module_for_options(pos_emb, mlp, tie, bias) -> None:
    cfg = model_config(
        "1M", vocab_size=VOCAB, pos_emb=pos_emb, mlp=mlp, tie_embeddings=tie, bias=bias
    )
    counts = param_counts(cfg)
    assert (counts.non_embedding, counts.total) == module_counts(cfg)
    assert counts.with_head == counts.non_embedding + VOCAB * cfg.d_model


def test_param_counts_with_explicit_ff_width() -> None:
    cfg = model_config("100k", vocab_size=VOCAB, d_ff=100, mlp=MLPKind.swiglu)
    counts = param_counts(cfg)
    assert (counts.non_embedding, counts.total) == module_counts(cfg)


def test_shape_rule() -> None:
    names = list(SIZES)
    n = [param_counts(model_config(k, vocab_size=VOCAB)).non_embedding for k in names]
    assert n == sorted(n)
    assert all(1.5 < b / a < 3.0 for a, b in zip(n, n[1:]))  # neighbours x2-x2.5 apart
    assert sum(1e4 <= x <= 3e5 for x in n) >= 5  # enough sizes for the CPU demo
    assert n[-1] >= 1e9 * 0.9
    for name, kw in SIZES.items():
        head_dim = kw["d_model"] // kw["n_head"]
        assert kw["d_model"] == kw["n_head"] * head_dim
        assert head_dim in (16, 32, 64) and HEAD_DIMS[0] <= head_dim <= HEAD_DIMS[1]
        assert (
            0.7
            < param_counts(model_config(name, vocab_size=VOCAB)).non_embedding
            / (nominal_params(name))
            < 1.5
        )
    assert SIZES["1M"] == {"n_layer": 4, "n_head": 9, "d_model": 144}
    # CPU sizes keep fine 16-wide heads; GPU sizes get 64-wide heads (fast fused attention).
    assert all(SIZES[k]["d_model"] // SIZES[k]["n_head"] == 16 for k in ("10k", "100k", "1M"))
    assert all(SIZES[k]["d_model"] // SIZES[k]["n_head"] == 64 for k in ("50M", "100M", "1B"))
    head_dims = [kw["d_model"] // kw["n_head"] for kw in SIZES.values()]
    assert head_dims == sorted(head_dims)


def test_shipped_yaml_matches_the_rule(tmp_path) -> None:
    assert {p.stem for p in CONF_DIR.glob("*.yaml")} == set(SIZES)
    for name in SIZES:
        assert (CONF_DIR / f"{name}.yaml").read_text() == config_yaml(name)
    written = write_configs(tmp_path)
    assert [p.name for p in written] == [f"{k}.yaml" for k in SIZES]


@pytest.mark.parametrize("name", ["10k", "1M", "1B"])
def test_yaml_merges_onto_schema(name: str) -> None:
    merged = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(CONF_DIR / f"{name}.yaml")
    )
    cfg = OmegaConf.to_object(merged)
    assert cfg == model_config(name)


def test_unknown_size_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown model size '3k'") as e:
        model_config("3k")
    assert all(name in str(e.value) for name in SIZES)


def test_n_head_must_divide_d_model() -> None:
    with pytest.raises(ConfigError, match="does not divide"):
        model_config("1M", n_head=7)


def test_missing_vocab_size() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        param_counts(model_config("1M"))


def test_flops_conventions() -> None:
    for name in SIZES:
        cfg = model_config(name, vocab_size=VOCAB)
        counts, flops = param_counts(cfg), flops_per_token(cfg)
        assert flops["kaplan"] == 6 * counts.non_embedding
        assert flops["6n"] == 6 * counts.with_head
        assert flops_per_token_for(cfg, "chinchilla") == flops["chinchilla"]
    long = model_config("1M", vocab_size=VOCAB, seq_len=2048)
    assert flops_per_token(long)["chinchilla"] > flops_per_token(long)["6n"]
    with pytest.raises(ValueError, match="valid"):
        flops_per_token_for(long, "palm")


@pytest.mark.parametrize("mlp", list(MLPKind))
def test_chinchilla_flops_by_hand(mlp: MLPKind) -> None:
    cfg = ModelConfig(
        name="x", n_layer=2, n_head=4, d_model=64, d_ff=200, seq_len=32, vocab_size=100, mlp=mlp
    )
    d, ff, T, V, h, L = 64, 200, 32, 100, 4, 2
    n_mlp = 3 if mlp == MLPKind.swiglu else 2
    layer = 6 * d * d + 2 * T * d + 3 * h * T + 2 * T * d + 2 * d * d + 2 * n_mlp * d * ff
    forward = 2 * V * d + L * layer + 2 * d * V
    assert forward == 12800 + 2 * (24576 + 4096 + 384 + 4096 + 8192 + n_mlp * 25600) + 12800
    assert flops_per_token(cfg)["chinchilla"] == 3 * forward
