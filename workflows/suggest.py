"""`scaling-suggest`: what to train at a new budget, from a fitted law and the model family.

From ``fit.json`` (approach 3's frontier, else 2's or 1's) and, where present, ``hparams.json``
(`scaling-hparams`), for a target compute C (or a fixed N, or a target loss): the compute-optimal
N, the family size that trains it (a named size, or a new shape from the family's one shape rule),
the tokens D, steps, batch size, peak LR and expected loss, and the exact `scaling-train` command.
It needs both sides of the house (the fit and the family's shape rule), so it lives here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.hparams import HparamsError, HparamsReport
from analysis.report import fmt_ci
from analysis.results import Allocation, Estimate, FitReport, FitReportError, LawFit, to_plain
from scaling.config import ModelConfig, TrainConfig
from scaling.family import SIZES, model_config, param_counts, shape

SUGGEST_FORMAT = 1
"""Version of the --json layout."""
METHODS = ("auto", "3", "2", "1")
COUNT_VOCAB = 256  # non-embedding N does not depend on the vocabulary; counting needs one


class SuggestError(ValueError):
    """The fit cannot answer the question (no usable law, a target no size fits)."""


@dataclass
class ModelChoice:
    """The model to train: a named family size or a new shape from the shape rule."""

    name: str
    """The size name (a new shape is named by its nominal N, e.g. "3.1M")."""
    n_layer: int
    """Layers."""
    n_head: int
    """Attention heads."""
    d_model: int
    """Width."""
    N: int
    """Exact non-embedding parameters (the N of the fit)."""
    family: bool
    """Whether it is a named size of conf/model/ (else model.* overrides make it)."""


@dataclass
class Suggestion:
    """What scaling-suggest proposes (its --json output)."""

    fit: str
    """The fit.json read."""
    hparams: str | None
    """The hparams.json read; None: batch size and LR are the config's defaults."""
    method: str
    """The allocation used: approach3, approach2 or approach1."""
    target: str
    """What was asked: "compute", "params" or "loss"."""
    target_value: float
    """The asked compute (FLOPs), N or loss."""
    convention: str
    """FLOP convention of C (the fit's)."""
    C_opt: float
    """The compute whose optimum is suggested."""
    N_opt: float
    """The compute-optimal N at C_opt."""
    model: ModelChoice
    """The model that trains it."""
    D: int
    """Training tokens: steps x batch_size x seq_len."""
    steps: int
    """Optimiser steps."""
    batch_size: int
    """Sequences per step."""
    seq_len: int
    """Tokens per sequence."""
    lr: float | None
    """Peak LR from lr*(N, D) of hparams.json; None: the config's optim.lr."""
    C: float
    """Training compute of the suggested run (k N D in the fit's convention)."""
    loss: Estimate | None
    """Expected final loss at (N, D) (approach 3 only); the interval where the fit has one."""
    command: str
    """The scaling-train command line that trains it."""
    notes: list[str] = field(default_factory=list)
    """What the reader must know (rounding to a family size, missing intervals)."""
    format: int = SUGGEST_FORMAT
    """Version of this layout."""


def allocation_of(report: FitReport, method: str) -> tuple[str, Allocation, LawFit | None]:
    """The chosen approach's N_opt(C), D_opt(C) and its loss law (approach 3 only)."""
    order = ("3", "2", "1") if method == "auto" else (method,)
    why = []
    for m in order:
        ap = getattr(report, f"approach{m}")
        if ap is None or ap.error:
            why.append(f"approach {m}: {'not computed' if ap is None else ap.error}")
            continue
        if m == "3" and (bad := ap.implausible()):
            why.append(f"approach 3: {bad}")
            continue
        alloc = ap.allocation
        if alloc is None or not alloc.finite:
            why.append(f"approach {m}: no finite N_opt(C), D_opt(C)")
            continue
        return f"approach{m}", alloc, ap.fit if m == "3" else None
    raise SuggestError(
        "the fit has no usable compute-optimal law (" + "; ".join(why) + "); rerun scaling-fit "
        "with --approaches 1,2,3"
    )


def compute_for_loss(alloc: Allocation, law: LawFit | None, loss: float) -> float:
    """The compute whose optimum reaches ``loss`` (bisection in log C on approach 3's law)."""
    if law is None:
        raise SuggestError("--loss needs approach 3's loss law; this fit's allocation has none")
    e = law.values().get("E", 0.0)
    if not loss > e:
        raise SuggestError(
            f"--loss {loss:g} is at or below the fitted irreducible loss E = {e:.4g}: no size "
            f"and no budget reaches it; ask for a loss above {e:.4g}"
        )

    def at(log_c: float) -> float:
        c = math.exp(log_c)
        return float(law.predict({"N": [alloc.n_opt(c)], "D": [alloc.d_opt(c)]})[0])

    lo, hi = math.log(1e6), math.log(1e40)
    if at(hi) > loss:
        raise SuggestError(f"--loss {loss:g} needs more than C = 1e40 FLOPs by this law")
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if at(mid) > loss else (lo, mid)
    return math.exp(hi)


