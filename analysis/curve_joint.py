"""Joint curve laws across model sizes: the multi-power law's parameters as functions of N.

A per-size multi-power law (``analysis.curves.multipower``) has 7 parameters for each model
size. A joint form folds the curves of several sizes into one L(N, schedule) surface: each
size's MPL parameters are a function of ``x = log(N / N_ref)`` (``N_ref`` the geometric mean of
the sizes, a constant of the data, not fitted), and the remaining parameters are shared:

- ``multipower_joint`` (10 parameters, the default joint form): the three coefficients are
  power laws in N, ``L0(N) = L0 (N/N_ref)^-p_L0``, ``A(N) = A (N/N_ref)^-p_A``,
  ``B(N) = B (N/N_ref)^-p_B``; alpha, C, beta and gamma are shared;
- ``multipower_l0a`` (9): L0 and A power laws in N; B, alpha, C, beta, gamma shared;
- ``multipower_l0`` (8): only L0 a power law in N; everything else shared;
- ``multipower_chinchilla`` (9): Chinchilla's terms with D replaced by the schedule-aware area,
  ``L = E + A_N (N/N_ref)^-alpha_N + A (P(t) tokens_per_step)^-alpha - LD(t)``: the irreducible
  loss E and a size term, one shared data term, one shared loss drop.

A curve may carry its tokens per optimiser step (``tokens_per_step``): the data term then sees
``P(t) x tokens_per_step / tps_ref`` (tokens at unit LR), so sizes trained with different batches
share one A; with one batch size it changes nothing.

Every form maps the joint parameters (S, P) to each size's MPL parameters (S, 7) with an exact
Jacobian (S, 7, P); the joint law's value and Jacobian are the MPL's (its fast exact sums and
analytic Jacobian, ``CurveLaw.log_predict_and_jac``) chained through that map. It is a
``analysis.laws.Law`` over the columns ``curve`` and ``step``, fitted by ``analysis.fit.fit``.

Choice of form, by held-out error on the published curves of Luo et al. (25M and 100M, nine
schedules each): fitted on ``cosine_24000``, ``constant_24000`` and ``wsdcon_9`` of both sizes
at once, each form predicts the six other schedules of each size (mean over the six held-out
curves of a size; the per-size MPL fitted on the same three curves per size for reference;
each joint fit started from the per-size optima; measured with the MPL of commit 2d303a8):

  form                    params   25M R^2 / mean rel. err   100M R^2 / mean rel. err   both
  per-size multipower       14      0.99764 / 0.137%           0.99712 / 0.165%          0.151%
  multipower_joint          10      0.99612 / 0.163%           0.99780 / 0.145%          0.154%
  multipower_l0a             9      0.99189 / 0.255%           0.99797 / 0.156%          0.206%
  multipower_l0              8      0.98825 / 0.331%           0.99835 / 0.155%          0.243%
  multipower_chinchilla      9      0.98825 / 0.331%           0.99835 / 0.155%          0.243%

``multipower_joint`` is the default joint form: with 4 fewer parameters it predicts the unseen
schedules as well as two separate fits (0.154% against 0.151% over the twelve curves), while
sharing B as well (``multipower_l0a``) or A and B (``multipower_l0``) raises 25M's error by
56% and 103%: the two sizes' loss drops differ (the joint fit gives B(N) ~ N^0.12). With two sizes the
Chinchilla form reaches the same optimum as ``multipower_l0`` (E + A_N N^-alpha_N has two
values to meet, as L0 N^-p does): its size term needs three or more sizes to mean anything.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from analysis.curves import CURVE_LAWS, MPL_GRID, Curve, CurveError, CurveLaw, multipower
from analysis.laws import Law

# MPL parameter order (analysis.curves.multipower): the per-size vector every form maps onto.
MPL_PARAMS = ("l0", "a", "alpha", "b", "c", "beta", "gamma")
_MPL = {p: i for i, p in enumerate(MPL_PARAMS)}

# The box of MPL starts (log L0, log A, alpha, log B, c, beta, gamma): where the grids lie.
_BOX = (
    np.array([np.log(0.5), np.log(1e-3), 0.05, np.log(1.0), -10.0, 0.05, 0.0]),
    np.array([np.log(20.0), np.log(1e3), 2.0, np.log(1e5), 15.0, 5.0, 2.0]),
)

# A size label as the model family writes it: 25M, 100k, 1.3B, 2.5e7.
_SIZE = re.compile(r"^(\d+(?:\.\d+)?(?:e\d+)?)([kKMBT]?)$")
_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parse_size(label: str) -> float | None:
    """The parameter count a size label names (``25M`` -> 2.5e7), or None if it names none."""
    m = _SIZE.match(label.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


# ----------------------------------------------------------------------------- forms


@dataclass(frozen=True)
class JointForm:
    """How the joint parameters give one size's MPL parameters.

    ``to_mpl(theta (S, P), x, lt) -> (mpl theta (S, 7), d mpl / d theta (S, 7, P))`` with
    ``x = log(N / N_ref)`` and ``lt = log(tokens_per_step / tps_ref)`` of the size.
    """

    name: str
    formula: str
    tex: str
    params: tuple[str, ...]
    natural_names: tuple[str, ...]
    logs: tuple[str, ...]  # log-space coefficients (exp() gives the natural one)
    to_mpl: Callable[[np.ndarray, float, float], tuple[np.ndarray, np.ndarray]]
    grid: Mapping[str, tuple[float, ...]]


def _power_form(name: str, scaled: tuple[str, ...]) -> JointForm:
    """MPL with the coefficients ``scaled`` (of l0, a, b) power laws in N: ``log K(N) = k -
    p_K x``; the other parameters shared."""
    params: list[str] = []
    for p in MPL_PARAMS:
        params.append(p)
        if p in scaled:
            params.append(f"p_{p}")
    index = {p: i for i, p in enumerate(params)}
    # Constant part of the map: mpl = M @ theta, plus the data term's batch offset -alpha lt.
    base = np.zeros((len(MPL_PARAMS), len(params)))
    for p in MPL_PARAMS:
        base[_MPL[p], index[p]] = 1.0

    def to_mpl(theta: np.ndarray, x: float, lt: float) -> tuple[np.ndarray, np.ndarray]:
        m = base.copy()
        for p in scaled:
            m[_MPL[p], index[f"p_{p}"]] = -x
        m[_MPL["a"], index["alpha"]] -= lt  # A (P tps)^-alpha = A tps^-alpha P^-alpha
        jac = np.broadcast_to(m, (theta.shape[0], *m.shape))
        return theta @ m.T, jac

    logs = ("l0", "a", "b", "c")
    natural = tuple(_natural_name(p, logs) for p in params)
    grid = {p: MPL_GRID[p] for p in MPL_PARAMS} | {f"p_{p}": (0.0,) for p in scaled}
    laws = " ".join(f"{_natural_name(p, logs)}(N) = {_natural_name(p, logs)} (N/N_ref)^-p_"
                    f"{_natural_name(p, logs)};" for p in scaled)  # fmt: skip
    return JointForm(
        name=name,
        formula=f"multipower with {laws} the rest shared",
        tex=r"$L = L_0(N) + A(N)(S_1+S_W)^{-\alpha} - \mathrm{LD}(t; N)$",
        params=tuple(params),
        natural_names=natural,
        logs=logs,
        to_mpl=to_mpl,
        grid=grid,
    )


def _natural_name(p: str, logs: tuple[str, ...]) -> str:
    """``l0`` -> ``L0``, ``a`` -> ``A``, ``p_l0`` -> ``p_L0``; exponents as they are."""
    if p.startswith("p_"):
        return "p_" + _natural_name(p[2:], logs)
    return p[0].upper() + p[1:] if p in logs else p


def _chinchilla_form() -> JointForm:
    """Chinchilla's E + A/N^alpha + B/D^beta with D the schedule-aware area, minus the MPL's
    loss drop: ``L0(N) = E + A_N (N/N_ref)^-alpha_N``; A, alpha and the drop shared."""
    params = ("e", "a_n", "alpha_n", "a", "alpha", "b", "c", "beta", "gamma")
    index = {p: i for i, p in enumerate(params)}
    shared = ("a", "alpha", "b", "c", "beta", "gamma")

    def to_mpl(theta: np.ndarray, x: float, lt: float) -> tuple[np.ndarray, np.ndarray]:
        s = theta.shape[0]
        e = np.exp(theta[:, index["e"]])
        size = np.exp(theta[:, index["a_n"]] - theta[:, index["alpha_n"]] * x)
        l0 = e + size
        mpl = np.empty((s, len(MPL_PARAMS)))
        jac = np.zeros((s, len(MPL_PARAMS), len(params)))
        mpl[:, _MPL["l0"]] = np.log(l0)
        jac[:, _MPL["l0"], index["e"]] = e / l0
        jac[:, _MPL["l0"], index["a_n"]] = size / l0
        jac[:, _MPL["l0"], index["alpha_n"]] = -x * size / l0
        for p in shared:
            mpl[:, _MPL[p]] = theta[:, index[p]]
            jac[:, _MPL[p], index[p]] = 1.0
        mpl[:, _MPL["a"]] -= lt * theta[:, index["alpha"]]
        jac[:, _MPL["a"], index["alpha"]] = -lt
        return mpl, jac

    grid = {
        "e": (np.log(1.5), np.log(2.5)),
        "a_n": (np.log(0.5),),
        "alpha_n": (0.3,),
        **{p: MPL_GRID[p] for p in ("a", "alpha", "b", "c", "beta", "gamma")},
    }
    return JointForm(
        name="multipower_chinchilla",
        formula="L = E + A_N (N/N_ref)^-alpha_N + A (P(t) tps/tps_ref)^-alpha - B sum_k "
        "(eta_{k-1} - eta_k) (1 - (C eta_k^-gamma S_k(t) + 1)^-beta)",
        tex=r"$L = E + A_N (N/N_\mathrm{ref})^{-\alpha_N} + A P^{-\alpha} - \mathrm{LD}(t)$",
        params=params,
        natural_names=("E", "A_N", "alpha_N", "A", "alpha", "B", "C", "beta", "gamma"),
        logs=("e", "a_n", "a", "b", "c"),
        to_mpl=to_mpl,
        grid=grid,
    )


JOINT_FORMS: dict[str, JointForm] = {
    f.name: f
    for f in (
        _power_form("multipower_joint", ("l0", "a", "b")),
        _power_form("multipower_l0a", ("l0", "a")),
        _power_form("multipower_l0", ("l0",)),
        _chinchilla_form(),
    )
}
"""The joint forms by name (``scaling-fit --law <name>``)."""


# ----------------------------------------------------------------------------- the law


@dataclass(frozen=True)
class JointLaw(Law):
    """A joint form bound to curves of several sizes; columns ``curve`` (1-based), ``step``.

    ``log_predict_and_jac(theta (S, P), cols) -> (log loss (S, n), Jacobian (S, n, P))``: the
    per-size MPL's exact value and Jacobian chained through the form's map.
    """

    curves: tuple[Curve, ...] = ()
    sizes: tuple[float, ...] = ()  # N of each curve
    form: JointForm | None = None
    base: CurveLaw | None = None  # the MPL bound to the same curves (common lr_ref)
    n_ref: float = 1.0  # geometric mean of the distinct sizes
    group: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (curves,) size index
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (groups,) log(N / n_ref)
    lt: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (groups,) log(tps / tps_ref)
    start_stride: int = 1  # fit runs the starts on every k-th logged step (as the MPL's)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def size_params(self, theta: np.ndarray) -> dict[float, dict[str, np.ndarray]]:
        """Per distinct size N: its MPL parameters in natural units (L0, A, alpha, ...)."""
        theta = np.atleast_2d(np.asarray(theta, float))
        sizes = sorted(set(self.sizes))
        out = {}
        for g, n in enumerate(sizes):
            mpl, _ = self.form.to_mpl(theta, float(self.x[g]), float(self.lt[g]))
            out[n] = self.base.to_natural(mpl)
        return out

    def log_predict_and_jac(
        self, theta: np.ndarray, cols: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log loss (S, n) and its exact Jacobian (S, n, P) at real parameters ``theta``."""
        theta = np.atleast_2d(np.asarray(theta, float))
        curve = np.asarray(cols["curve"], float)
        step = np.asarray(cols["step"], float)
        ids = curve.astype(int)
        bad = np.flatnonzero((ids != curve) | (ids < 1) | (ids > len(self.curves)))
        if bad.size:
            raise CurveError(
                f"column 'curve' has {float(curve[bad[0]])}; valid: 1..{len(self.curves)} "
                f"(the curves this law was made for)"
            )
        grp = self.group[ids - 1]
        lp = np.empty((theta.shape[0], curve.size))
        jac = np.empty((theta.shape[0], curve.size, theta.shape[1]))
        with np.errstate(all="ignore"):
            for g in np.unique(grp):
                rows = np.flatnonzero(grp == g)
                mpl, dmpl = self.form.to_mpl(theta, float(self.x[g]), float(self.lt[g]))
                sub = {"curve": curve[rows], "step": step[rows]}
                lp_g, jac_g = self.base.log_predict_and_jac(mpl, sub)  # (S, r), (S, r, 7)
                lp[:, rows] = lp_g
                jac[:, rows] = np.einsum("srk,skp->srp", jac_g, dmpl)
        return lp, jac

    def _dual(self, theta: np.ndarray, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log loss; for complex theta, f(Re) + i J(Re) Im (the complex step, exactly)."""
        theta = np.asarray(theta)
        real = np.ascontiguousarray(theta.real, dtype=float)
        key = (
            real.tobytes(),
            np.asarray(cols["curve"], float).tobytes(),
            np.asarray(cols["step"], float).tobytes(),
        )
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


def joint_law(
    name: str,
    curves: Sequence[Curve],
    sizes: Sequence[float] | None = None,
    tokens_per_step: Sequence[float] | None = None,
    grid: Mapping[str, tuple[float, ...]] | None = None,
    warmup_drop: bool = True,
) -> JointLaw:
    """The joint form ``name`` (of ``JOINT_FORMS``) bound to ``curves`` of model sizes
    ``sizes`` (one N per curve) and, optionally, their tokens per optimiser step;
    ``warmup_drop`` as for ``analysis.curves.multipower``."""
    if name not in JOINT_FORMS:
        raise CurveError(f"unknown joint curve law {name!r}; valid: {sorted(JOINT_FORMS)}")
    form = JOINT_FORMS[name]
    if sizes is None or len(sizes) != len(curves):
        given = "none" if sizes is None else f"{len(sizes)}"
        raise CurveError(
            f"joint law {name!r} needs the model size N of every curve: {len(curves)} curves, "
            f"{given} sizes"
        )
    sizes = tuple(float(n) for n in sizes)
    bad = [(c.name, n) for c, n in zip(curves, sizes) if not (np.isfinite(n) and n > 0)]
    if bad:
        raise CurveError(f"curve {bad[0][0]!r} has model size N = {bad[0][1]}; need N > 0")
    tps = np.ones(len(curves)) if tokens_per_step is None else np.asarray(tokens_per_step, float)
    if tps.shape != (len(curves),) or not np.all(np.isfinite(tps) & (tps > 0)):
        raise CurveError(f"tokens_per_step must be one value > 0 per curve; got {tps.tolist()}")
    distinct = sorted(set(sizes))
    if len(distinct) < 2:
        raise CurveError(
            f"joint law {name!r} needs curves of at least 2 model sizes; all {len(curves)} "
            f"have N = {distinct[0]:g} (fit --law multipower for one size)"
        )
    group = np.array([distinct.index(n) for n in sizes])
    per_group = [tps[group == g] for g in range(len(distinct))]
    mixed = [distinct[g] for g, t in enumerate(per_group) if np.ptp(t) > 0]
    if mixed:
        raise CurveError(
            f"curves of size N = {mixed[0]:g} have different tokens per step; a joint law takes "
            f"one batch per size"
        )
    n_ref = float(np.exp(np.mean(np.log(distinct))))
    tps_g = np.array([t[0] for t in per_group])
    base = multipower(curves, warmup_drop=warmup_drop)
    logs = form.logs

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(over="ignore"):
            out = {
                n: np.exp(theta[..., i]) if p in logs else theta[..., i]
                for i, (p, n) in enumerate(zip(form.params, form.natural_names))
            }
            # C in the units of the LR itself (the fit's c is relative to the peak LR)
            gamma = theta[..., form.params.index("gamma")]
            out["C"] = np.exp(theta[..., form.params.index("c")] + gamma * np.log(base.lr_ref))
        return out

    def from_natural(params: Mapping[str, float]) -> np.ndarray:
        theta = np.array(
            [
                np.log(float(params[n])) if p in logs else float(params[n])
                for p, n in zip(form.params, form.natural_names)
            ]
        )
        theta[form.params.index("c")] -= theta[form.params.index("gamma")] * np.log(base.lr_ref)
        return theta

    law = JointLaw(
        name=name,
        formula=form.formula,
        params=form.params,
        variables=("curve", "step"),
        log_predict=lambda theta, cols: law._dual(theta, cols),
        natural=natural,
        from_natural=from_natural,
        grid=dict(grid or form.grid),
        tex=form.tex,
        natural_names=form.natural_names,
        curves=tuple(curves),
        sizes=sizes,
        form=form,
        base=base,
        n_ref=n_ref,
        group=group,
        x=np.log(np.array(distinct) / n_ref),
        lt=np.log(tps_g / np.exp(np.mean(np.log(tps_g)))),
        start_stride=int(getattr(base, "start_stride", 1)),
    )
    return law


def start_from_sizes(law: JointLaw, per_size: Mapping[float, np.ndarray]) -> np.ndarray:
    """A start (P,) of ``law`` from per-size MPL fits (``{N: mpl theta (7,)}``, log space and
    the same lr_ref): the least-squares joint parameters whose map meets them.

    Why: a joint fit from the form's generic grid pays 8 starts x every curve of every size;
    the per-size optima already say where each size's L0, A, B sit, so one start near them
    converges in a fraction of the evaluations.
    """
    sizes = sorted(set(law.sizes))
    if len(per_size) < 2:
        raise CurveError(
            f"a joint start needs per-size fits of >= 2 sizes; have {sorted(per_size)}"
        )
    unknown = [n for n in per_size if n not in sizes]
    if unknown:
        raise CurveError(f"per-size fits of N = {unknown}, not a size of the law's {sizes}")
    sizes = [n for n in sizes if n in per_size]
    group = [sorted(set(law.sizes)).index(n) for n in sizes]
    # A size's own fit may run off along a flat direction (L0 -> 0 with a flat power law on a
    # short curve); the start only has to be in the right basin, so each value is kept in
    # the box the laws' grids span.
    target = np.clip(np.array([np.asarray(per_size[n], float) for n in sizes]), *_BOX)
    form, p = law.form, len(law.params)
    if form.name == "multipower_chinchilla":
        l0 = np.exp(target[:, _MPL["l0"]])
        e = 0.8 * l0.min()  # a floor below every size's L0; the fit moves it
        slope, icept = np.polyfit(law.x[group], np.log(l0 - e), 1)
        shared = target.mean(axis=0)
        theta = np.array([np.log(e), icept, -slope, *(shared[_MPL[q]] for q in law.params[3:])])
        return theta
    # linear forms: mpl_g = M_g theta, stacked over sizes and solved in least squares
    rows = [form.to_mpl(np.zeros((1, p)), float(law.x[g]), float(law.lt[g]))[1][0] for g in group]
    theta, *_ = np.linalg.lstsq(np.vstack(rows), target.ravel(), rcond=None)
    return theta


def _factory(name: str) -> Callable[..., JointLaw]:
    def make(curves: Sequence[Curve], sizes: Sequence[float] | None = None, **kw) -> JointLaw:
        return joint_law(name, curves, sizes, **kw)

    make.__doc__ = f"The joint curve law {name!r} bound to curves and their sizes."
    return make


JOINT_LAWS: dict[str, Callable[..., JointLaw]] = {n: _factory(n) for n in JOINT_FORMS}
"""The joint curve laws by name: each binds its form to curves and one N per curve."""

# `scaling-fit --law` and FitConfig know the curve laws by analysis.curves.CURVE_LAWS.
CURVE_LAWS.update(JOINT_LAWS)
