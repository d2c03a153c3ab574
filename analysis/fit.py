"""One fit(): robust objective on log loss, multi-start L-BFGS over a grid, bootstrap.

The objective is the (optionally weighted, optionally asymmetric) Huber loss of the residuals
``log L_pred - log L_obs``, summed over points, as in Hoffmann et al. 2022 and Besiroglu et al.
2024. All starts of the grid are optimised at once by a batched L-BFGS written in numpy with the
exact gradient (4,500 starts x 5 parameters are one array), the few best distinct optima are
polished by the same optimiser with tight tolerances, and the count of starts that reached the
best optimum is kept.
A law that gives its exact Jacobian (``log_predict_and_jac``, the curve laws) is minimised by a
batched Levenberg-Marquardt on the Gauss-Newton matrix of the Huber loss instead: tens of steps
where L-BFGS takes hundreds, each costing one evaluation of the law. Such a law may also name a
``start_stride``: its starts then run on every k-th point and only the best distinct optima are
polished on all.
The bootstrap runs the same batched optimiser over all resamples at once, each resample warm-
started from the full-data optimum and the best other distinct optima.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.laws import Law, get_law

BLOCK_ELEMENTS = 16_384


class FitError(ValueError):
    """The data cannot be fitted as asked (too few points, bad values, missing columns)."""


@dataclass
class FitResult:
    """The best parameters of one law on one data set, with how the optimiser got there."""

    law: Law
    theta: np.ndarray  # (P,) log-space parameters
    objective: float
    n_points: int
    n_starts: int
    n_best: int  # starts whose optimum is within best_rtol of the best objective
    huber_delta: float
    asymmetry: float = 1.0
    best_rtol: float = 1e-4
    candidates: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # distinct optima
    best_start: np.ndarray | None = None  # the start whose run ended at the best optimum

    @property
    def params(self) -> dict[str, float]:
        """Parameters in natural units (E, A, B, alpha, beta for Chinchilla)."""
        return {k: float(v) for k, v in self.law.to_natural(self.theta).items()}

    def predict(self, cols: Mapping[str, np.ndarray] | pd.DataFrame) -> np.ndarray:
        """Predicted loss at the given data columns."""
        return self.law.predict(
            self.theta, {v: np.asarray(cols[v], float) for v in self.law.variables}
        )


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals ``r`` and its derivative."""
    deriv = np.minimum(np.maximum(r, -delta), delta)
    return deriv * (r - 0.5 * deriv), deriv


