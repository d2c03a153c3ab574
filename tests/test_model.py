"""The GPT: parameter counts, causality, initial loss and that it learns."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scaling.config import MLPKind, ModelConfig, PosEmb
from scaling.family import param_counts
from scaling.model import GPT, apply_rope

torch.set_num_threads(1)

OPTIONS = list(
    itertools.product(PosEmb, MLPKind, (False, True), (False, True))
)  # pos_emb x mlp x tie_embeddings x bias


def tiny(**overrides: object) -> ModelConfig:
    """A two-layer model small enough for a unit test."""
    kw = dict(name="tiny", n_layer=2, n_head=2, d_model=32, seq_len=16, vocab_size=61)
    return ModelConfig(**{**kw, **overrides})


@pytest.mark.parametrize(("pos_emb", "mlp", "tie", "bias"), OPTIONS)
def test_num_params_matches_definition(pos_emb, mlp, tie, bias) -> None:
    cfg = tiny(pos_emb=pos_emb, mlp=mlp, tie_embeddings=tie, bias=bias)
    model = GPT(cfg)
    total = sum(p.numel() for p in model.parameters())
    embeddings = {"wte.weight", "wpe.weight"} | ({"lm_head.weight"} if not tie else set())
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if n not in embeddings)
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == non_embedding
    assert param_counts(cfg).total == total
    assert param_counts(cfg).non_embedding == non_embedding
    assert param_counts(cfg).with_head == non_embedding + cfg.vocab_size * cfg.d_model


def test_rope_tables_are_not_parameters_or_state() -> None:
    model = GPT(tiny(pos_emb=PosEmb.rope))
    assert model.wpe is None
    assert not any("cos" in n or "sin" in n for n, _ in model.named_parameters())
    assert not any(k.endswith((".cos", ".sin")) for k in model.state_dict())


def test_missing_vocab_size_is_named() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        GPT(tiny(vocab_size=None))


def test_forward_shapes_and_too_long_input() -> None:
    cfg = tiny()
    model = GPT(cfg)
    idx = torch.randint(cfg.vocab_size, (3, 10))
    logits, loss = model(idx)
    assert logits.shape == (3, 10, cfg.vocab_size) and loss is None
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(1, cfg.seq_len + 1, dtype=torch.long))


@pytest.mark.parametrize("pos_emb", list(PosEmb))
def test_causal(pos_emb: PosEmb) -> None:
    torch.manual_seed(0)
    cfg = tiny(pos_emb=pos_emb, mlp=MLPKind.swiglu)
    model = GPT(cfg).eval()
    idx = torch.randint(cfg.vocab_size, (2, cfg.seq_len))
    changed = idx.clone()
    t = 9
    changed[:, t:] = (changed[:, t:] + 1) % cfg.vocab_size  # every token from position t on
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t:], b[:, t:])


def test_rope_scores_depend_only_on_offset() -> None:
    torch.manual_seed(0)
    cfg = tiny(pos_emb=PosEmb.rope)
    attn = GPT(cfg).blocks[0].attn
    q, k = torch.randn(2, 1, 1, 1, cfg.d_model // cfg.n_head).unbind(0)  # (B, nh, T, hs) each

    def score(i: int, j: int) -> torch.Tensor:
        qi = apply_rope(q, attn.cos[i : i + 1], attn.sin[i : i + 1])
        kj = apply_rope(k, attn.cos[j : j + 1], attn.sin[j : j + 1])
        return (qi * kj).sum()

    torch.testing.assert_close(score(5, 2), score(12, 9))
    assert not torch.allclose(score(5, 2), score(5, 3))


def test_initial_loss_is_uniform() -> None:
    torch.manual_seed(0)
    cfg = tiny(vocab_size=256)
    model = GPT(cfg)
    idx = torch.randint(cfg.vocab_size, (8, cfg.seq_len))
    _, loss = model(idx, idx)
    assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.2


@pytest.mark.parametrize("pos_emb", list(PosEmb))
def test_adamw_steps_reduce_loss(pos_emb: PosEmb) -> None:
    torch.manual_seed(0)
    cfg = tiny(pos_emb=pos_emb, dropout=0.1)
    model = GPT(cfg)
    data = torch.randint(cfg.vocab_size, (4, cfg.seq_len + 1))
    x, y = data[:, :-1], data[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