def _label(n: float) -> str:
    """A nominal size name for a new shape, e.g. 3.1e6 -> "3.1M"."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def choose_model(n_opt: float, tolerance: float, seq_len: int) -> ModelChoice:
    """The family size nearest N_opt if within ``tolerance`` (a factor), else a new shape."""

    def counted(name: str, cfg: ModelConfig, family: bool) -> ModelChoice:
        n = param_counts(cfg).non_embedding
        return ModelChoice(name, cfg.n_layer, cfg.n_head, cfg.d_model, n, family)

    sizes = [
        counted(s, model_config(s, vocab_size=COUNT_VOCAB, seq_len=seq_len), True) for s in SIZES
    ]
    near = min(sizes, key=lambda m: abs(math.log(m.N / n_opt)))
    if abs(math.log(near.N / n_opt)) <= math.log(tolerance):
        return near
    name = _label(n_opt)
    cfg = ModelConfig(name=name, **shape(n_opt), vocab_size=COUNT_VOCAB, seq_len=seq_len)
    new = counted(name, cfg, False)
    if abs(math.log(new.N / n_opt)) > math.log(2):
        raise SuggestError(
            f"no model of the family fits N_opt = {n_opt:.4g}: the shape rule's nearest has "
            f"N = {new.N:,} (the smallest shape is {sizes[0].N:,}); ask for a larger budget"
        )
    return new


def command_of(m: ModelChoice, d: int, batch_size: int, lr: float | None) -> str:
    """The scaling-train command line of the suggestion."""
    parts = ["scaling-train"]
    if m.family:
        parts.append(f"model={m.name}")
    else:
        base = next(iter(SIZES))
        parts += [
            f"model={base}",
            f"model.name={m.name}",
            f"model.n_layer={m.n_layer}",
            f"model.n_head={m.n_head}",
            f"model.d_model={m.d_model}",
        ]
    parts += [f"train.tokens={d}", f"train.batch_size={batch_size}"]
    if lr is not None:
        parts += [f"optim.lr={lr:.4g}", "optim.lr_table={}"]
    return " ".join(parts)


def _loss(
    report: FitReport, method: str, law: LawFit | None, c_opt: float, n: int, d: int
) -> tuple[Estimate | None, list[str]]:
    """The expected loss at (N, D), with the fit's interval where it predicted this compute."""
    if law is None:
        return None, [f"{method} has no loss law: no expected loss (approach 3 gives one)"]
    value = float(law.predict({"N": [n], "D": [d]})[0])
    stored = [t for t in report.approach3.targets if math.isclose(t.C, c_opt, rel_tol=1e-3)]
    if stored and stored[0].loss is not None and stored[0].loss.ci is not None:
        return Estimate(value, stored[0].loss.ci), []
    note = (
        f"no interval: the fit predicted no target near C = {c_opt:.4g}; rerun scaling-fit "
        f"with --targets {c_opt:.4g} (and bootstrap) for one"
    )
    return Estimate(value), [note]


def _extrapolation(hp: HparamsReport, n: float, d: float) -> list[str]:
    """A note where (N, D) lies more than 2x outside the LR x batch grid's cells."""
    out = []
    for name, x in (("N", n), ("D", d)):
        values = [getattr(c, name) for c in hp.cells]
        lo, hi = min(values), max(values)
        if not lo / 2 <= x <= 2 * hi:
            out.append(
                f"{name} = {x:.4g} lies outside the hparams grid's {name} range "
                f"[{lo:.3g}, {hi:.3g}]: batch size and LR are extrapolated"
            )
    return out