def _lse_parts(terms: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """log(sum exp(t)) and, for the softmax, exp(t_i - s) and 1 / sum exp(t - s) (shift s)."""
    ex = [np.exp(t) for t in terms]
    tot = ex[0] + ex[1] if len(ex) > 1 else ex[0].copy()
    for e in ex[2:]:
        tot += e
    lp = np.log(tot)
    bad = ~np.isfinite(lp.sum(axis=1))
    if bad.any():  # overflow or underflow somewhere: shift those rows by the largest term
        sub = [np.broadcast_to(t[bad], (int(bad.sum()), lp.shape[1])) for t in terms]
        mx = np.maximum.reduce(sub)
        ex_b = [np.exp(t - mx) for t in sub]
        tot_b = sum(ex_b)
        lp[bad] = mx + np.log(tot_b)
        ex = [np.broadcast_to(e, lp.shape).copy() for e in ex]
        for e, eb in zip(ex, ex_b):
            e[bad] = eb
        tot = np.broadcast_to(tot, lp.shape).copy()
        tot[bad] = tot_b
    return lp, ex, 1.0 / tot


class Objective:
    """Summed Huber loss of log residuals for a batch of parameter vectors."""

    def __init__(
        self,
        law: Law,
        cols: Mapping[str, np.ndarray],
        loss: np.ndarray,
        delta: float = 1e-3,
        weights: np.ndarray | None = None,
        asymmetry: float = 1.0,
    ):
        self.law, self.cols, self.delta, self.asymmetry = law, cols, float(delta), float(asymmetry)
        self.logy = np.log(np.asarray(loss, dtype=float))
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.design = law.design(cols)
        # A law may give its exact value and Jacobian, ``log_predict_and_jac(theta (S, P), cols)
        # -> (log loss (S, n), Jacobian (S, n, P))``: the gradient is then J^T u, and ``fit``
        # takes Gauss-Newton steps (``batched_lm``) instead of L-BFGS's.
        self.value_jac = getattr(law, "log_predict_and_jac", None) if self.design is None else None

    def _weights(self, rows: np.ndarray | None) -> np.ndarray | None:
        if self.weights is None or self.weights.ndim == 1 or rows is None:
            return self.weights
        return self.weights[rows]

    def _loss_terms(self, lp: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        r = lp - self.logy
        rho, drho = huber(r, self.delta)
        if self.asymmetry != 1.0:
            scale = np.where(r > 0, self.asymmetry, 1.0)
            rho, drho = rho * scale, drho * scale
        if w is None:
            return rho.sum(axis=-1), drho
        return (w * rho).sum(axis=-1), w * drho

    def value_grad(
        self, theta: np.ndarray, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Objective (S,) and gradient (S, P) at parameters ``theta`` (S, P)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        # Blocks of ~16k elements: temporaries stay in cache and under malloc's mmap threshold
        # (whole-batch temporaries of several MB cost more in page faults than in arithmetic).
        block = max(1, BLOCK_ELEMENTS // max(self.logy.size, 1))
        if theta.shape[0] <= block:
            return self._value_grad(theta, rows)
        f, g = np.empty(theta.shape[0]), np.empty_like(theta)
        for i in range(0, theta.shape[0], block):
            sl = slice(i, i + block)
            f[sl], g[sl] = self._value_grad(theta[sl], None if rows is None else rows[sl])
        return f, g

    def _value_grad(
        self, theta: np.ndarray, rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        w = self._weights(rows)
        g = np.zeros_like(theta)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            if self.design is not None:
                # einsum, not BLAS: k <= 2 inner products, and no thread oversubscription
                terms = [np.einsum("sk,kn->sn", theta[:, idx], feats) for idx, feats in self.design]
                lp, ex, inv = _lse_parts(terms)
                f, u = self._loss_terms(lp, w)
                ui = u * inv
                for (idx, feats), e in zip(self.design, ex):
                    if feats.shape[1] == 1 and e.shape[1] == 1:
                        g[:, idx] += (e[:, 0] * ui.sum(axis=1))[:, None] * feats[:, 0]
                    else:
                        feats = np.broadcast_to(feats, (len(idx), ui.shape[1]))
                        g[:, idx] += np.einsum("sn,kn->sk", ui * e, feats)
            elif self.value_jac is not None:
                lp, jac = self.value_jac(theta, self.cols)
                f, u = self._loss_terms(lp, w)
                g = np.einsum("sn,snp->sp", u, jac)
            else:
                h = 1e-30
                lp = self.law.log_predict(theta, self.cols)
                f, u = self._loss_terms(lp, w)
                for p in range(theta.shape[1]):
                    tc = theta.astype(complex)
                    tc[:, p] += 1j * h
                    g[:, p] = (u * (self.law.log_predict(tc, self.cols).imag / h)).sum(axis=-1)
        return f, g

    def gauss_newton(
        self, theta: np.ndarray, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Objective (S,), gradient (S, P) and Gauss-Newton matrix (S, P, P) of a law with
        ``log_predict_and_jac``: J^T diag(w rho'(r) / r) J, the iteratively reweighted least-
        squares curvature of the Huber loss (1 inside delta, delta / |r| outside)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        w = self._weights(rows)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            lp, jac = self.value_jac(theta, self.cols)
            f, u = self._loss_terms(lp, w)
            r = lp - self.logy
            irls = np.where(np.abs(r) <= self.delta, 1.0, self.delta / np.abs(r))
            if self.asymmetry != 1.0:
                irls *= np.where(r > 0, self.asymmetry, 1.0)
            if w is not None:
                irls = irls * w
            g = np.einsum("sn,snp->sp", u, jac)
            h = np.einsum("snp,snq->spq", jac * irls[..., None], jac)
        return f, g, h


def _two_loop(g, s_hist, y_hist, rho, gamma, k, m):
    """L-BFGS direction -H g for every row at once (newest pair has slot (k-1) % m)."""
    q = g.copy()
    n_pairs = min(k, m)
    alphas = np.zeros((g.shape[0], m))
    order = [(k - 1 - j) % m for j in range(n_pairs)]
    for slot in order:
        a = rho[:, slot] * np.einsum("ij,ij->i", s_hist[:, slot], q)
        alphas[:, slot] = a
        q -= a[:, None] * y_hist[:, slot]
    r = gamma[:, None] * q
    for slot in reversed(order):
        b = rho[:, slot] * np.einsum("ij,ij->i", y_hist[:, slot], r)
        r += s_hist[:, slot] * (alphas[:, slot] - b)[:, None]
    return -r


def batched_lbfgs(
    objective: Objective,
    x0: np.ndarray,
    rows: np.ndarray | None = None,
    maxiter: int = 1000,
    m: int = 10,
    ftol: float = 1e-9,
    gtol: float = 1e-10,
    c1: float = 1e-4,
    max_backtracks: int = 50,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise from every row of ``x0`` at once; returns (x, f, iterations) per row.

    Stops a row when its relative decrease falls below ``ftol`` (relative to the objective
    itself, not to max(|f|, 1) as scipy does: Huber objectives on log loss are ~1e-4), the
    gradient falls below ``gtol``, or no step satisfies the Armijo condition.
    """
    x = np.array(x0, dtype=float)
    s_count, p = x.shape
    rows = np.arange(s_count) if rows is None else np.asarray(rows)
    f, g = objective.value_grad(x, rows)
    done = ~(np.isfinite(f) & np.isfinite(g).all(axis=1))
    f[done] = np.inf
    s_hist = np.zeros((s_count, m, p))
    y_hist = np.zeros((s_count, m, p))
    rho = np.zeros((s_count, m))
    gamma = np.zeros(s_count)
    has_pair = np.zeros(s_count, dtype=bool)
    nit = np.zeros(s_count, dtype=int)
    for k in range(maxiter):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        xa, fa, ga = x[idx], f[idx], g[idx]
        d = _two_loop(ga, s_hist[idx], y_hist[idx], rho[idx], gamma[idx], k, m)
        gnorm = np.linalg.norm(ga, axis=1)
        fresh = ~has_pair[idx]
        d[fresh] = -ga[fresh] / np.maximum(gnorm[fresh], 1e-300)[:, None]
        gd = np.einsum("ij,ij->i", ga, d)
        uphill = ~(gd < 0)
        d[uphill] = -ga[uphill] / np.maximum(gnorm[uphill], 1e-300)[:, None]
        gd[uphill] = -gnorm[uphill]
        t = np.ones(idx.size)
        xn, fn, gn = xa.copy(), fa.copy(), ga.copy()
        accepted = np.zeros(idx.size, dtype=bool)
        pending = np.arange(idx.size)
        for _ in range(max_backtracks):
            xt = xa[pending] + t[pending, None] * d[pending]
            ft, gt = objective.value_grad(xt, rows[idx[pending]])
            ok = np.isfinite(ft) & (ft <= fa[pending] + c1 * t[pending] * gd[pending])
            ok &= np.isfinite(gt).all(axis=1)
            acc = pending[ok]
            xn[acc], fn[acc], gn[acc], accepted[acc] = xt[ok], ft[ok], gt[ok], True
            pending = pending[~ok]
            if pending.size == 0:
                break
            t[pending] *= 0.5
        s, y = xn - xa, gn - ga
        sy = np.einsum("ij,ij->i", s, y)
        yy = np.einsum("ij,ij->i", y, y)
        good = accepted & (sy > 1e-12 * np.maximum(yy, 1e-300) ** 0.5 * np.linalg.norm(s, axis=1))
        slot = k % m
        s_hist[idx, slot] = s
        y_hist[idx, slot] = y
        rho[idx, slot] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        gamma[idx] = np.where(good, sy / np.where(good, yy, 1.0), gamma[idx])
        has_pair[idx] |= good
        small = (fa - fn) <= ftol * np.maximum(np.abs(fa), 1e-300)
        conv = ~accepted | (np.abs(gn).max(axis=1) <= gtol) | (accepted & small & has_pair[idx])
        x[idx], f[idx], g[idx] = xn, fn, gn
        nit[idx] += 1
        done[idx] = conv
    return x, f, nit


def batched_lm(
    objective: Objective,
    x0: np.ndarray,
    rows: np.ndarray | None = None,
    maxiter: int = 300,
    ftol: float = 1e-9,
    gtol: float = 1e-12,
    damping: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg-Marquardt from every row of ``x0`` at once; returns (x, f, iterations).

    Each step solves (H + lambda diag H) p = -g with H the Gauss-Newton matrix of the Huber
    loss (``Objective.gauss_newton``); lambda shrinks after a good step and grows after a
    rejected one (Nielsen's rule). A row stops when both the actual and the predicted
    relative decrease of an accepted step fall below ``ftol``, its gradient below ``gtol``, or
    lambda grows past 1e16. On curve laws this takes tens of steps where L-BFGS takes hundreds:
    their parameters sit in curved, badly scaled valleys that H describes and L-BFGS learns.
    """
    x = np.array(x0, dtype=float)
    s_count, p = x.shape
    rows = np.arange(s_count) if rows is None else np.asarray(rows)
    f, g, h = objective.gauss_newton(x, rows)
    done = ~(np.isfinite(f) & np.isfinite(g).all(axis=1) & np.isfinite(h).all(axis=(1, 2)))
    f[done] = np.inf
    lam, nu = np.full(s_count, damping), np.full(s_count, 2.0)
    nit = np.zeros(s_count, dtype=int)
    eye = np.eye(p)
    for _ in range(maxiter):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        fa, ga, ha = f[idx], g[idx], h[idx]
        diag = np.maximum(np.einsum("spp->sp", ha), 1e-12 * np.abs(ha).max(axis=(1, 2))[:, None])
        a = ha + lam[idx, None, None] * diag[:, :, None] * eye
        try:
            step = -np.linalg.solve(a, ga[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -np.stack([np.linalg.lstsq(m, v, rcond=None)[0] for m, v in zip(a, ga)])
        pred = -(np.einsum("sp,sp->s", ga, step) + 0.5 * np.einsum("sp,spq,sq->s", step, ha, step))
        ft, gt, ht = objective.gauss_newton(x[idx] + step, rows[idx])
        ok = np.isfinite(ft) & np.isfinite(gt).all(axis=1) & np.isfinite(ht).all(axis=(1, 2))
        ok &= np.isfinite(step).all(axis=1) & (ft < fa)
        acc = idx[ok]
        # a rejected step may carry inf/nan (fa - ft, pred): its ratio is never used
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ratio = np.where(ok, (fa - ft) / np.where(pred > 0, pred, np.inf), 0.0)
        x[acc] += step[ok]
        f[acc], g[acc], h[acc] = ft[ok], gt[ok], ht[ok]
        lam[acc] *= np.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio[ok] - 1.0) ** 3)
        nu[acc] = 2.0
        rej = idx[~ok]
        lam[rej] *= nu[rej]
        nu[rej] *= 2.0
        nit[idx] += 1
        scale = np.maximum(np.abs(fa), 1e-300)
        small = ok & ((fa - ft) <= ftol * scale) & (pred <= ftol * scale)
        conv = small | (np.abs(g[idx]).max(axis=1) <= gtol) | (lam[idx] > 1e16)
        done[idx] = conv
    return x, f, nit


def _workers() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parallel_lbfgs(
    objective: Objective,
    x0: np.ndarray,
    rows: np.ndarray | None = None,
    workers: int | None = None,
    **kw,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """batched_lbfgs over chunks of the rows in threads (numpy releases the GIL on big arrays)."""
    return _in_threads(batched_lbfgs, objective, x0, rows, workers, 256, **kw)


def parallel_lm(
    objective: Objective,
    x0: np.ndarray,
    rows: np.ndarray | None = None,
    workers: int | None = None,
    **kw,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """batched_lm over chunks of the rows in threads: a row of a curve law costs milliseconds
    per step, so a few dozen rows already fill a core."""
    return _in_threads(batched_lm, objective, x0, rows, workers, 16, **kw)


def _in_threads(minimise, objective, x0, rows, workers, min_rows, **kw):
    """``minimise`` over interleaved chunks of at least ``min_rows`` rows, one per thread."""
    rows = np.arange(len(x0)) if rows is None else np.asarray(rows)
    workers = max(1, min(workers or _workers(), len(x0) // min_rows or 1))
    if workers == 1:
        return minimise(objective, x0, rows, **kw)
    # interleave so that each chunk gets a similar mix of easy and hard starts
    chunks = [np.arange(i, len(x0), workers) for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        outs = list(pool.map(lambda c: minimise(objective, x0[c], rows[c], **kw), chunks))
    x, f, nit = np.empty_like(x0, dtype=float), np.empty(len(x0)), np.empty(len(x0), dtype=int)
    for c, (xc, fc, nc) in zip(chunks, outs):
        x[c], f[c], nit[c] = xc, fc, nc
    return x, f, nit


def _columns(
    law: Law, data: Mapping[str, np.ndarray] | pd.DataFrame, loss: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Check and extract the law's variables and the loss column as float arrays."""
    names = list(data.columns) if isinstance(data, pd.DataFrame) else list(data)
    missing = [c for c in (*law.variables, loss) if c not in names]
    if missing:
        raise FitError(
            f"law {law.name!r} needs columns {missing}, which are missing; columns present: {names}"
        )
    cols = {v: np.asarray(data[v], dtype=float) for v in law.variables}
    y = np.asarray(data[loss], dtype=float)
    for name, arr in (*cols.items(), (loss, y)):
        bad = ~np.isfinite(arr) | (arr <= 0)
        if bad.any():
            raise FitError(
                f"column {name!r} has {int(bad.sum())} non-finite or non-positive values "
                f"(e.g. {arr[bad][:3].tolist()}); every value must be finite and > 0"
            )
    n_params = len(law.params)
    if y.size < n_params:
        raise FitError(
            f"law {law.name!r} has {n_params} parameters but only {y.size} points were given; "
            f"need at least {n_params}"
        )
    if "N" in cols and len(law.variables) > 1 and np.unique(cols["N"]).size < 2:
        raise FitError(
            f"law {law.name!r} needs at least 2 model sizes; all {y.size} points have "
            f"N = {cols['N'][0]:g}"
        )
    return cols, y


def _distinct(thetas: np.ndarray, fs: np.ndarray, k: int, decimals: int = 3) -> np.ndarray:
    """Indices of the ``k`` best rows whose parameters differ after rounding."""
    order = np.argsort(fs, kind="stable")
    seen, keep = set(), []
    for i in order:
        if not np.isfinite(fs[i]):
            break
        key = tuple(np.round(thetas[i], decimals))
        if key not in seen:
            seen.add(key)
            keep.append(i)
            if len(keep) == k:
                break
    return np.array(keep, dtype=int)


def fit(
    law: Law | str,
    data: Mapping[str, np.ndarray] | pd.DataFrame,
    *,
    loss: str = "loss",
    grid: Mapping[str, Sequence[float]] | None = None,
    starts: np.ndarray | None = None,
    delta: float = 1e-3,
    weights: np.ndarray | None = None,
    asymmetry: float = 1.0,
    polish: int = 8,
    best_rtol: float = 1e-4,
    workers: int | None = None,
    stride: int | None = None,
) -> FitResult:
    """Fit ``law`` to ``data[loss]`` by Huber loss on log residuals from a grid of starts.

    ``asymmetry`` > 1 penalises predictions above the observed loss more than below (a lower-
    envelope fit); ``weights`` scale each point's term. ``n_best`` counts the starts whose
    optimum is within ``best_rtol`` (relative) of the best objective. With ``stride`` k > 1
    (default: the law's ``start_stride``, else 1) the starts run on every k-th point and only
    the ``polish`` best distinct optima are continued on all points; ``n_best`` then counts
    on the strided objective.
    """
    law = get_law(law) if isinstance(law, str) else law
    cols, y = _columns(law, data, loss)
    if weights is not None:
        weights = np.asarray(weights, dtype=float)
        if weights.shape != y.shape or not np.all(np.isfinite(weights) & (weights >= 0)):
            raise FitError(
                f"weights must be {y.size} finite values >= 0, got shape {weights.shape}"
            )
    if delta <= 0:
        raise FitError(f"huber delta must be > 0, got {delta}")
    obj = Objective(law, cols, y, delta=delta, weights=weights, asymmetry=asymmetry)
    x0 = law.start_grid(grid) if starts is None else np.atleast_2d(np.asarray(starts, float))
    if x0.shape[1] != len(law.params):
        raise FitError(f"starts have {x0.shape[1]} columns; law {law.name!r} has {law.params}")
    stride = int(getattr(law, "start_stride", 1) if stride is None else stride)
    if stride < 1:
        raise FitError(f"stride must be >= 1 (every k-th point for the starts), got {stride}")
    start_obj = obj
    if stride > 1 and y.size >= 4 * stride * len(law.params):
        # Most starts only tell basins apart: a subsample finds them at a fraction of the cost
        # (a curve law's cost is proportional to its logged steps); the polish is on all points.
        sub = slice(None, None, stride)
        start_obj = Objective(
            law,
            {v: c[sub] for v, c in cols.items()},
            y[sub],
            delta=delta,
            weights=None if weights is None else weights[sub],
            asymmetry=asymmetry,
        )
    if obj.value_jac is not None:
        xs, fs, _ = batched_lm(start_obj, x0)
    else:
        xs, fs, _ = parallel_lbfgs(start_obj, x0, workers=workers)
    if not np.isfinite(fs).any():
        raise FitError(f"no start of {len(x0)} reached a finite objective for law {law.name!r}")
    cand = _distinct(xs, fs, max(polish, 1))
    # polish: the same optimiser, continued from the best distinct optima with tight tolerances
    if obj.value_jac is not None:
        px, pf, _ = batched_lm(obj, xs[cand], ftol=1e-14, gtol=1e-14)
    else:
        px, pf, _ = batched_lbfgs(obj, xs[cand], ftol=1e-14, gtol=1e-14, maxiter=3000)
    if start_obj is obj:
        improved = pf < fs[cand]
        px, pf = np.where(improved[:, None], px, xs[cand]), np.where(improved, pf, fs[cand])
    best = int(np.argmin(pf))
    theta, fbest = px[best], float(pf[best])
    f_ref = fbest if start_obj is obj else float(np.min(fs))
    n_best = int(np.sum(fs <= f_ref + best_rtol * abs(f_ref) + 1e-15))
    others = np.delete(px, best, axis=0)
    return FitResult(
        law=law,
        theta=np.asarray(theta, float),
        objective=fbest,
        n_points=int(y.size),
        n_starts=int(len(x0)),
        n_best=max(n_best, 1),
        huber_delta=float(delta),
        asymmetry=float(asymmetry),
        best_rtol=best_rtol,
        candidates=np.vstack([theta[None, :], others]),
        best_start=x0[cand[best]],
    )


def bootstrap(
    result: FitResult,
    data: Mapping[str, np.ndarray] | pd.DataFrame,
    *,
    loss: str = "loss",
    n: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    n_warm: int = 4,
    workers: int | None = None,
    strata: np.ndarray | None = None,
    maxiter: int = 1000,
    ftol: float = 1e-12,
) -> np.ndarray:
    """Parameters (n, P) refitted on ``n`` resamples of the points (or of ``groups``, e.g. runs).

    ``maxiter`` and ``ftol`` bound each refit (warm-started near its optimum, a refit needs far
    fewer steps than the full fit; a looser ``ftol`` moves the parameters by far less than
    their interval).

    Each resample starts from the full-data optimum and the ``n_warm`` best other distinct
    optima of the full fit, and keeps the best. With ``strata`` (one label per point) each
    stratum's groups are resampled apart, so every resample keeps each stratum's group count
    (e.g. two ladders' runs in a joint fit).
    """
    if n < 1:
        raise FitError(f"bootstrap needs n >= 1 resamples, got {n}")
    law = result.law
    cols, y = _columns(law, data, loss)
    groups = np.arange(y.size) if groups is None else np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, uniq.size, size=(n, uniq.size))
    if strata is not None:
        of_group = np.asarray(strata)[np.unique(inverse, return_index=True)[1]]
        for label in np.unique(of_group):
            members = np.flatnonzero(of_group == label)
            draws[:, members] = members[rng.integers(0, members.size, (n, members.size))]
    counts = np.zeros((n, uniq.size))
    np.add.at(counts, (np.repeat(np.arange(n), uniq.size), draws.ravel()), 1.0)
    w = counts[:, inverse]
    if weights is not None:
        w = w * np.asarray(weights, float)[None, :]
    obj = Objective(law, cols, y, delta=result.huber_delta, weights=w, asymmetry=result.asymmetry)
    starts = result.candidates[: 1 + n_warm]
    k = len(starts)
    x0 = np.tile(starts, (n, 1))
    rows = np.repeat(np.arange(n), k)
    if obj.value_jac is not None:
        xs, fs, _ = parallel_lm(obj, x0, rows=rows, workers=workers, maxiter=maxiter, ftol=ftol)
    else:
        xs, fs, _ = parallel_lbfgs(obj, x0, rows=rows, workers=workers, maxiter=maxiter, ftol=ftol)
    fs = np.where(np.isfinite(fs), fs, np.inf).reshape(n, k)
    pick = np.argmin(fs, axis=1)
    return xs.reshape(n, k, -1)[np.arange(n), pick]


def summarize(result: FitResult, boot: np.ndarray | None = None, ci: float = 0.9) -> dict:
    """A fit.json entry: natural parameters, their bootstrap intervals (``<name>_ci``), the
    formula, and how the optimiser got there (objective, starts, starts reaching the best)."""
    out: dict = {"law": result.law.name, "formula": result.law.formula, **result.params}
    if boot is not None:
        for name, vals in result.law.to_natural(boot).items():
            out[f"{name}_ci"] = interval(vals, ci)
    out.update(
        {
            "objective": result.objective,
            "n_starts": result.n_starts,
            "n_best": result.n_best,
            "huber_delta": result.huber_delta,
            "asymmetry": result.asymmetry,
            "n_points": result.n_points,
        }
    )
    return out


def interval(samples: np.ndarray, ci: float = 0.9) -> list[float]:
    """Central percentile interval of ``samples`` with coverage ``ci``."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(s, [50 * (1 - ci), 50 * (1 + ci)])
    return [float(lo), float(hi)]
