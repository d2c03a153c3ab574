"""The registry of loss forms, each a pure function of log-space parameters.

Every law maps a parameter array ``theta`` of shape ``(..., P)`` (leading dims index independent
starts or bootstrap resamples) and a dict of data columns (each ``(n,)``) to the predicted
*log* loss, shape ``(..., n)``. Coefficients are stored as logs (``a = log A``) so that the
optimiser works on an unconstrained, well-scaled space; exponents are stored as they are.

Most laws are a log-sum-exp of terms that are linear in the parameters (Chinchilla, Kaplan's
L(N, S), the single-variable laws). For those the value *and* the exact Jacobian follow from one
description (``terms``), so no law carries a hand-written gradient twin. Other laws (Kaplan's
L(N, D)) are written as complex-safe numpy and differentiated by the complex step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product

import numpy as np

Columns = Mapping[str, np.ndarray]
# One term of a log-sum-exp law: {parameter: feature}, where feature is 1.0 (a constant
# coefficient) or a function of the data columns giving that parameter's multiplier.
Term = Mapping[str, "float | Callable[[Columns], np.ndarray]"]


def logsumexp(terms: list[np.ndarray]) -> np.ndarray:
    """log(sum(exp(t))) over a list of same-shaped arrays; complex-safe (max of real parts)."""
    terms = np.broadcast_arrays(*terms)
    m = np.maximum.reduce([np.real(t) for t in terms])
    m = np.where(np.isfinite(m), m, 0.0)
    return m + np.log(sum(np.exp(t - m) for t in terms))


def _neg_log(name: str) -> Callable[[Columns], np.ndarray]:
    return lambda cols: -np.log(np.asarray(cols[name], dtype=float))


@dataclass(frozen=True)
class Law:
    """A loss form: parameter names, data variables, log-loss predictor and natural units."""

    name: str
    formula: str
    params: tuple[str, ...]
    variables: tuple[str, ...]
    log_predict: Callable[[np.ndarray, Columns], np.ndarray]
    natural: Callable[[np.ndarray], dict[str, np.ndarray]]
    from_natural: Callable[[Mapping[str, float]], np.ndarray]
    grid: Mapping[str, tuple[float, ...]]
    tex: str
    terms: tuple[Term, ...] | None = None
    natural_names: tuple[str, ...] = field(default=())

    @property
    def labels(self) -> dict[str, str]:
        """LaTeX label of each natural parameter, e.g. ``{"alpha": r"$\\alpha$"}``."""
        return {name: TEX_LABELS.get(name, rf"\texttt{{{name}}}") for name in self.natural_names}

    def predict(self, theta: np.ndarray, cols: Columns) -> np.ndarray:
        """Predicted loss (not log) for parameters ``theta`` at the data columns."""
        return np.exp(self.log_predict(np.asarray(theta, dtype=float), cols))

    def predict_natural(self, params: Mapping[str, float], cols: Columns) -> np.ndarray:
        """Predicted loss from natural parameters (``{"E": .., "A": .., ...}``) at the columns."""
        missing = [p for p in self.natural_names if p not in params]
        if missing:
            raise ValueError(f"law {self.name!r} needs parameters {missing}; has {list(params)}")
        cols = {v: np.asarray(cols[v], dtype=float) for v in self.variables}
        return self.predict(self.from_natural(params), cols)

    def start_grid(self, grid: Mapping[str, tuple[float, ...]] | None = None) -> np.ndarray:
        """All combinations of the grid values, as an array of shape (n_starts, P)."""
        grid = dict(self.grid if grid is None else grid)
        missing = [p for p in self.params if p not in grid]
        if missing:
            raise ValueError(f"grid for law {self.name!r} lacks {missing}; needs {self.params}")
        return np.array(list(product(*(grid[p] for p in self.params))), dtype=float)

    def to_natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters in natural units (E, A, alpha, ...) from log-space ``theta`` (..., P), in
        the order of ``natural_names``."""
        out = self.natural(np.asarray(theta, dtype=float))
        return {name: out[name] for name in self.natural_names}

    def design(self, cols: Columns) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
        """Per term: (parameter indices, features (k, n) or (k, 1)); term = theta[idx] @ features.

        None for a law that is not a log-sum-exp of parameter-linear terms. A term whose
        features are all constants has shape (k, 1): it is the same at every point.
        """
        if self.terms is None:
            return None
        out = []
        for term in self.terms:
            idx = np.array([self.params.index(p) for p in term])
            feats = [
                np.array([float(f)]) if np.isscalar(f) else np.asarray(f(cols), float)
                for f in term.values()
            ]
            out.append((idx, np.vstack(np.broadcast_arrays(*feats))))
        return tuple(out)


