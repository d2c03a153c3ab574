"""Typed configuration schema.

Every YAML file under conf/ is merged onto these dataclasses (registered in Hydra's
ConfigStore), so a typo such as `model.n_layr=4` or a string where a number belongs fails at
composition, before anything is built. Cross-field checks live in `__post_init__` and run when
`validate()` turns the composed DictConfig into these objects, still before any training.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from contract import FlopConvention, WandbMode


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and what is valid."""


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _positive(key: str, value: float) -> None:
    _check(math.isfinite(value) and value > 0, f"{key}={value} must be a finite number > 0")


def _non_negative(key: str, value: float) -> None:
    _check(math.isfinite(value) and value >= 0, f"{key}={value} must be a finite number >= 0")


def check_name(key: str, value: str) -> None:
    """Refuse a folder name that would put a run outside runs_dir (or among hidden folders)."""
    _check(
        bool(value) and not value.startswith(".") and not any(c in value for c in "/\\\0"),
        f"{key}={value!r} must be a plain folder name (no '/', '\\', or leading '.'), so the "
        "run stays inside runs_dir",
    )


SEED_MAX = 2**32 - 1  # numpy and Lightning take uint32 seeds
# Lightning accelerators a run can use here (tpu, hpu need packages this project does not ship)
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
# Lightning strategies that need no package beyond torch (deepspeed and xla ones do)
STRATEGIES = (
    *("auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true"),
    *("fsdp", "fsdp_cpu_offload"),
)


class PosEmb(Enum):
    rope = "rope"
    learned = "learned"


class MLPKind(Enum):
    gelu = "gelu"
    swiglu = "swiglu"


class Parametrization(Enum):
    sp = "sp"  # standard (GPT-2): every setting as tuned at this width
    mup = "mup"  # maximal update (Yang et al. 2022): the best LR transfers across widths


class Tokenizer(Enum):
    byte = "byte"
    bpe = "bpe"


