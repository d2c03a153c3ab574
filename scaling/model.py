"""One decoder-only, pre-LayerNorm GPT (nanoGPT-style), configured by a `ModelConfig`.

Shapes in comments: B batch, T sequence length, C = d_model, nh heads, hs = C // nh head size,
F the MLP hidden width, V the vocabulary. Every option of the family (learned or rotary
positions, GELU or SwiGLU MLP, tied or untied output layer, biases on or off, dropout, standard
or muP parametrisation) lives here, and `scaling.family.param_counts` mirrors the parameters
created below exactly.

muP (Yang et al. 2022, "Tensor Programs V", Table 8 for Adam) with width multiplier
m = d_model / base_width: the hidden matrices (every matrix inside a block) start with variance
x 1/m and learn at LR x 1/m; the readout sees its input x 1/m (so its weights keep the base
init and LR, as the `mup` package's MuReadout); attention scores are q.k * sqrt(hs_base) / hs
instead of q.k / sqrt(hs); embeddings, biases and LayerNorm gains are as in the standard
model. At m = 1 the model, its init and its optimiser groups equal the standard ones.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from scaling.config import MLPKind, ModelConfig, Parametrization, PosEmb


def rope_cache(seq_len: int, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """The rotary cos and sin tables, each (T, hs/2), for positions 0..seq_len-1."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, nh, T, hs) by position; pairs are (i, i + hs/2), the GPT-NeoX layout."""
    # Halves instead of interleaved pairs: two contiguous slices, no strided gather.
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # keep bf16 activations bf16 (no-op in fp32)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def attention_scale(cfg: ModelConfig) -> Optional[float]:
    """The attention-score factor: None (1/sqrt(hs), the default) or muP's sqrt(hs_base)/hs."""
    if Parametrization(cfg.parametrization) != Parametrization.mup:
        return None
    assert cfg.base_width is not None  # ModelConfig refuses muP without a base width
    head_dim = cfg.d_model // cfg.n_head
    base = cfg.base_head_dim or cfg.base_width // cfg.n_head
    # 1/hs (not 1/sqrt(hs)): q and k become correlated during training, so q.k grows ~ hs;
    # the sqrt(hs_base) keeps the base model's scores exactly the standard ones
    return math.sqrt(base) / head_dim


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, optionally with rotary position embeddings."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.d_model = cfg.d_model
        self.dropout = cfg.dropout
        # q, k and v in one matmul: one kernel launch and one weight read instead of three
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.scale = attention_scale(cfg)
        self.rope = PosEmb(cfg.pos_emb) == PosEmb.rope
        if self.rope:
            cos, sin = rope_cache(cfg.seq_len, cfg.d_model // cfg.n_head, cfg.rope_base)
            # non-persistent: derived from the config, so neither a parameter nor in checkpoints
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over earlier positions only; x and the result are (B, T, C)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.d_model, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.rope:
            q = apply_rope(q, self.cos[:T], self.sin[:T])
            k = apply_rope(k, self.cos[:T], self.sin[:T])
        # fused kernel (flash / memory-efficient): the (T, T) mask is never materialised
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=True,
            scale=self.scale,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward block: GELU (GPT-2) or SwiGLU (Shazeer 2020)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.swiglu = MLPKind(cfg.mlp) == MLPKind.swiglu
        self.ff = cfg.ff_width
        # SwiGLU's gate and up projections share one matmul (d -> 2F), split afterwards
        self.c_fc = nn.Linear(cfg.d_model, (2 if self.swiglu else 1) * self.ff, bias=cfg.bias)
        self.c_proj = nn.Linear(self.ff, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, C)."""
        h = self.c_fc(x)  # (B, T, F) or (B, T, 2F)
        if self.swiglu:
            gate, up = h.split(self.ff, dim=-1)  # (B, T, F) each
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """One transformer layer: pre-LayerNorm attention then MLP, each added to the residual."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A decoder-only language model: token ids (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError(
                "model.vocab_size is None; set it (e.g. from the corpus tokenizer) before "
                "building GPT"
            )
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # rotary positions act inside attention, so only learned positions need a table
        self.wpe = (
            nn.Embedding(cfg.seq_len, cfg.d_model)
            if PosEmb(cfg.pos_emb) == PosEmb.learned
            else None
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # one (V, C) matrix: input and output
        self.apply(self._init_weights)
        # GPT-2: the two projections into the residual stream per layer (attention output,
        # MLP output) are shrunk by 1/sqrt(2 * n_layer) so the residual's variance does not
        # grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        self.mup = Parametrization(cfg.parametrization) == Parametrization.mup
        if self.mup:
            # muP: hidden matrices' variance ~ 1/fan_in, anchored at the base width's init
            with torch.no_grad():
                for p in self.hidden_matrices():
                    p.mul_(1 / math.sqrt(cfg.width_mult))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2: N(0, 0.02) for every matrix and embedding, zero biases, LayerNorm at (1, 0)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The matrices whose both dimensions grow with the width: every matrix in a block."""
        return [p for p in self.blocks.parameters() if p.dim() >= 2]

    def optim_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: decay on matrices only (nanoGPT); under muP the hidden
        matrices at lr / width_mult. The first group learns at `lr` (the logged LR)."""
        params = [p for p in self.parameters() if p.requires_grad]
        hidden = {id(p) for p in self.hidden_matrices()} if self.mup else set()
        # consecutive runs of hidden / other matrices (under SP: one group of them all), so the
        # groups list the parameters in the standard order: the gradient-norm clip sums them in
        # the same order, and muP at the base width trains bit for bit as SP
        groups = [
            {
                "params": list(run),
                "weight_decay": weight_decay,
                **({"lr": lr / self.cfg.width_mult} if is_hidden else {}),
            }
            for is_hidden, run in itertools.groupby(
                (p for p in params if p.dim() >= 2), key=lambda p: id(p) in hidden
            )
        ]
        groups.append({"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0})
        return groups

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count: Kaplan's N (non-embedding) or the module's total."""
        n = sum(p.numel() for p in self.parameters())  # a tied matrix is yielded once
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
            if not self.cfg.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def forward(
        self, idx: Tensor, targets: Optional[Tensor] = None
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Logits (B, T, V) for token ids idx (B, T), and the mean cross-entropy (nats) if
        targets (B, T) are given."""
        if idx.shape[1] > self.cfg.seq_len:
            raise ValueError(
                f"sequence length {idx.shape[1]} exceeds model.seq_len={self.cfg.seq_len}"
            )
        T = idx.shape[1]
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe.weight[:T]  # (T, C) broadcast over the batch
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if self.mup:  # the readout multiplier 1/m on (B, T, C), cheaper than on the logits
            x = x * (1 / self.cfg.width_mult)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss
