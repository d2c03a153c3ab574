"""Laws of the whole loss curve under a learning-rate schedule, and the schedules themselves.

A *curve* is one training run seen step by step: the learning rate of every optimiser step
from step 0 (``lr``, shape ``(T,)``) and the loss at some logged steps. Two laws predict the
loss at any step of any schedule from a few fitted curves:

- multi-power law (MPL; Luo et al. 2025, ICML):
  ``L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t)``,
  ``LD(t) = B sum_{k<=t} (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t))``,
  ``G(x) = 1 - (C x + 1)^-beta``, ``S_k(t) = sum_{tau=k..t} eta_tau``;
- LR-annealing law (Tissue et al. 2024): ``L(t) = L0 + A S1(t)^-alpha - C S2(t)``,
  ``S2(t) = sum_{i<=t} m_i``, ``m_i = lambda m_{i-1} + (eta_{i-1} - eta_i)``.

``S1(t) + S_W`` is the area under the whole schedule up to and including step t, ``P(t)``.
The MPL's loss drop sums every LR change from step 1 (``warmup_drop``, the default): the
warmup's rises enter as negative drops, as in the paper's code (github.com/thu-yao-01-luo/
MultiPowerLaw, ``src/models.py``), and only so do the paper's fitted parameters give its
reported held-out scores (tests/test_curve_laws.py); without it, only the changes after the
peak. Tissue's annealing area counts the changes after the peak (``warmup_drop`` optional);
its lambda is one setting, or per curve from a window that is a fraction of the curve's steps
(``decay_window``: 1 - lambda = 1/(window T), what run stores use, see ``FitConfig``).
Both sums run over every optimiser step: only steps where the LR changes contribute to LD,
and ``S_k(t) = P(t) - P(k-1)`` from prefix sums, so the MPL is a (changes x logged steps)
computation, evaluated at the logged steps only; the Tissue sums are parameter-free features.
The MPL's pairs far from a logged step are summed through a few of their changes
(``_skeleton``: interpolation checked per box to ``tol``, 1e-10 by default, which matches the
every-pair sum to ~1e-14 on the published curves with 1/7 to 1/25 of the pairs); ``tol=0``
sums every pair in blocks.

The laws are ``analysis.laws.Law`` instances bound to a list of curves: their data columns are
``curve`` (1-based index into that list) and ``step``, so ``analysis.fit.fit`` fits them as it
fits every other law. ``log_predict_and_jac`` gives the exact value and Jacobian, which
``fit`` uses for its gradient and Gauss-Newton steps; ``log_predict`` is complex-step exact
too (see ``_dual``): for a complex ``theta`` it returns ``f(Re theta) + i J(Re theta) Im
theta``, at the cost of one real evaluation per point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from analysis.fit import FitError
from analysis.laws import TEX_LABELS, Law
from contract.schedule import TRAINER_KINDS as TRAINER_KINDS  # re-exported
from contract.schedule import WSD, Constant, Cosine, Drop, Schedule, Shape
from contract.schedule import trainer_schedule as trainer_schedule  # re-exported

# ----------------------------------------------------------------------------- schedules
# The schedule classes live in contract.schedule: the trainer runs the very same ones.

# The multi-power-law repository's schedules (data/reference/README.md).
REFERENCE_PEAK, REFERENCE_FINAL, REFERENCE_WARMUP = 3e-4, 3e-5, 2160


def _ref_cosine(total: int) -> Schedule:
    return Cosine(total, REFERENCE_WARMUP, REFERENCE_PEAK, True, REFERENCE_FINAL / REFERENCE_PEAK)


def _ref_constant(total: int) -> Schedule:
    return Constant(total, REFERENCE_WARMUP, REFERENCE_PEAK, True)


def _ref_wsd(shape: Shape) -> Callable[[int, int], Schedule]:
    def make(start: int, end: int) -> Schedule:
        return WSD(
            end,
            REFERENCE_WARMUP,
            REFERENCE_PEAK,
            True,
            start,
            REFERENCE_FINAL / REFERENCE_PEAK,
            shape,
        )

    return make


def _ref_wsdcon(k: int) -> Schedule:
    return Drop(16_000, REFERENCE_WARMUP, REFERENCE_PEAK, True, 8_000, k * 1e-5 / REFERENCE_PEAK)


REFERENCE_SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "cosine": _ref_cosine,
    "constant": _ref_constant,
    "wsd": _ref_wsd(Shape.exponential),
    "wsdld": _ref_wsd(Shape.linear),
    "wsdcon": _ref_wsdcon,
}


def reference_schedule(name: str) -> Schedule:
    """The schedule of a multi-power-law reference curve named like ``cosine_24000``,
    ``wsd_20000_24000``, ``wsdld_20000_24000`` or ``wsdcon_9``."""
    kind, *nums = name.split("_")
    if kind not in REFERENCE_SCHEDULES or not nums or not all(n.isdigit() for n in nums):
        raise ValueError(
            f"unknown reference schedule {name!r}; valid: <kind>_<int>[_<int>] with kind in "
            f"{sorted(REFERENCE_SCHEDULES)}"
        )
    return REFERENCE_SCHEDULES[kind](*(int(n) for n in nums))


# ----------------------------------------------------------------------------- curves


class CurveError(FitError):
    """A curve (or its file) cannot be used: named with the file and row where it went wrong."""


@dataclass(frozen=True)
class Curve:
    """One training run as a loss curve: the LR of every step and the loss at logged steps."""

    name: str
    lr: np.ndarray  # (T,) learning rate of every optimiser step from step 0
    steps: np.ndarray  # (n,) logged steps, increasing, each < T
    loss: np.ndarray  # (n,) loss at those steps (NaN where only a prediction is wanted)
    source: str = ""  # where the curve came from (a file), for error messages

    def __post_init__(self) -> None:
        where = self.source or self.name
        object.__setattr__(self, "lr", np.asarray(self.lr, float))
        object.__setattr__(self, "loss", np.asarray(self.loss, float))
        steps = np.asarray(self.steps)
        if steps.size and not np.array_equal(steps, np.round(steps)):
            raise CurveError(f"{where}: logged steps must be whole numbers; got {steps[:3]}")
        object.__setattr__(self, "steps", steps.astype(np.int64))
        lr, steps = self.lr, self.steps
        if lr.ndim != 1 or lr.size == 0:
            raise CurveError(f"{where}: no learning rate given; need one per optimiser step")
        bad = np.flatnonzero(~np.isfinite(lr) | (lr < 0))
        if bad.size:
            raise CurveError(
                f"{where}: lr at step {bad[0]} is {lr[bad[0]]}; every lr must be finite and >= 0"
            )
        peak = int(np.argmax(lr))
        zero = np.flatnonzero(lr[peak:] <= 0)
        if zero.size:
            raise CurveError(
                f"{where}: lr is 0 at step {peak + zero[0]} after the peak; the curve laws need "
                f"lr > 0 after the warmup"
            )
        if steps.size != np.asarray(self.loss).size:
            raise CurveError(f"{where}: {steps.size} logged steps but {np.size(self.loss)} losses")
        if steps.size and (np.any(np.diff(steps) <= 0) or steps[0] < 0 or steps[-1] >= lr.size):
            raise CurveError(
                f"{where}: logged steps must increase within 0..{lr.size - 1}; got "
                f"{steps[:3].tolist()}..{steps[-1:].tolist()}"
            )

    @property
    def peak_step(self) -> int:
        """The first step at the highest learning rate (where the warmup ends)."""
        return int(np.argmax(self.lr))


def _check_rows(path: Path, df: pd.DataFrame, cols: Mapping[str, str]) -> None:
    """Refuse a curve file whose steps are not 0, 1, 2, ... or whose lr is missing or bad."""
    missing = [c for c in (cols["step"], cols["lr"]) if c not in df.columns]
    if missing:
        raise CurveError(f"{path}: no column {missing}; columns present: {list(df.columns)}")
    steps = pd.to_numeric(df[cols["step"]], errors="coerce").to_numpy()
    lr = pd.to_numeric(df[cols["lr"]], errors="coerce").to_numpy()
    expect = np.arange(len(df))
    off = np.flatnonzero(steps != expect)
    if off.size:
        i = int(off[0])
        prev = steps[i - 1] if i else None
        why = "goes backwards" if prev is not None and steps[i] <= prev else "leaves a gap"
        raise CurveError(
            f"{path}, row {i + 2}: step {steps[i]} {why} (after {prev}); the file needs one row "
            f"per optimiser step, steps 0, 1, 2, ... in order"
        )
    bad = np.flatnonzero(~np.isfinite(lr) | (lr < 0))
    if bad.size:
        i = int(bad[0])
        raise CurveError(
            f"{path}, row {i + 2} (step {i}): lr is {float(lr[i])}; every step needs "
            f"a finite lr >= 0"
        )


def read_curve(path: str | Path, columns: Mapping[str, str] | None = None) -> Curve:
    """A curve from a CSV with ``step``, ``lr`` and ``loss`` (names mappable via ``columns``):
    ``lr`` on every optimiser step from 0, ``loss`` where logged (empty elsewhere)."""
    path = Path(path)
    cols = {"step": "step", "lr": "lr", "loss": "loss", **(columns or {})}
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])  # only empty is missing
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CurveError(f"{path}: cannot read as CSV ({err})") from None
    _check_rows(path, df, cols)
    if cols["loss"] not in df.columns:
        raise CurveError(f"{path}: no column {cols['loss']!r}; columns: {list(df.columns)}")
    loss = pd.to_numeric(df[cols["loss"]], errors="coerce").to_numpy()
    given = df[cols["loss"]].notna().to_numpy()
    bad = np.flatnonzero(given & ~(np.isfinite(loss) & (loss > 0)))
    if bad.size:
        i = int(bad[0])
        raise CurveError(
            f"{path}, row {i + 2} (step {i}): loss {float(loss[i])} is not a finite "
            f"number > 0 (leave it empty where no loss was logged)"
        )
    steps = np.flatnonzero(given)
    return Curve(path.stem, df[cols["lr"]].to_numpy(float), steps, loss[steps], str(path))


def read_reference_curve(path: str | Path) -> Curve:
    """A multi-power-law reference curve (logged rows only): its per-step schedule rebuilt
    from the file name, checked against the logged ``lr`` column."""
    path = Path(path)
    df = pd.read_csv(path)
    lr = np.array(reference_schedule(path.stem).lrs())
    steps = df["step"].to_numpy(int)
    if steps.max() >= lr.size:
        raise CurveError(f"{path}: step {steps.max()} beyond the schedule's {lr.size} steps")
    off = np.flatnonzero(~np.isclose(lr[steps], df["lr"].to_numpy(float), rtol=1e-9, atol=0))
    if off.size:
        i = int(off[0])
        raise CurveError(
            f"{path}, row {i + 2}: logged lr {df['lr'].iloc[i]} differs from the schedule's "
            f"{lr[steps[i]]} at step {steps[i]}"
        )
    return Curve(path.stem, lr, steps, df["loss"].to_numpy(float), str(path))


def write_curve(curve: Curve, path: str | Path) -> Path:
    """Write ``curve`` as an external curve CSV (``read_curve``'s format): one row per optimiser
    step from 0 with its ``lr``, ``loss`` where logged and empty elsewhere."""
    path = Path(path)
    loss = np.full(curve.lr.size, np.nan)
    loss[curve.steps] = curve.loss
    frame = pd.DataFrame({"step": np.arange(curve.lr.size), "lr": curve.lr, "loss": loss})
    frame.to_csv(path, index=False, na_rep="")  # floats as repr: read back bit for bit
    return path


def reference_to_csv(src: str | Path, out_dir: str | Path) -> list[Path]:
    """The multi-power-law reference curve file ``src`` (or every ``*.csv`` in the folder
    ``src``) in the external format, under ``out_dir`` with the same names: the per-step LR
    rebuilt from the README's schedules, the loss at the logged steps."""
    src, out_dir = Path(src), Path(out_dir)
    files = sorted(src.glob("*.csv")) if src.is_dir() else [src] if src.is_file() else []
    if not files:
        raise CurveError(f"{src}: no reference curve files (*.csv)")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_curve(read_reference_curve(f), out_dir / f.name) for f in files]


def curve_table(curves: Sequence[Curve]) -> pd.DataFrame:
    """One row per logged step of every curve: ``curve`` (1-based index), ``name``, ``step``,
    ``loss`` -- the data ``fit`` takes for a law made by ``multipower``/``tissue`` of ``curves``."""
    for c in curves:
        if np.isfinite(c.loss).sum() < 2:
            raise CurveError(
                f"{c.source or c.name}: {np.isfinite(c.loss).sum()} logged loss(es); a curve "
                f"needs at least 2"
            )
    return pd.concat(
        [
            pd.DataFrame({"curve": i + 1, "name": c.name, "step": c.steps, "loss": c.loss})
            for i, c in enumerate(curves)
        ],
        ignore_index=True,
    )


# ----------------------------------------------------------------------------- the laws

# Elements of one (starts x changes x logged steps) block: small enough to stay in cache.
BLOCK_ELEMENTS = 1 << 15


@dataclass(frozen=True)
class _Pairs:
    """The (change, logged step) pairs that make up the loss drop, sorted by logged step.

    A pair is either one LR change k <= t with its weight eta_{k-1} - eta_k, or a skeleton
    change of a box of changes far from t, weighted so that the box's sum is interpolated
    through its skeleton (``_skeleton``); nearby changes always enter one by one.
    """

    row: np.ndarray  # (q,) index of the logged step (into the plan's sorted rows)
    change: np.ndarray  # (q,) index of the change into change_log_eta
    change_log_eta: np.ndarray  # (u,) log(eta_k / lr_ref) of the distinct changes used
    gap: np.ndarray  # (q,) S_k(t) = P(t) - P(k-1)
    weight: np.ndarray  # (q,) eta_{k-1} - eta_k, or the skeleton weight
    weight_log_eta: np.ndarray  # (q,) weight * log(eta_k / lr_ref)
    weight_sum: np.ndarray  # (m,) sum of the weights of each logged step


@dataclass(frozen=True)
class _CurvePlan:
    """The parameter-free arrays of one curve at the logged steps asked for."""

    rows: np.ndarray  # (m,) positions of this curve's rows in the columns, sorted by step
    area: np.ndarray  # (m,) P(t): the schedule's area up to and including step t
    anneal: np.ndarray  # (m,) Tissue's S2(t)
    d: np.ndarray  # (K,) eta_{k-1} - eta_k at the steps k after the peak where the LR changes
    log_eta: np.ndarray  # (K,) log(eta_k / lr_ref) there
    area_before: np.ndarray  # (K,) P(k-1)
    first_row: np.ndarray  # (K,) index into rows of the first logged step t >= k
    pairs: _Pairs | None = None  # the compressed pairs (None: the dense exact evaluation)


def _plan_curve(curve: Curve, rows: np.ndarray, steps: np.ndarray, law: CurveLaw) -> _CurvePlan:
    """Prefix sums and LR changes of ``curve`` for the logged ``steps`` (of the ``rows``);
    with the law's ``tol`` > 0 also the compressed pairs of the loss drop."""
    order = np.argsort(steps, kind="stable")
    rows, t = rows[order], steps[order].astype(np.int64)
    if t.size and (t[0] < 0 or t[-1] >= curve.lr.size or np.any(t != steps[order])):
        raise CurveError(
            f"curve {curve.name!r}: steps must be integers in 0..{curve.lr.size - 1}; got "
            f"{steps[order][[0, -1]].tolist()}"
        )
    lr = curve.lr
    area = np.cumsum(lr)
    diff = np.zeros_like(lr)
    # With warmup_drop, every change from step 1 on enters (the warmup's rises as negative
    # drops); otherwise only those after the peak.
    first = 1 if law.warmup_drop else curve.peak_step + 1
    diff[first:] = lr[first - 1 : -1] - lr[first:]
    k = np.flatnonzero(diff)
    zero = k[lr[k] <= 0]
    if zero.size:
        raise CurveError(
            f"curve {curve.name!r}: lr changes to 0 at step {zero[0]}; the loss drop needs "
            f"lr > 0 at every change it sums (without warmup_drop it sums only after the peak)"
        )
    # Tissue's momentum: m_i = decay m_{i-1} + diff_i, summed up to t; with a decay window,
    # each curve's decay makes its window 1/(1 - decay) that fraction of its own steps
    decay = law.decay
    if law.decay_window > 0:
        decay = 1.0 - 1.0 / max(law.decay_window * lr.size, 1.0)
    anneal = np.cumsum(lfilter([1.0], [1.0, -decay], diff))
    plan = _CurvePlan(
        rows=rows,
        area=area[t],
        anneal=anneal[t],
        d=diff[k],
        log_eta=np.log(lr[k] / law.lr_ref),
        area_before=area[k - 1],
        first_row=np.searchsorted(t, k),
    )
    if law.tol <= 0:
        return plan
    return _CurvePlan(**{**plan.__dict__, "pairs": _pairs(plan, k, t, law.tol)})


# Far-field compression of the loss drop. A box of consecutive changes whose distance (in LR
# area) to the logged step is at least FAR_RATIO times its own width is summed through
# SKELETON of its changes: the summand is a smooth function of P(k-1) along the box (its
# singularities lie at or beyond P(t)), so interpolating it at near-Chebyshev changes
# converges geometrically (error ~(3.5 + sqrt(11.25))^-12 ~ 1e-10 at worst, far less for
# farther steps). Every box is checked against its exact sum on test kernels (to ``tol``)
# before it is used; one that fails is split further, down to changes summed one by one.
# On the published cosine_24000 curve: 41,598 pairs instead of 1,867,234.
SKELETON, LEAF, FAR_RATIO = 12, 40, 1.25
# (C, gamma, beta) of the test kernels: the corners of the range the laws are fitted over.
_CHECK = [(c, g, b) for c in (10.0, 1e4) for g in (0.2, 1.5) for b in (0.2, 1.5)]


def _skeleton(
    plan: _CurvePlan, lo: int, hi: int, tol: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """(changes, weights) interpolating the sum over changes lo..hi-1 for far logged steps;
    None where the box is too small or the interpolation misses ``tol`` on the test kernels.

    The interpolation runs in P(k-1) or, failing that, in log P(k-1): near the start of a
    warmup from 0 the summand is a power of P(k-1) (eta_k^-gamma with eta_k ~ sqrt(P)), singular
    at P = 0 but smooth in log P, so those boxes compress too instead of splitting to leaves.
    """
    if hi - lo < 3 * SKELETON:
        return None
    p, d = plan.area_before[lo:hi], plan.d[lo:hi]
    gap = p[-1] + FAR_RATIO * (p[-1] - p[0]) - p  # S_k(t) at the nearest far logged step
    log_eta = plan.log_eta[lo:hi]
    scale = np.abs(d).sum()
    kernels = [(1.0 + c * np.exp(-g * log_eta) * gap) ** -b for c, g, b in _CHECK]
    with np.errstate(divide="ignore"):
        variables = (p, np.log(p)) if p[0] > 0 else (p,)
    for v in variables:
        mid, half = 0.5 * (v[0] + v[-1]), 0.5 * (v[-1] - v[0])
        cheb = mid - half * np.cos((2 * np.arange(SKELETON) + 1) * np.pi / (2 * SKELETON))
        idx = np.unique(np.clip(np.searchsorted(v, cheb), 0, hi - lo - 1))
        if idx.size < SKELETON or half <= 0:
            continue
        nodes, x = (v[idx] - mid) / half, (v - mid) / half
        bary = 1.0 / np.prod(nodes[:, None] - nodes[None, :] + np.eye(idx.size), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            basis = bary[None, :] / (x[:, None] - nodes[None, :])  # (box, m)
            basis /= basis.sum(axis=1, keepdims=True)
        exact = x[:, None] == nodes[None, :]
        hit = exact.any(axis=1)
        basis[hit] = exact[hit]
        weights = d @ basis
        if all(abs(d @ f - weights @ f[idx]) <= tol * scale for f in kernels):
            return lo + idx, weights
    return None


def _pairs(plan: _CurvePlan, k: np.ndarray, t: np.ndarray, tol: float) -> _Pairs:
    """The pairs of every logged step: nearby changes one by one, far boxes by skeleton."""
    skeletons: dict[tuple[int, int], tuple | None] = {}
    src, row, weight = [], [], []

    def visit(lo: int, hi: int, j: int) -> None:
        if k[lo] > t[j]:
            return
        width = plan.area_before[hi - 1] - plan.area_before[lo]
        if k[hi - 1] <= t[j] and plan.area[j] - plan.area_before[hi - 1] >= FAR_RATIO * width:
            if (lo, hi) not in skeletons:
                skeletons[lo, hi] = _skeleton(plan, lo, hi, tol)
            if skeletons[lo, hi] is not None:
                idx, w = skeletons[lo, hi]
                src.append(idx), row.append(np.full(idx.size, j)), weight.append(w)
                return
        if hi - lo <= LEAF:
            idx = np.arange(lo, lo + int(np.searchsorted(k[lo:hi], t[j], side="right")))
            src.append(idx), row.append(np.full(idx.size, j)), weight.append(plan.d[idx])
            return
        mid = (lo + hi) // 2
        visit(lo, mid, j)
        visit(mid, hi, j)

    for j in range(t.size):
        if k.size:
            visit(0, k.size, j)
    src_a = np.concatenate(src) if src else np.zeros(0, int)
    row_a = np.concatenate(row) if row else np.zeros(0, int)
    w_a = np.concatenate(weight) if weight else np.zeros(0)
    used, change = np.unique(src_a, return_inverse=True)
    return _Pairs(
        row=row_a,
        change=change.reshape(-1),
        change_log_eta=plan.log_eta[used],
        gap=plan.area[row_a] - plan.area_before[src_a],
        weight=w_a,
        weight_log_eta=w_a * plan.log_eta[src_a],
        weight_sum=np.bincount(row_a, weights=w_a, minlength=t.size),
    )


def _loss_drop_pairs(theta: np.ndarray, pairs: _Pairs, m: int) -> tuple[np.ndarray, ...]:
    """The sums of ``_loss_drop`` over the compressed pairs."""
    s_count = theta.shape[0]
    sums = np.zeros((4, s_count, m))
    c, beta, gamma = theta[:, 4:5], theta[:, 5:6], theta[:, 6:7]
    # C eta^-gamma once per change (a change enters ~4 pairs): one exp per change, not per pair
    coef = np.exp(c - gamma * pairs.change_log_eta[None, :])  # (S, u)
    step = max(1, BLOCK_ELEMENTS // s_count)
    for a in range(0, pairs.row.size, step):
        sl = slice(a, a + step)
        r = pairs.row[sl]
        seg = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        y = coef[:, pairs.change[sl]]  # (S, q)
        y *= pairs.gap[sl]
        log_x = np.log1p(y)
        e = np.multiply(log_x, -beta)
        np.exp(e, out=e)
        np.multiply(log_x, e, out=log_x)
        y /= y + 1.0
        y *= e
        sums[0][:, r[seg]] += np.add.reduceat(e * pairs.weight[sl], seg, axis=1)
        sums[1][:, r[seg]] += np.add.reduceat(log_x * pairs.weight[sl], seg, axis=1)
        sums[2][:, r[seg]] += np.add.reduceat(y * pairs.weight[sl], seg, axis=1)
        sums[3][:, r[seg]] += np.add.reduceat(y * pairs.weight_log_eta[sl], seg, axis=1)
    return pairs.weight_sum[None, :] - sums[0], sums[1], sums[2], sums[3]


def _loss_drop(theta: np.ndarray, plan: _CurvePlan) -> tuple[np.ndarray, ...]:
    """MPL sums over the LR changes at the plan's steps, each (S, m): sum d G, sum d E log x,
    sum d E (1 - 1/x), sum d log(eta) E (1 - 1/x), with x = 1 + C eta^-gamma S_k(t),
    E = x^-beta, G = 1 - E (pairs with k > t have S_k(t) = 0, so x = 1 and G = 0 there)."""
    s_count, m = theta.shape[0], plan.area.size
    if plan.pairs is not None:
        return _loss_drop_pairs(theta, plan.pairs, m)
    s_g, s_el, s_r = np.zeros((s_count, m)), np.zeros((s_count, m)), np.zeros((s_count, 2, m))
    c, beta, gamma = theta[:, 4:5], theta[:, 5:6, None], theta[:, 6:7]
    k_total, k0 = plan.d.size, 0
    while k0 < k_total:
        j0 = int(plan.first_row[k0])
        k1 = min(k_total, k0 + max(1, BLOCK_ELEMENTS // max(1, s_count * (m - j0))))
        sl = slice(k0, k1)
        gap = np.maximum(plan.area[None, j0:] - plan.area_before[sl, None], 0.0)  # (Kc, w)
        y = np.exp(c - gamma * plan.log_eta[None, sl])[:, :, None] * gap  # (S, Kc, w)
        log_x = np.log1p(y)
        e = np.multiply(log_x, -beta)
        np.exp(e, out=e)
        d = plan.d[sl]
        s_g[:, j0:] += d.sum() - d @ e
        np.multiply(e, log_x, out=log_x)
        s_el[:, j0:] += d @ log_x
        np.divide(y, y + 1.0, out=y)
        np.multiply(y, e, out=y)
        s_r[:, :, j0:] += np.stack([d, d * plan.log_eta[sl]]) @ y
        k0 = k1
    return s_g, s_el, s_r[:, 0], s_r[:, 1]


def _mpl_value_jac(theta: np.ndarray, plan: _CurvePlan) -> tuple[np.ndarray, np.ndarray]:
    """MPL loss (S, m) and its Jacobian (S, m, 7) w.r.t. the log-space parameters."""
    l0, a, alpha, b, _, beta, _ = (theta[:, i : i + 1] for i in range(7))
    log_area = np.log(plan.area)[None, :]
    power = np.exp(a - alpha * log_area)  # A P^-alpha
    big_b = np.exp(b)
    s_g, s_el, s_r, s_rl = _loss_drop(theta, plan)
    loss = np.exp(l0) + power - big_b * s_g
    jac = np.stack(
        [
            np.broadcast_to(np.exp(l0), loss.shape),
            power,
            -power * log_area,
            -big_b * s_g,
            -big_b * beta * s_r,
            -big_b * s_el,
            big_b * beta * s_rl,
        ],
        axis=-1,
    )
    return loss, jac


def _tissue_value_jac(theta: np.ndarray, plan: _CurvePlan) -> tuple[np.ndarray, np.ndarray]:
    """Tissue loss (S, m) and its Jacobian (S, m, 4) w.r.t. the log-space parameters."""
    l0, a, alpha, c = (theta[:, i : i + 1] for i in range(4))
    log_area = np.log(plan.area)[None, :]
    power = np.exp(a - alpha * log_area)
    drop = np.exp(c) * plan.anneal[None, :]
    loss = np.exp(l0) + power - drop
    jac = np.stack(
        [np.broadcast_to(np.exp(l0), loss.shape), power, -power * log_area, -drop], axis=-1
    )
    return loss, jac


ValueJac = Callable[[np.ndarray, _CurvePlan], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CurveLaw(Law):
    """A law of whole loss curves, bound to its curves; columns ``curve`` (1-based) and ``step``.

    ``log_predict_and_jac(theta (S, P), cols) -> (log loss (S, n), Jacobian (S, n, P))`` is the
    analytic value and gradient (the hook a fitter may call directly).
    """

    curves: tuple[Curve, ...] = ()
    decay: float = 0.999  # Tissue's momentum factor lambda (a setting, not fitted)
    # > 0: Tissue's lambda per curve, 1 - 1/(decay_window x its steps), in place of decay
    decay_window: float = 0.0
    tol: float = 0.0  # loss-drop compression tolerance (0: every change one by one)
    warmup_drop: bool = False  # the loss drop sums the warmup's changes too (see multipower)
    start_stride: int = 1  # fit runs the starts on every k-th logged step (see fit's stride)
    # The LR that log-space c refers to: c = log C - gamma log lr_ref, so that C eta^-gamma =
    # e^c (eta / lr_ref)^-gamma; c and gamma are then nearly uncorrelated (with lr_ref = 1 they
    # move together along c + gamma log eta ~ const, which slows every optimiser).
    lr_ref: float = 1.0
    value_jac: ValueJac | None = None
    _plans: dict = field(default_factory=dict, compare=False, repr=False)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def labels(self) -> dict[str, str]:
        """LaTeX label of each natural parameter."""
        return {n: CURVE_TEX_LABELS.get(n, rf"\texttt{{{n}}}") for n in self.natural_names}

    def plans(self, cols: Mapping[str, np.ndarray]) -> list[_CurvePlan]:
        """The per-curve plans of these columns (computed once per distinct columns)."""
        curve_col = np.asarray(cols["curve"], float)
        step_col = np.asarray(cols["step"], float)
        key = (curve_col.tobytes(), step_col.tobytes())
        if key not in self._plans:
            ids = curve_col.astype(int)
            bad = np.flatnonzero((ids != curve_col) | (ids < 1) | (ids > len(self.curves)))
            if bad.size:
                raise CurveError(
                    f"column 'curve' has {float(curve_col[bad[0]])}; valid: 1..{len(self.curves)} "
                    f"(the curves this law was made for)"
                )
            self._plans[key] = [
                _plan_curve(self.curves[i - 1], rows, step_col[rows], self)
                for i in np.unique(ids)
                for rows in [np.flatnonzero(ids == i)]
            ]
        return self._plans[key]

    def log_predict_and_jac(
        self, theta: np.ndarray, cols: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log loss (S, n) and its exact Jacobian (S, n, P) at real parameters ``theta``."""
        theta = np.atleast_2d(np.asarray(theta, float))
        n = np.asarray(cols["step"]).size
        lp = np.empty((theta.shape[0], n))
        jac = np.empty((theta.shape[0], n, theta.shape[1]))
        with np.errstate(all="ignore"):
            for plan in self.plans(cols):
                loss, j = self.value_jac(theta, plan)
                lp[:, plan.rows] = np.where(loss > 0, np.log(loss), np.nan)
                jac[:, plan.rows] = j / loss[..., None]
        return lp, jac

    def _dual(self, theta: np.ndarray, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log loss; for complex theta, f(Re) + i J(Re) Im (the complex step, exactly)."""
        theta = np.asarray(theta)
        real = np.ascontiguousarray(theta.real, dtype=float)
        key = (real.tobytes(), np.asarray(cols["step"], float).tobytes())
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = self.log_predict_and_jac(real.reshape(-1, real.shape[-1]), cols)
            with self._lock:
                if len(self._cache) >= 8:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = hit
        lp, jac = hit
        lp = lp.reshape(*real.shape[:-1], -1)
        if not np.iscomplexobj(theta):
            return lp
        tangent = np.einsum("snp,sp->sn", jac, theta.imag.reshape(-1, theta.shape[-1]))
        return lp + 1j * tangent.reshape(lp.shape)


def _log_coefs(names: tuple[str, ...], logs: tuple[str, ...]):
    """Natural-unit converters: exp() of the log coefficients ``logs`` (``l0`` -> ``L0``)."""
    natural_of = {n: (n[0].upper() + n[1:]) if n in logs else n for n in names}

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(over="ignore"):
            return {
                natural_of[n]: np.exp(theta[..., i]) if n in logs else theta[..., i]
                for i, n in enumerate(names)
            }

    def from_natural(params: Mapping[str, float]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.array(
                [
                    np.log(float(params[natural_of[n]])) if n in logs else float(params[n])
                    for n in names
                ]
            )

    return natural, from_natural, tuple(natural_of[n] for n in names)


# LaTeX labels of the curve laws' parameters not in analysis.laws.TEX_LABELS.
CURVE_TEX_LABELS = {**TEX_LABELS, "L0": "$L_0$", "C": "$C$", "gamma": r"$\gamma$"}

# Starts of the MPL fit: losses of a few nats, LR areas of 0.1-10 (LR ~1e-4, 1e3-1e5 steps).
# Eight starts: on the published curves 16 of a 32-start grid (a and alpha at two values each)
# reached the same optimum, and every evaluation sums ~160k (change, step) pairs.
MPL_GRID = {
    "l0": (np.log(2.0), np.log(3.0)),
    "a": (np.log(0.5),),
    "alpha": (0.5,),
    "b": (np.log(300.0), np.log(3000.0)),
    "c": (np.log(100.0), np.log(1000.0)),  # log C + gamma log(peak LR): see CurveLaw.lr_ref
    "beta": (0.5,),
    "gamma": (0.6,),
}
# The MPL's starts run on every 4th logged step: on the published curves they reach the same
# optima as on all steps, and the cost of an evaluation is proportional to the logged steps.
MPL_START_STRIDE = 4
TISSUE_GRID = {
    "l0": (np.log(1.5), np.log(2.5), np.log(3.5)),
    "a": (np.log(0.3), np.log(1.0)),
    "alpha": (0.3, 0.6, 1.0),
    "c": (np.log(0.03), np.log(0.3), np.log(3.0)),
}


def multipower(
    curves: Sequence[Curve],
    grid: Mapping[str, tuple[float, ...]] | None = None,
    tol: float = 1e-10,
    warmup_drop: bool = True,
) -> CurveLaw:
    """The multi-power law (Luo et al. 2025) bound to ``curves``; ``tol`` bounds the far-field
    compression of the loss drop relative to the summed LR decrease (0: none, every change
    summed one by one); ``warmup_drop``: the loss drop sums the warmup's changes too, as the
    paper's code does (False: only the changes after the peak)."""
    params = ("l0", "a", "alpha", "b", "c", "beta", "gamma")
    log_natural, log_from_natural, names = _log_coefs(params, ("l0", "a", "b", "c"))
    lr_ref = max(float(np.max(c.lr)) for c in curves) if curves else 1.0

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        out = log_natural(theta)
        with np.errstate(over="ignore"):
            out["C"] = np.exp(theta[..., 4] + theta[..., 6] * np.log(lr_ref))
        return out

    def from_natural(p: Mapping[str, float]) -> np.ndarray:
        theta = log_from_natural(p)
        theta[4] -= theta[6] * np.log(lr_ref)
        return theta

    law = CurveLaw(
        name="multipower",
        formula="L = L0 + A (S1 + S_W)^-alpha - B sum_k (eta_{k-1} - eta_k) "
        "(1 - (C eta_k^-gamma S_k(t) + 1)^-beta)",
        params=params,
        variables=("curve", "step"),
        log_predict=lambda theta, cols: law._dual(theta, cols),
        natural=natural,
        from_natural=from_natural,
        grid=dict(grid or MPL_GRID),
        tex=r"$L = L_0 + A(S_1+S_W)^{-\alpha} - \mathrm{LD}(t)$",
        natural_names=names,
        curves=tuple(curves),
        tol=float(tol),
        warmup_drop=bool(warmup_drop),
        start_stride=MPL_START_STRIDE,
        lr_ref=lr_ref,
        value_jac=_mpl_value_jac,
    )
    return law


def tissue(
    curves: Sequence[Curve],
    decay: float = 0.999,
    grid: Mapping[str, tuple[float, ...]] | None = None,
    warmup_drop: bool = False,
    decay_window: float = 0.0,
) -> CurveLaw:
    """The LR-annealing law (Tissue et al. 2024) bound to ``curves``, momentum ``decay``;
    ``warmup_drop``: the annealing area counts the warmup's rises (negative) too;
    ``decay_window`` > 0: each curve's lambda instead makes its momentum window 1/(1 - lambda)
    that fraction of the curve's own steps (1 - 1/(decay_window x T))."""
    if not 0 <= decay < 1:
        raise ValueError(f"tissue decay (lambda) must be in [0, 1), got {decay}")
    if not decay_window >= 0:
        raise ValueError(f"tissue decay_window must be >= 0 (0: use decay), got {decay_window}")
    momentum = (
        f", lambda = 1 - 1/({decay_window:g} T) for a curve of T steps" if decay_window > 0 else ""
    )
    params = ("l0", "a", "alpha", "c")
    natural, from_natural, names = _log_coefs(params, ("l0", "a", "c"))
    law = CurveLaw(
        name="tissue",
        formula="L = L0 + A S1^-alpha - C S2, S2 = sum_i m_i, m_i = lambda m_{i-1} + "
        f"(eta_{{i-1}} - eta_i){momentum}",
        params=params,
        variables=("curve", "step"),
        log_predict=lambda theta, cols: law._dual(theta, cols),
        natural=natural,
        from_natural=from_natural,
        grid=dict(grid or TISSUE_GRID),
        tex=r"$L = L_0 + A S_1^{-\alpha} - C S_2$",
        natural_names=names,
        curves=tuple(curves),
        decay=float(decay),
        decay_window=float(decay_window),
        warmup_drop=bool(warmup_drop),
        value_jac=_tissue_value_jac,
    )
    return law


CURVE_LAWS: dict[str, Callable[..., CurveLaw]] = {"multipower": multipower, "tissue": tissue}
"""The laws of whole curves by name (``scaling-fit --law``): each binds a law to its curves."""


# ----------------------------------------------------------------------------- checks and use


def multipower_reference(
    params: Mapping[str, float], lr: np.ndarray, steps: Sequence[int], warmup_drop: bool = True
) -> np.ndarray:
    """MPL loss at ``steps`` by the direct sum over every step k <= t (from step 1 with
    ``warmup_drop``, else from the peak), each S_k(t) summed afresh (no prefix sums, no
    skipping of unchanged steps): the slow reference for checks."""
    lr = np.asarray(lr, float)
    first = 1 if warmup_drop else int(np.argmax(lr)) + 1
    out = []
    for t in steps:
        area = lr[: t + 1].sum()
        k = np.arange(first, t + 1)
        s_k = np.cumsum(lr[t : first - 1 : -1])[::-1]  # S_k(t) for k = first..t, from t back
        x = params["C"] * lr[k] ** -params["gamma"] * s_k
        drop = params["B"] * np.sum((lr[k - 1] - lr[k]) * (1.0 - (x + 1.0) ** -params["beta"]))
        out.append(params["L0"] + params["A"] * area ** -params["alpha"] - drop)
    return np.array(out)


def held_out_rows(table: pd.DataFrame, held_out: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of ``table`` (from ``curve_table``) in the held-out curves."""
    names = list(dict.fromkeys(table["name"]))
    unknown = [h for h in held_out if h not in names]
    if unknown:
        raise CurveError(f"held-out curve(s) {unknown} not among the curves {names}")
    if len(set(held_out)) >= len(names):
        raise CurveError(f"holding out {list(held_out)} leaves no curve to fit; curves: {names}")
    return table["name"].isin(list(held_out)).to_numpy()


def block_groups(table: pd.DataFrame, block: int = 10) -> np.ndarray:
    """Bootstrap groups: runs of ``block`` consecutive logged steps of one curve.

    Resampling whole curves is useless with the few curves a curve law is fitted on (three
    curves give ten distinct resamples, some without any annealing, where B, C, beta and gamma
    are not identified); resampling single rows ignores that residuals of neighbouring steps
    are correlated. Blocks of consecutive steps keep that correlation and keep every schedule
    in every resample in expectation.
    """
    if block < 1:
        raise ValueError(f"bootstrap block must be >= 1 logged step, got {block}")
    pos = table.groupby("curve").cumcount().to_numpy()
    return table["curve"].to_numpy(int) * 1_000_000 + pos // block


def curve_scores(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``r2``, ``mean_rel_err`` and ``max_rel_err`` of a predicted against an observed curve."""
    y, p = np.asarray(observed, float), np.asarray(predicted, float)
    rel = np.abs(p - y) / y
    return {
        "r2": float(1.0 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)),
        "mean_rel_err": float(rel.mean()),
        "max_rel_err": float(rel.max()),
    }


def per_curve(
    law: CurveLaw, theta: np.ndarray, table: pd.DataFrame, held_out: Sequence[str] = ()
) -> dict[str, dict]:
    """Per curve of ``table``: ``held_out`` and the scores of ``law`` at ``theta``."""
    pred = law.predict(theta, {v: table[v].to_numpy(float) for v in law.variables})
    out = {}
    for name, rows in table.groupby("name", sort=False).indices.items():
        out[name] = {
            "held_out": name in held_out,
            **curve_scores(table["loss"].iloc[rows], pred[rows]),
        }
    return out