def _lse_linear(terms: tuple[Term, ...], params: tuple[str, ...]):
    """A log-predictor from a log-sum-exp of parameter-linear terms."""

    def log_predict(theta: np.ndarray, cols: Columns) -> np.ndarray:
        theta = np.asarray(theta)
        out = []
        for term in terms:
            t = 0.0
            for p, feat in term.items():
                th = theta[..., params.index(p), None]
                t = t + (th if np.isscalar(feat) else th * feat(cols))
            out.append(t)
        return out[0] if len(out) == 1 else logsumexp(out)

    return log_predict


def _exp_coef(*names: str, keep: tuple[str, ...] = ()):
    """Natural-unit converters both ways: exp() the log coefficients named (``a`` -> ``A``),
    keep the others (exponents)."""
    natural_of = {name: name if name in keep else name.upper() for name in names}

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        # a bootstrap outlier may overflow to inf: reported as such
        with np.errstate(over="ignore"):
            for i, name in enumerate(names):
                out[natural_of[name]] = theta[..., i] if name in keep else np.exp(theta[..., i])
        return out

    def from_natural(params: Mapping[str, float]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.array(
                [
                    float(params[natural_of[n]]) if n in keep else np.log(float(params[natural_of[n]]))
                    for n in names
                ]
            )

    return natural, from_natural


# Hoffmann et al. 2022 (Appendix D.2) / Besiroglu et al. 2024: 6 x 6 x 5 x 5 x 5 = 4,500 starts.
CHINCHILLA_GRID = {
    "a": tuple(np.arange(0, 30, 5.0)),
    "b": tuple(np.arange(0, 30, 5.0)),
    "e": tuple(np.arange(-1, 1.5, 0.5)),
    "alpha": tuple(np.arange(0, 2.5, 0.5)),
    "beta": tuple(np.arange(0, 2.5, 0.5)),
}


# LaTeX label of every natural parameter name the laws use.
TEX_LABELS = {
    "E": "$E$",
    "A": "$A$",
    "B": "$B$",
    "alpha": r"$\alpha$",
    "beta": r"$\beta$",
    "Nc": r"$N_c$",
    "Dc": r"$D_c$",
    "Sc": r"$S_c$",
    "alpha_N": r"$\alpha_N$",
    "alpha_D": r"$\alpha_D$",
    "alpha_S": r"$\alpha_S$",
    "a": "$a$",
    "b": "$b$",
    "k": "$k$",
    "L0": "$L_0$",
    "RD_star": r"$R_D^*$",
    "RN_star": r"$R_N^*$",
    **{f"{p}{i}": f"${p}_{i}$" for p in ("A", "B") for i in (1, 2)},
    **{f"{p}{i}": rf"$\{p}_{i}$" for p in ("alpha", "beta") for i in (1, 2)},
}


def _chinchilla() -> Law:
    params = ("a", "b", "e", "alpha", "beta")
    terms = ({"a": 1.0, "alpha": _neg_log("N")}, {"b": 1.0, "beta": _neg_log("D")}, {"e": 1.0})
    natural, from_natural = _exp_coef("a", "b", "e", "alpha", "beta", keep=("alpha", "beta"))
    return Law(
        name="chinchilla",
        formula="L = E + A / N^alpha + B / D^beta",
        params=params,
        variables=("N", "D"),
        log_predict=_lse_linear(terms, params),
        natural=natural,
        from_natural=from_natural,
        grid=CHINCHILLA_GRID,
        tex=r"$L = E + A/N^\alpha + B/D^\beta$",
        terms=terms,
        natural_names=("E", "A", "B", "alpha", "beta"),
    )


def _chinchilla_shared_e() -> Law:
    """Two ladders' Chinchilla laws with one irreducible loss E (scaling-compare --shared-e).

    Column ``ladder`` says whose law a point follows: 1 recipe A (A1, B1, alpha1, beta1), 2
    recipe B (A2, B2, alpha2, beta2) (every fitted column must be > 0). Each term is linear in
    the parameters (a ladder's indicator times its coefficient and exponent), so the value and
    the exact Jacobian come from the same description as Chinchilla's.
    """
    names = ("a1", "b1", "alpha1", "beta1", "a2", "b2", "alpha2", "beta2", "e")
    keep = ("alpha1", "beta1", "alpha2", "beta2")

    def member(i: int, var: str | None = None) -> Callable[[Columns], np.ndarray]:
        def feature(cols: Columns) -> np.ndarray:
            on = (np.round(np.asarray(cols["ladder"], dtype=float)) == i).astype(float)
            return on if var is None else -on * np.log(np.asarray(cols[var], dtype=float))

        return feature

    terms = (
        {"a1": member(1), "alpha1": member(1, "N"), "a2": member(2), "alpha2": member(2, "N")},
        {"b1": member(1), "beta1": member(1, "D"), "b2": member(2), "beta2": member(2, "D")},
        {"e": 1.0},
    )
    natural, from_natural = _exp_coef(*names, keep=keep)
    grid = {n: (5.0, 15.0) for n in ("a1", "b1", "a2", "b2")}
    grid |= {n: (0.3, 0.8) for n in keep} | {"e": (-0.5, 0.5)}
    return Law(
        name="chinchilla_shared_e",
        formula="L = E + A_i / N^alpha_i + B_i / D^beta_i (i = ladder 1 or 2, one E)",
        params=names,
        variables=("N", "D", "ladder"),
        log_predict=_lse_linear(terms, names),
        natural=natural,
        from_natural=from_natural,
        grid=grid,
        tex=r"$L = E + A_i/N^{\alpha_i} + B_i/D^{\beta_i}$",
        terms=terms,
        natural_names=("E", "A1", "B1", "alpha1", "beta1", "A2", "B2", "alpha2", "beta2"),
    )


def _kaplan_nd() -> Law:
    params = ("log_Nc", "log_Dc", "alpha_N", "alpha_D")

    def log_predict(theta: np.ndarray, cols: Columns) -> np.ndarray:
        lnc, ldc, a_n, a_d = (theta[..., i, None] for i in range(4))
        log_n = np.log(np.asarray(cols["N"], dtype=float))
        log_d = np.log(np.asarray(cols["D"], dtype=float))
        return a_d * logsumexp([(a_n / a_d) * (lnc - log_n), ldc - log_d])

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "Nc": np.exp(theta[..., 0]),
            "Dc": np.exp(theta[..., 1]),
            "alpha_N": theta[..., 2],
            "alpha_D": theta[..., 3],
        }

    def from_natural(p: Mapping[str, float]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.array([np.log(p["Nc"]), np.log(p["Dc"]), p["alpha_N"], p["alpha_D"]], float)

    # Kaplan et al. 2020 report Nc = 6.4e13, Dc = 1.8e13, alpha_N = 0.076, alpha_D = 0.103.
    grid = {
        "log_Nc": tuple(np.log(10.0 ** np.arange(8, 18, 3))),
        "log_Dc": tuple(np.log(10.0 ** np.arange(8, 18, 3))),
        "alpha_N": (0.05, 0.1, 0.3, 0.6),
        "alpha_D": (0.05, 0.1, 0.3, 0.6),
    }
    return Law(
        name="kaplan_nd",
        formula="L = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D",
        params=params,
        variables=("N", "D"),
        log_predict=log_predict,
        natural=natural,
        from_natural=from_natural,
        grid=grid,
        tex=r"$L = [(N_c/N)^{\alpha_N/\alpha_D} + D_c/D]^{\alpha_D}$",
        natural_names=("Nc", "Dc", "alpha_N", "alpha_D"),
    )


def _kaplan_ns() -> Law:
    # (Nc/N)^aN = exp(c_N - aN log N) with c_N = aN log Nc: linear in (c_N, aN).
    params = ("c_N", "alpha_N", "c_S", "alpha_S")
    terms = ({"c_N": 1.0, "alpha_N": _neg_log("N")}, {"c_S": 1.0, "alpha_S": _neg_log("S")})

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "Nc": np.exp(theta[..., 0] / theta[..., 1]),
            "Sc": np.exp(theta[..., 2] / theta[..., 3]),
            "alpha_N": theta[..., 1],
            "alpha_S": theta[..., 3],
        }

    def from_natural(p: Mapping[str, float]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            a_n, a_s = float(p["alpha_N"]), float(p["alpha_S"])
            return np.array([a_n * np.log(p["Nc"]), a_n, a_s * np.log(p["Sc"]), a_s], float)

    grid = {
        "c_N": (0.0, 2.0, 5.0),
        "alpha_N": (0.05, 0.1, 0.3, 0.6),
        "c_S": (0.0, 2.0, 5.0),
        "alpha_S": (0.05, 0.1, 0.3, 0.6),
    }
    return Law(
        name="kaplan_ns",
        formula="L = (Nc/N)^alpha_N + (Sc/S)^alpha_S",
        params=params,
        variables=("N", "S"),
        log_predict=_lse_linear(terms, params),
        natural=natural,
        from_natural=from_natural,
        grid=grid,
        tex=r"$L = (N_c/N)^{\alpha_N} + (S_c/S)^{\alpha_S}$",
        terms=terms,
        natural_names=("Nc", "Sc", "alpha_N", "alpha_S"),
    )


def _saturating(x: str) -> Law:
    params = ("e", "a", "alpha")
    terms = ({"e": 1.0}, {"a": 1.0, "alpha": _neg_log(x)})
    natural, from_natural = _exp_coef("e", "a", "alpha", keep=("alpha",))
    return Law(
        name=f"saturating_{x}",
        formula=f"L = E + A / {x}^alpha",
        params=params,
        variables=(x,),
        log_predict=_lse_linear(terms, params),
        natural=natural,
        from_natural=from_natural,
        tex=f"$L = E + A/{x}^\\alpha$",
        grid={
            "e": tuple(np.arange(-1, 1.5, 0.5)),
            "a": tuple(np.arange(0, 30, 5.0)),
            "alpha": tuple(np.arange(0, 2.5, 0.5)),
        },
        terms=terms,
        natural_names=("E", "A", "alpha"),
    )


def _power(x: str) -> Law:
    params = ("a", "alpha")
    terms = ({"a": 1.0, "alpha": _neg_log(x)},)
    natural, from_natural = _exp_coef("a", "alpha", keep=("alpha",))
    return Law(
        name=f"power_{x}",
        formula=f"L = A / {x}^alpha",
        params=params,
        variables=(x,),
        log_predict=_lse_linear(terms, params),
        natural=natural,
        from_natural=from_natural,
        tex=f"$L = A/{x}^\\alpha$",
        grid={"a": tuple(np.arange(0, 10, 1.0)), "alpha": (0.01, 0.05, 0.1, 0.3, 1.0)},
        terms=terms,
        natural_names=("A", "alpha"),
    )


def _power_nd() -> Law:
    """L = A / (N^alpha D^beta): one log-linear term; fits the best LR lr*(N, D) of a grid
    (Step Law: alpha = 0.713, beta = -0.307), where an exponent may take either sign."""
    params = ("a", "alpha", "beta")
    terms = ({"a": 1.0, "alpha": _neg_log("N"), "beta": _neg_log("D")},)
    natural, from_natural = _exp_coef("a", "alpha", "beta", keep=("alpha", "beta"))
    return Law(
        name="power_ND",
        formula="L = A / (N^alpha D^beta)",
        params=params,
        variables=("N", "D"),
        log_predict=_lse_linear(terms, params),
        natural=natural,
        from_natural=from_natural,
        tex="$L = A/(N^\\alpha D^\\beta)$",
        grid={"a": (-5.0, 0.0, 5.0), "alpha": (-1.0, 0.0, 1.0), "beta": (-1.0, 0.0, 1.0)},
        terms=terms,
        natural_names=("A", "alpha", "beta"),
    )


def _softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)), complex-safe and without overflow for large real parts."""
    big = np.real(z) > 0
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(
            big,
            z + np.log(1 + np.exp(-np.where(big, z, 0))),
            np.log(1 + np.exp(np.where(big, 0, z))),
        )


def _sigmoid_l() -> Law:
    """Acc(L) = a / (1 + exp(-k (L - L0))) + b: task accuracy against task loss L (bits per
    byte of the correct answer), step 2 of the OLMo ladder chain (Bhagia et al. 2024); k < 0
    when accuracy falls with loss. Complex-safe numpy, differentiated by the complex step."""
    params = ("log_a", "k", "L0", "log_b")

    def log_predict(theta: np.ndarray, cols: Columns) -> np.ndarray:
        la, k, l0, lb = (theta[..., i, None] for i in range(4))
        x = np.asarray(cols["L"], dtype=float)
        return logsumexp([la - _softplus(-k * (x - l0)), lb + 0 * x])

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(over="ignore"):
            return {"a": np.exp(theta[..., 0]), "k": theta[..., 1], "L0": theta[..., 2],
                    "b": np.exp(theta[..., 3])}  # fmt: skip

    def from_natural(p: Mapping[str, float]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.array([np.log(p["a"]), p["k"], p["L0"], np.log(p["b"])], float)

    grid = {
        "log_a": (np.log(0.3), np.log(0.7)),
        "k": (-20.0, -5.0, -1.0),
        "L0": (0.3, 0.7, 1.0, 1.5, 2.5),
        "log_b": (np.log(0.05), np.log(0.25), np.log(0.5)),
    }
    return Law(
        name="sigmoid_L",
        formula="Acc = a / (1 + exp(-k (L - L0))) + b",
        params=params,
        variables=("L",),
        log_predict=log_predict,
        natural=natural,
        from_natural=from_natural,
        grid=grid,
        # the registry's L is the fitted quantity (here accuracy), as lr* is power_ND's
        tex=r"$L = a/(1 + e^{-k(L_\mathrm{task} - L_0)}) + b$",
        natural_names=("a", "k", "L0", "b"),
    )


def _pos(x: np.ndarray) -> np.ndarray:
    """x where its real part is > 1e-12, else 1e-12 (keeps logs finite; complex-safe)."""
    return np.where(np.real(x) > 1e-12, x, 1e-12)


def _effective(u: np.ndarray, total: np.ndarray, log_r_star: np.ndarray) -> np.ndarray:
    """Muennighoff et al.'s effective amount U + U R* (1 - exp(-R / R*)), R = total/U - 1."""
    r_star = np.exp(log_r_star)
    reps = _pos(total / u - 1.0 + 1e-12)  # R >= 0 (total < U counts as no repetition)
    return u + u * r_star * (1.0 - np.exp(-reps / r_star))


def _data_constrained() -> Law:
    """Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", eq. 5:
    L = E + A / N'^alpha + B / D'^beta with effective data D' = U + U R_D* (1 - exp(-R_D/R_D*)),
    R_D = D/U - 1 (U: unique tokens), and effective parameters N' of the same form with
    U_N = min(N, N_opt(U)) (the compute-optimal size for U tokens under the fitted law) and
    R_N = N/U_N - 1. Complex-safe numpy, differentiated by the complex step."""
    params = ("a", "b", "e", "alpha", "beta", "log_RD", "log_RN")

    def log_predict(theta: np.ndarray, cols: Columns) -> np.ndarray:
        a, b, e, alpha, beta, lrd, lrn = (theta[..., i, None] for i in range(7))
        n, d, u = (np.asarray(cols[v], dtype=float) for v in ("N", "D", "U"))
        d_eff = _effective(u, d, lrd)
        alpha_p, beta_p = _pos(alpha), _pos(beta)
        # N_opt(U): alpha A / N^alpha = beta B / U^beta at the compute-optimal split
        log_nopt = (np.log(alpha_p) + a - np.log(beta_p) - b + beta * np.log(u)) / alpha_p
        u_n = np.where(np.real(log_nopt) < np.log(n), np.exp(log_nopt), n)
        n_eff = _effective(u_n, n, lrn)
        return logsumexp([a - alpha * np.log(n_eff), b - beta * np.log(d_eff), e + 0 * n])

    def natural(theta: np.ndarray) -> dict[str, np.ndarray]:
        out = _exp_coef("a", "b", "e", "alpha", "beta", keep=("alpha", "beta"))[0](theta[..., :5])
        with np.errstate(over="ignore"):
            return out | {"RD_star": np.exp(theta[..., 5]), "RN_star": np.exp(theta[..., 6])}

    def from_natural(p: Mapping[str, float]) -> np.ndarray:
        head = _exp_coef("a", "b", "e", "alpha", "beta", keep=("alpha", "beta"))[1](p)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.concatenate([head, np.log([float(p["RD_star"]), float(p["RN_star"])])])

    # the paper's fit: E 1.87, A 521, B 1488, alpha 0.35, beta 0.35, R_D* 15.4, R_N* 5.3
    grid = {
        "a": (4.0, 7.0),
        "b": (5.0, 8.0),
        "e": (0.0, 0.6),
        "alpha": (0.3, 0.5),
        "beta": (0.3, 0.5),
        "log_RD": (np.log(5.0), np.log(30.0)),
        "log_RN": (np.log(2.0), np.log(10.0)),
    }
    return Law(
        name="data_constrained",
        formula="L = E + A / N'^alpha + B / D'^beta, D' = U + U RD* (1 - exp(-(D/U - 1) / RD*)), "
        "N' alike with U_N = min(N, N_opt(U))",
        params=params,
        variables=("N", "D", "U"),
        log_predict=log_predict,
        natural=natural,
        from_natural=from_natural,
        grid=grid,
        tex=r"$L = E + A/N'^\alpha + B/D'^\beta$",
        natural_names=("E", "A", "B", "alpha", "beta", "RD_star", "RN_star"),
    )