# Lightning's precision settings, checked at composition (a typo such as bf17 fails before any
# run folder exists). Functional API: the names are not identifiers, and OmegaConf matches names.
Precision = Enum(
    "Precision",
    {p: p for p in ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")},
    module=__name__,
)


class ScheduleKind(Enum):
    cosine = "cosine"  # warmup + cosine decay to final_lr_frac at the run's own end
    wsd = "wsd"  # warmup-stable-decay (Hägele et al. 2024)
    constant = "constant"  # warmup + constant


class CooldownShape(Enum):
    linear = "linear"
    sqrt = "sqrt"  # 1 - sqrt(progress), the best shape in Hägele et al. 2024
    cosine = "cosine"


@dataclass
class ModelConfig:
    """One member of the decoder-only GPT family (a named size from conf/model/)."""

    name: str = MISSING  # size name, e.g. "1M"; the first half of the run name
    n_layer: int = MISSING
    n_head: int = MISSING
    d_model: int = MISSING
    d_ff: Optional[int] = None  # MLP hidden width; None -> 4*d_model (gelu) or 8/3*d_model (swiglu)
    seq_len: int = 128  # context length T
    vocab_size: Optional[int] = None  # None -> taken from the corpus's tokenizer
    pos_emb: PosEmb = PosEmb.learned
    mlp: MLPKind = MLPKind.gelu
    tie_embeddings: bool = False
    bias: bool = True
    dropout: float = 0.0
    rope_base: float = 10000.0
    # muP (Yang et al. 2022, for AdamW): hidden matrices get init variance and LR scaled by
    # base_width / d_model, the logits 1 / (d_model / base_width), attention scores 1/d_head;
    # at d_model == base_width the model and its optimiser are exactly the standard ones.
    parametrization: Parametrization = Parametrization.sp
    base_width: Optional[int] = None  # the d_model whose tuned settings transfer (muP only)
    base_head_dim: Optional[int] = None  # head dim at base_width; None -> base_width // n_head

    def __post_init__(self) -> None:
        if self.n_layer is MISSING or isinstance(self.n_layer, str):
            return  # schema instance at registration time
        check_name("model.name", self.name)
        _check(self.n_layer >= 1, f"model.n_layer={self.n_layer} must be >= 1")
        _check(self.n_head >= 1, f"model.n_head={self.n_head} must be >= 1")
        _check(
            self.d_model % self.n_head == 0,
            f"model.n_head={self.n_head} does not divide model.d_model={self.d_model}; "
            f"valid n_head values: {[h for h in range(1, self.d_model + 1) if self.d_model % h == 0]}",
        )
        if self.pos_emb == PosEmb.rope:
            _check(
                (self.d_model // self.n_head) % 2 == 0,
                f"RoPE needs an even head dimension, got d_model/n_head={self.d_model // self.n_head}",
            )
        _check(self.seq_len >= 2, f"model.seq_len={self.seq_len} must be >= 2")
        _check(0.0 <= self.dropout < 1.0, f"model.dropout={self.dropout} must be in [0, 1)")
        if self.d_ff is not None:
            _check(self.d_ff >= 1, f"model.d_ff={self.d_ff} must be >= 1")
        if self.vocab_size is not None:
            _check(self.vocab_size >= 2, f"model.vocab_size={self.vocab_size} must be >= 2")
        _positive("model.rope_base", self.rope_base)
        self._check_mup()

    def _check_mup(self) -> None:
        """muP needs a base width no larger than the width; standard parametrisation none."""
        self.parametrization = Parametrization(self.parametrization)  # a plain "mup" too
        if self.parametrization != Parametrization.mup:
            for key in ("base_width", "base_head_dim"):
                _check(
                    getattr(self, key) is None,
                    f"model.{key}={getattr(self, key)} applies only to "
                    f"model.parametrization=mup (got {self.parametrization.value}); remove it "
                    "or set model.parametrization=mup",
                )
            return
        _check(
            self.base_width is not None,
            "model.parametrization=mup needs model.base_width=<the d_model its learning rate "
            f"was tuned at>, an integer in [1, d_model={self.d_model}]",
        )
        assert self.base_width is not None
        _check(
            1 <= self.base_width <= self.d_model,
            f"model.base_width={self.base_width} must be in [1, d_model={self.d_model}]: muP "
            "transfers settings from a narrower base model to wider ones",
        )
        if self.base_head_dim is None:
            _check(
                self.base_width % self.n_head == 0,
                f"model.n_head={self.n_head} does not divide model.base_width={self.base_width}"
                "; set model.base_head_dim (the head dimension of the base model)",
            )
        else:
            _check(
                self.base_head_dim >= 1, f"model.base_head_dim={self.base_head_dim} must be >= 1"
            )

    @property
    def width_mult(self) -> float:
        """d_model / base_width under muP (1 under standard parametrisation)."""
        if Parametrization(self.parametrization) != Parametrization.mup or not self.base_width:
            return 1.0
        return self.d_model / self.base_width

    @property
    def ff_width(self) -> int:
        """The resolved MLP hidden width."""
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == MLPKind.swiglu:
            # 8/3 * d keeps SwiGLU's three matrices at the parameter count of a 4*d GELU MLP
            return int(8 * self.d_model / 3 + 7) // 8 * 8
        return 4 * self.d_model


@dataclass
class MarkovConfig:
    """A random sparse Markov source whose entropy rate (the irreducible loss E) is exact."""

    vocab_size: int = 64
    order: int = 1  # context length of the source; states = vocab_size**order
    branching: int = 4  # successors per state (sparsity)
    concentration: float = 1.0  # Dirichlet concentration of each state's transition row
    n_tokens: int = 2_000_000
    seed: int = 1234

    def __post_init__(self) -> None:
        _check(
            2 <= self.vocab_size <= 65536,
            f"data.markov.vocab_size={self.vocab_size} must be in [2, 65536] (uint16 tokens)",
        )
        _check(self.order >= 1, f"data.markov.order={self.order} must be >= 1")
        # the transition table holds vocab_size**order rows; beyond ~4M it no longer fits a
        # laptop's memory, and such a source is not learnable from a corpus of sane size anyway
        _check(
            self.vocab_size**self.order <= 2**22,
            f"data.markov: vocab_size**order = {self.vocab_size}**{self.order} states exceeds "
            f"{2**22}; lower data.markov.order or data.markov.vocab_size",
        )
        # >= 2 successors leave room for the extra edges that make the chain aperiodic
        _check(
            2 <= self.branching <= self.vocab_size,
            f"data.markov.branching={self.branching} must be in [2, vocab_size={self.vocab_size}]",
        )
        _check(
            self.concentration > 0,
            f"data.markov.concentration={self.concentration} must be > 0",
        )
        _check(self.n_tokens >= 2, f"data.markov.n_tokens={self.n_tokens} must be >= 2")
        _check(self.seed >= 0, f"data.markov.seed={self.seed} must be >= 0")


@dataclass
class DataConfig:
    """Which corpus to train on and how to tokenise it."""

    name: str = "stdlib"  # stdlib | markov | text
    # for name=text: a text file, a folder, .jsonl(.gz) or parquet (prepared by scaling-prepare)
    path: Optional[str] = None
    jsonl_key: str = "text"  # field (JSONL) or column (parquet) holding each document's text
    tokenizer: Tokenizer = Tokenizer.byte
    bpe_vocab_size: int = 4096
    max_bytes: Optional[int] = None  # cap on raw corpus bytes (None: all; a cap is recorded)
    # validation share: stdlib holds out the corpus's tail; text a hash-chosen share of documents
    val_fraction: float = 0.02
    # cap the training split to its first U tokens (repeated-data runs; null: all of it)
    unique_tokens: Optional[int] = None
    cache_dir: str = ".cache/scaling"  # prepared token files, keyed by content hash
    markov: MarkovConfig = field(default_factory=MarkovConfig)

    def __post_init__(self) -> None:
        corpora = ("stdlib", "markov", "text")
        _check(self.name in corpora, f"data.name={self.name!r} is unknown; valid: {list(corpora)}")
        if self.name == "text":
            _check(
                self.path is not None,
                "data.name=text needs data.path=<a text file, a folder of text files, or a .jsonl>",
            )
        if self.name == "markov":
            # the source's symbols are the tokens; a tokenizer would change the entropy rate
            _check(
                self.tokenizer == Tokenizer.byte,
                f"data.tokenizer={self.tokenizer.value} does not apply to data.name=markov "
                "(its symbols are the tokens); use data.tokenizer=byte",
            )
        if self.tokenizer == Tokenizer.bpe:
            _check(
                257 <= self.bpe_vocab_size <= 65536,
                f"data.bpe_vocab_size={self.bpe_vocab_size} must be in [257, 65536] "
                "(256 byte tokens plus merges; uint16 tokens)",
            )
        if self.max_bytes is not None:
            _check(self.max_bytes >= 1, f"data.max_bytes={self.max_bytes} must be >= 1 or null")
        if self.unique_tokens is not None:
            _check(
                self.unique_tokens >= 1,
                f"data.unique_tokens={self.unique_tokens} must be >= 1 or null (all tokens)",
            )
        _check(
            0 < self.val_fraction < 1,
            f"data.val_fraction={self.val_fraction} must be in (0, 1)",
        )
        _check(bool(self.jsonl_key), "data.jsonl_key must be a non-empty field name")


@dataclass
class TrainConfig:
    """The run's budget (exactly one of tokens / flops / steps) and loop settings."""

    tokens: Any = None  # a count (2e7) or a Chinchilla multiple "1xC" (= 20 tokens/param)
    flops: Optional[float] = None  # compute budget C under `flops_convention`
    steps: Optional[int] = None
    flops_convention: FlopConvention = FlopConvention.chinchilla
    batch_size: int = 32  # sequences per optimiser step; tokens/step = batch_size * seq_len
    n_evals: int = 30  # validation points spaced evenly in log(tokens), plus the final one
    # Held-out tokens per evaluation: eval_tokens // seq_len windows spread evenly over the
    # validation split, the same windows for every run of a corpus whatever its batch size
    # (evaluated in batches of batch_size), so losses across a sweep compare like for like.
    eval_tokens: int = 32768
    seed: int = 0
    divergence_factor: float = 4.0  # loss above factor * ln(vocab) (or NaN/inf) -> diverged
    checkpoint_every: int = 200  # steps between last-checkpoint saves (and at the end)
    log_every: int = 10  # steps between train/loss rows
    resume: bool = True  # resume an interrupted run from its last checkpoint
    # Start from another run's checkpoint (weights, optimiser state and step) instead of from
    # scratch: how a WSD cooldown branch continues its size's stable run.
    init_from: Optional[str] = None
    checkpoint_steps: list[int] = field(default_factory=list)  # extra kept checkpoints step<S>.ckpt
    # A JSONL of multiple-choice items ({"context", "choices", "answer"}) scored at each
    # evaluation by per-choice loss: metrics task_bpb and task_acc (scaling/tasks.py).
    tasks_path: Optional[str] = None

    def __post_init__(self) -> None:
        # "none set" is reported by budget.resolve(); the schema default has no budget
        set_ = [k for k in ("tokens", "flops", "steps") if getattr(self, k) is not None]
        _check(
            len(set_) <= 1,
            f"exactly one budget must be set among train.tokens, train.flops, train.steps; "
            f"got {set_}",
        )
        _check(self.batch_size >= 1, f"train.batch_size={self.batch_size} must be >= 1")
        _check(self.n_evals >= 1, f"train.n_evals={self.n_evals} must be >= 1")
        _check(self.eval_tokens >= 1, f"train.eval_tokens={self.eval_tokens} must be >= 1")
        _check(0 <= self.seed <= SEED_MAX, f"train.seed={self.seed} must be in [0, {SEED_MAX}]")
        _check(self.log_every >= 1, f"train.log_every={self.log_every} must be >= 1")
        _check(
            self.checkpoint_every >= 0,
            f"train.checkpoint_every={self.checkpoint_every} must be >= 0 (0: no checkpoints)",
        )
        _check(
            self.divergence_factor > 0,  # inf: only a NaN/inf loss counts as diverged
            f"train.divergence_factor={self.divergence_factor} must be > 0",
        )
        _check(
            all(s >= 1 for s in self.checkpoint_steps),
            f"train.checkpoint_steps={self.checkpoint_steps} must all be steps >= 1",
        )


@dataclass
class OptimConfig:
    """AdamW; the peak learning rate can depend on the model size."""

    lr: float = 3e-3  # peak LR unless lr_table or lr_rule gives one for this size
    lr_table: dict[str, float] = field(default_factory=dict)  # size name -> peak LR
    lr_rule_exponent: Optional[float] = None  # lr = lr * (lr_rule_ref_params / N)^exponent
    lr_rule_ref_params: float = 1e6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping
    fused: bool = True  # fused AdamW kernel where the device supports it

    def __post_init__(self) -> None:
        _positive("optim.lr", self.lr)
        for k, v in self.lr_table.items():
            _positive(f"optim.lr_table[{k}]", v)
        if self.lr_rule_exponent is not None:
            _check(
                math.isfinite(self.lr_rule_exponent),
                f"optim.lr_rule_exponent={self.lr_rule_exponent} must be finite (or null)",
            )
        _positive("optim.lr_rule_ref_params", self.lr_rule_ref_params)
        _check(len(self.betas) == 2, f"optim.betas={self.betas} must have two values")
        _check(
            all(0 <= b < 1 for b in self.betas),
            f"optim.betas={self.betas} must each be in [0, 1)",
        )
        _positive("optim.eps", self.eps)
        _non_negative("optim.weight_decay", self.weight_decay)
        _non_negative("optim.grad_clip", self.grad_clip)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule as a multiplier of the peak LR over the run's steps."""

    kind: ScheduleKind = ScheduleKind.cosine
    warmup_frac: float = 0.05  # warmup steps as a fraction of the run (capped by warmup_max)
    warmup_max: int = 1000
    final_lr_frac: float = 0.1  # cosine decays to this fraction (Chinchilla: 10%)
    cooldown_frac: float = 0.2  # wsd: fraction of steps in the final decay
    cooldown_shape: CooldownShape = CooldownShape.sqrt
    # wsd cooldown branches: the stable phase is that of a run of `wsd_total_steps` steps, the
    # decay starts at this run's own end minus its cooldown (set by the wsd sweep).
    wsd_total_steps: Optional[int] = None

    def __post_init__(self) -> None:
        _check(0 <= self.warmup_frac < 1, f"schedule.warmup_frac={self.warmup_frac} not in [0,1)")
        _check(
            0 <= self.final_lr_frac <= 1,
            f"schedule.final_lr_frac={self.final_lr_frac} not in [0,1]",
        )
        _check(
            0 < self.cooldown_frac <= 1, f"schedule.cooldown_frac={self.cooldown_frac} not in (0,1]"
        )
        _check(self.warmup_max >= 0, f"schedule.warmup_max={self.warmup_max} must be >= 0")
        if self.wsd_total_steps is not None:
            _check(
                self.wsd_total_steps >= 1,
                f"schedule.wsd_total_steps={self.wsd_total_steps} must be >= 1 (or null)",
            )


@dataclass
class TrainerConfig:
    """Lightning Trainer settings: device, precision, compile, threads."""

    accelerator: str = "cpu"  # one of ACCELERATORS
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # one of STRATEGIES
    precision: Precision = Precision["32-true"]  # GPU: bf16-mixed
    compile: bool = False  # torch.compile the model (a GPU option; no gain on CPU)
    num_threads: Optional[int] = None  # torch intra-op threads; None -> torch's default
    peak_flops: Optional[float] = None  # for MFU; None -> measured (CPU) or looked up (GPU)
    progress_every_s: float = 10.0  # seconds between one-line progress reports (0: off)

    def __post_init__(self) -> None:
        _check(
            self.accelerator in ACCELERATORS,
            f"trainer.accelerator={self.accelerator!r} is not supported; valid: "
            f"{list(ACCELERATORS)}",
        )
        _check(
            self.strategy in STRATEGIES,
            f"trainer.strategy={self.strategy!r} is not supported; valid: {list(STRATEGIES)}",
        )
        _check(self.devices >= 1, f"trainer.devices={self.devices} must be >= 1")
        _check(self.num_nodes >= 1, f"trainer.num_nodes={self.num_nodes} must be >= 1")
        if self.num_threads is not None:
            _check(self.num_threads >= 1, f"trainer.num_threads={self.num_threads} must be >= 1")
        if self.peak_flops is not None:
            _positive("trainer.peak_flops", self.peak_flops)
        _non_negative("trainer.progress_every_s", self.progress_every_s)


@dataclass
class WandbConfig:
    """Weights & Biases: a view of the run store, grouped by experiment/sweep."""

    mode: WandbMode = WandbMode.auto
    project: str = "scaling"
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    dir: Optional[str] = None  # None -> the run folder


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class Config:
    """The whole run: model x data x budget x optimiser x schedule x trainer x logging."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    experiment: str = "default"  # W&B group and runs/<experiment>/
    run_name: Optional[str] = None  # None -> "{size}-{budget}"
    runs_dir: str = "runs"
    sweep: Any = None  # sweep parameters (set by files in sweeps/)

    def __post_init__(self) -> None:
        check_name("experiment", self.experiment)
        if self.run_name is not None:
            check_name("run_name", self.run_name)


SWEEPS_DIR = Path(__file__).resolve().parent.parent / "sweeps"


def register_configs() -> None:
    """Register the schema (so conf/train.yaml is validated) and sweeps/*.yaml as `+sweep=`."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for path in sorted(SWEEPS_DIR.glob("*.yaml")):
        node = OmegaConf.load(path)
        if "sweep" in node:  # typed: every key overridable, a typo fails at composition
            node.sweep = OmegaConf.merge(OmegaConf.structured(SweepSpec), node.sweep)
        cs.store(group="sweep", name=path.stem, node=node, package="_global_")


def _unknown_keys(node: DictConfig, prefix: str, valid: list[str]) -> list[str]:
    """The dotted keys under `node` that its dataclass schema lacks (added with `+key=`);
    appends every schema key seen to `valid`. Dict-typed nodes (optim.lr_table) take any key."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return []
    fields = {f.name for f in dataclasses.fields(schema)}
    unknown = []
    for key, child in node.items_ex(resolve=False):
        path = f"{prefix}{key}"
        if key not in fields:
            unknown.append(path)
            continue
        valid.append(path)
        if isinstance(child, DictConfig):
            unknown += _unknown_keys(child, f"{path}.", valid)
    return unknown


def _unknown_key_message(key: str, valid: list[str]) -> str:
    """'<key> is not a setting', with the nearest schema key (or the valid ones beside it)."""
    parent, _, leaf = key.rpartition(".")
    siblings = [v for v in valid if v.rpartition(".")[0] == parent]
    # the nearest name beside it (a misspelling), else the same name elsewhere (a wrong node)
    for pool, cutoff in ((siblings, 0.6), (valid, 0.8)):
        by_leaf = {v.rpartition(".")[2]: v for v in reversed(pool)}
        near = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=cutoff)
        if near:
            return f"{key} is not a setting; did you mean {by_leaf[near[0]]}?"
    return f"{key} is not a setting; valid: {', '.join(siblings)}"


def validate(cfg: DictConfig) -> Config:
    """Turn a composed config into typed objects, running every `__post_init__` check."""
    valid: list[str] = []
    unknown = _unknown_keys(cfg, "", valid)
    if unknown:
        raise ConfigError("; ".join(_unknown_key_message(k, valid) for k in unknown))
    try:
        obj = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as e:  # omegaconf wraps errors raised inside __post_init__
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(str(e).splitlines()[0]) from e  # the rest repeats the key and types
    assert isinstance(obj, Config)
    return obj


@dataclass
class SweepSpec:
    """The `sweep:` node of a sweep file (sweeps/*.yaml): what to vary and which runs to keep.

    Which fields a kind needs, and what it does with them, is the kind's own class
    (scaling/sweep/kinds.py); the checks here hold for every kind.
    """

    name: str = "sweep"
    """W&B group and runs/<name>/ (the sweep files set experiment=name)."""
    kind: str = "isoflop"
    """The registered sweep kind: isoflop, wsd_isoflop, size_ladder, data_ladder, wsd, lr, lr_bs or
    repeat."""
    plan: bool = False
    """Print the runs, total FLOPs and estimated wall time; launch nothing."""
    sizes: list[str] = field(default_factory=list)
    """Model sizes (conf/model/<size>.yaml)."""
    budgets: list[float] = field(default_factory=list)
    """isoflop, wsd_isoflop: compute budgets C."""
    multiples: list[float] = field(default_factory=list)
    """size_ladder: tokens = k x C (Chinchilla multiples)."""
    tokens: list[Any] = field(default_factory=list)
    """data_ladder, wsd: token counts or "<k>xC"."""
    lrs: list[float] = field(default_factory=list)
    """lr, lr_bs: peak LRs tried at every size (lr_bs: at every batch size too)."""
    batch_sizes: list[int] = field(default_factory=list)
    """lr_bs: global batch sizes (sequences per step) tried in every (size, tokens) cell."""
    unique_tokens: list[float] = field(default_factory=list)
    """repeat: unique training tokens U (the training split capped to its first U tokens)."""
    epochs: list[float] = field(default_factory=list)
    """repeat: passes over the U unique tokens (training tokens D = epochs x U)."""
    min_steps: int = 1
    """Runs with fewer optimiser steps are dropped (and listed)."""
    tokens_per_param: Optional[list[Optional[float]]] = None
    """[lo, hi] window of D/N (either end null: open); null: any ratio."""
    flops_tolerance: float = 0.01
    """isoflop: whole optimiser steps round D = C / flops_per_token; a run whose FLOPs then miss
    its budget C by more than this fraction is dropped (and listed). lr_bs: the same for a batch
    size whose whole steps miss the cell's tokens D."""
    overhead_s: float = 2.5
    """Wall-time estimate, per run: Trainer, W&B, checkpoints (fit on a 2-core CPU)."""
    step_overhead_s: float = 1e-3
    """Wall-time estimate, per optimiser step: Lightning's loop, callbacks, logging."""
    startup_s: float = 10.0
    """Wall-time estimate, per worker process: importing Lightning."""

    def __post_init__(self) -> None:
        for key in ("budgets", "multiples", "lrs"):
            bad = [v for v in getattr(self, key) if not 0 < v < float("inf")]
            _check(not bad, f"sweep.{key} must be positive numbers; got {bad}")
        bad_bs = [b for b in self.batch_sizes if b < 1]
        _check(not bad_bs, f"sweep.batch_sizes must be whole numbers >= 1; got {bad_bs}")
        _check(self.min_steps >= 1, f"sweep.min_steps={self.min_steps} must be >= 1")
        _check(
            0 < self.flops_tolerance < 1,
            f"sweep.flops_tolerance={self.flops_tolerance} must be a fraction in (0, 1)",
        )
        w = self.tokens_per_param
        _check(
            w is None or len(w) == 2,
            f"sweep.tokens_per_param={w} must be [lo, hi] (null for open)",
        )