def suggest(
    fit_path: Path,
    target: str,
    value: float,
    *,
    hparams_path: Path | None = None,
    method: str = "auto",
    seq_len: int = ModelConfig.seq_len,
    tolerance: float = 1.25,
) -> Suggestion:
    """The suggested run for a target compute, N or loss (see the module docstring)."""
    if target not in ("compute", "params", "loss") or not value > 0:
        raise SuggestError(f"target {target}={value!r}: give a positive compute, params or loss")
    report = FitReport.load(fit_path)
    hp = HparamsReport.load(hparams_path) if hparams_path is not None else None
    name, alloc, law = allocation_of(report, method)
    if target == "compute":
        c_opt = value
    elif target == "params":
        c_opt = (value / alloc.N_coef.value) ** (1 / alloc.a.value)
    else:
        c_opt = compute_for_loss(alloc, law, value)
    n_opt = float(alloc.n_opt(c_opt))
    asked_n = value if target == "params" else n_opt
    model = choose_model(asked_n, tolerance, seq_len)
    notes = []
    if round(asked_n) != model.N:
        keeps = "; D = C / (k N) keeps the compute" if target != "params" else ""
        notes.append(f"N = {model.N:,} ({model.name}) trains N = {asked_n:.4g}{keeps}")
    d_ideal = c_opt / (report.k * model.N) if target != "params" else float(alloc.d_opt(c_opt))
    if hp is not None:
        tokens_per_step = hp.laws["B_D"].predict(D=d_ideal)
        batch = max(1, round(tokens_per_step / seq_len))
        lr = hp.laws["lr_ND"].predict(N=model.N, D=d_ideal)
        notes += _extrapolation(hp, model.N, d_ideal)
    else:
        batch, lr = TrainConfig.batch_size, None
        notes.append("no hparams.json: batch size and peak LR are the config defaults")
    steps = max(1, round(d_ideal / (batch * seq_len)))
    d = steps * batch * seq_len
    loss, loss_notes = _loss(report, name, law, c_opt, model.N, d)
    command = command_of(model, d, batch, lr)
    if seq_len != ModelConfig.seq_len:
        command += f" model.seq_len={seq_len}"
    return Suggestion(
        fit=str(fit_path),
        hparams=None if hparams_path is None else str(hparams_path),
        method=name,
        target=target,
        target_value=value,
        convention=report.convention,
        C_opt=c_opt,
        N_opt=n_opt,
        model=model,
        D=d,
        steps=steps,
        batch_size=batch,
        seq_len=seq_len,
        lr=lr,
        C=report.k * model.N * d,
        loss=loss,
        command=command,
        notes=notes + loss_notes,
    )


def text(s: Suggestion) -> str:
    """The suggestion for a terminal."""
    m = s.model
    kind = "family size" if m.family else "new shape from the shape rule"
    loss = "n/a" if s.loss is None else f"{s.loss.value:.4f} {fmt_ci(s.loss.ci)}".rstrip()
    lines = [
        f"{s.method} of {s.fit}: target {s.target} = {s.target_value:.4g}",
        f"  compute-optimal N at C = {s.C_opt:.4g} ({s.convention}): {s.N_opt:.4g}",
        f"  model: {m.name} ({kind}: n_layer={m.n_layer}, n_head={m.n_head}, "
        f"d_model={m.d_model}, N={m.N:,})",
        f"  D = {s.D:,} tokens ({s.D / m.N:.3g} per parameter), {s.steps:,} steps x "
        f"{s.batch_size} x {s.seq_len}, C = {s.C:.4g}",
        f"  peak LR: {'config default (optim.lr)' if s.lr is None else f'{s.lr:.4g}'}",
        f"  expected loss: {loss}",
        *(f"  note: {n}" for n in s.notes),
        "",
        s.command,
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line of scaling-suggest."""
    p = argparse.ArgumentParser(
        prog="scaling-suggest",
        description="Suggest the compute-optimal run for a target compute (or N, or loss) from "
        "a fit (scaling-fit's fit.json) and, where given, the LR and batch-size laws "
        "(scaling-hparams' hparams.json); prints the scaling-train command that trains it.",
    )
    p.add_argument("fit", type=Path, help="fit.json, or a results folder holding one")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--compute", type=float, help="target training compute C (FLOPs)")
    goal.add_argument("--params", type=float, help="a fixed non-embedding N: its optimal D")
    goal.add_argument("--loss", type=float, help="a target loss (approach 3): its cheapest C")
    p.add_argument("--hparams", type=Path, help="hparams.json (default: the one beside fit.json)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="the allocation: approach 3, 2 or 1 (auto: the first usable of 3, 2, 1)",
    )
    p.add_argument("--seq-len", type=int, default=ModelConfig.seq_len, help="tokens per sequence")
    p.add_argument(
        "--size-tolerance",
        type=float,
        default=1.25,
        help="use the nearest named "
        "size when within this factor of N_opt, else a new shape (default 1.25)",
    )
    p.add_argument("--json", action="store_true", help="print the suggestion as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`scaling-suggest results/fit.json --compute 1e15 [--hparams hparams.json] [--json]`."""
    p = parser()
    args = p.parse_args(argv)
    target = next(t for t in ("compute", "params", "loss") if getattr(args, t) is not None)
    folder = args.fit if args.fit.is_dir() else args.fit.parent
    hparams = args.hparams
    if hparams is None and (folder / "hparams.json").is_file():
        hparams = folder / "hparams.json"
    if args.seq_len < 2 or not args.size_tolerance >= 1:
        p.error(f"--seq-len {args.seq_len} must be >= 2 and --size-tolerance >= 1")
    try:
        s = suggest(
            args.fit,
            target,
            getattr(args, target),
            hparams_path=hparams,
            method=args.method,
            seq_len=args.seq_len,
            tolerance=args.size_tolerance,
        )
    except (SuggestError, FitReportError, HparamsError) as err:
        p.error(str(err))
    print(json.dumps(to_plain(s), indent=2) if args.json else text(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