def data_constrained_repeats(head: Mapping[str, float]) -> Law:
    """The data-constrained law with its single-epoch coefficients held: stage 2 of its fit.

    Muennighoff et al. fit the law in two stages (their appendix on the parametric fit): first
    the Chinchilla law E + A/N^alpha + B/D^beta on the single-epoch runs (U = D, where
    D' = D and N' = N), by Hoffmann et al.'s Huber loss on log residuals (delta 1e-3) with
    L-BFGS from a grid; then, with E, A, B, alpha, beta held there, R_D* and R_N* alone on the
    repeated-data runs, leaving out runs where more epochs or parameters raised the loss (the
    form saturates; it cannot turn up). Fitting all seven at once lets the repeated runs pull
    the single-epoch coefficients, and R_D* trades against B and beta. ``head`` holds E, A, B,
    alpha and beta (stage 1's fitted chinchilla law, ``to_natural``); this law's parameters are
    log R_D* and log R_N*, and its natural parameters are all seven. Stage 1 presumes its
    single-epoch runs are not over-parameterised for their data (N <= N_opt(U), as on a
    compute-optimal ladder): there N' < N, and the chinchilla head would absorb it.
    """
    base = _data_constrained()
    fixed = base.from_natural({**head, "RD_star": 1.0, "RN_star": 1.0})[:5]

    def full(theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta)  # complex under the complex step: the held head joins it
        return np.concatenate([np.broadcast_to(fixed, (*theta.shape[:-1], 5)), theta], axis=-1)

    held = ", ".join(f"{k} {float(head[k]):.4g}" for k in ("E", "A", "B", "alpha", "beta"))
    return Law(
        name="data_constrained_repeats",
        formula=f"{base.formula}; single-epoch fit held: {held}",
        params=("log_RD", "log_RN"),
        variables=base.variables,
        log_predict=lambda theta, cols: base.log_predict(full(theta), cols),
        natural=lambda theta: base.natural(full(theta)),
        from_natural=lambda p: base.from_natural(p)[5:],
        grid={
            "log_RD": tuple(np.log([2.0, 6.0, 20.0, 60.0])),
            "log_RN": tuple(np.log([1.0, 5.0, 25.0])),
        },
        tex=base.tex,
        natural_names=base.natural_names,
    )


LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        _chinchilla(),
        _chinchilla_shared_e(),
        _kaplan_nd(),
        _kaplan_ns(),
        *(_saturating(x) for x in ("N", "D", "C")),
        *(_power(x) for x in ("N", "D", "C")),
        _power_nd(),
        _sigmoid_l(),
        _data_constrained(),
    )
}


def get_law(name: str) -> Law:
    """The registered law called ``name``."""
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"unknown law {name!r}; known laws: {sorted(LAWS)}") from None
