"""Time the multi-power-law fit of one size's three training curves and its bootstrap.

Data: the multi-power-law repository's curves (Luo et al. 2025, MIT; data/reference/README.md):
the law is fitted on ``cosine_24000``, ``constant_24000`` and ``wsdcon_9`` (~24k optimiser steps
each) and predicts the six other schedules of the same size.

- fit: ``analysis.fit.fit`` over the law's full start grid (batched L-BFGS; the gradient is the
  law's analytic Jacobian, read through fit's complex-step path);
- bootstrap: 200 resamples of blocks of 10 consecutive logged steps
  (``analysis.curves.block_groups``), each warm-started from the full-data optimum;
- exactness: the objective at the start grid's first point and at the optimum, from the fast
  evaluation and from ``multipower_reference`` (every step, every S_k(t) summed afresh);
- held-out scores of the MPL and of Tissue's law on the same split.

Run: .venv/bin/python benchmarks/bench_curve_fit.py [--size 25M] [--bootstrap 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.curves import (
    CurveLaw,
    block_groups,
    curve_table,
    held_out_rows,
    multipower,
    multipower_reference,
    per_curve,
    read_reference_curve,
    tissue,
)
from analysis.fit import Objective, bootstrap, fit, huber, interval

DATA = Path(__file__).resolve().parents[1] / "data" / "reference" / "multipower_curves"
TRAIN = ("cosine_24000", "constant_24000", "wsdcon_9")


def slow_objective(law: CurveLaw, theta: np.ndarray, train: pd.DataFrame) -> float:
    """The Huber objective (delta 1e-3) with predictions from the slow reference."""
    params = {k: float(v) for k, v in law.to_natural(theta).items()}
    total = 0.0
    for cid, rows in train.groupby("curve").indices.items():
        curve = law.curves[cid - 1]
        pred = multipower_reference(params, curve.lr, train["step"].to_numpy()[rows])
        r = np.log(pred) - np.log(train["loss"].to_numpy()[rows])
        total += float(huber(r, 1e-3)[0].sum())
    return total


def held_out_summary(law: CurveLaw, theta: np.ndarray, table: pd.DataFrame) -> str:
    """Per held-out curve R^2 and mean relative error, and their means."""
    held = [n for n in dict.fromkeys(table["name"]) if n not in TRAIN]
    scores = per_curve(law, theta, table, held)
    lines = [
        f"    {n:20s} r2 {s['r2']:.5f}  mean rel err {100 * s['mean_rel_err']:.3f}%  "
        f"max {100 * s['max_rel_err']:.3f}%"
        for n, s in scores.items()
        if s["held_out"]
    ]
    r2 = np.mean([scores[n]["r2"] for n in held])
    mre = np.mean([scores[n]["mean_rel_err"] for n in held])
    return "\n".join([*lines, f"    mean over held-out: r2 {r2:.5f}, rel err {100 * mre:.3f}%"])


def main() -> None:
    """Print fit and bootstrap times, the fast-vs-slow objective, and the held-out scores."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="25M", choices=["25M", "100M"])
    p.add_argument("--bootstrap", type=int, default=200)
    args = p.parse_args()

    curves = [read_reference_curve(f) for f in sorted((DATA / args.size).glob("*.csv"))]
    table = curve_table(curves)
    train = table[~held_out_rows(table, [c.name for c in curves if c.name not in TRAIN])]
    train = train.reset_index(drop=True)
    law = multipower(curves)
    steps = sum(int(c.lr.size) for c in curves if c.name in TRAIN)
    print(f"{args.size}: {len(train)} logged points of {len(TRAIN)} curves ({steps} steps)")

    t0 = time.perf_counter()
    law.plans({v: train[v].to_numpy(float) for v in law.variables})
    print(f"  plan (prefix sums, LR changes, far-field boxes): {time.perf_counter() - t0:.2f} s")
    obj = Objective(law, {v: train[v].to_numpy(float) for v in law.variables}, train["loss"])
    start = law.start_grid()[:1]
    t0 = time.perf_counter()
    fast0 = float(obj.value_grad(start)[0][0])
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow0 = slow_objective(law, start[0], train)
    t_slow = time.perf_counter() - t0
    print(
        f"  objective at the first start: fast {fast0:.12e} ({1e3 * t_fast:.1f} ms with "
        f"gradient), slow reference {slow0:.12e} ({t_slow:.2f} s); rel diff "
        f"{abs(fast0 - slow0) / slow0:.1e}"
    )

    t0 = time.perf_counter()
    result = fit(law, train)
    t_fit = time.perf_counter() - t0
    slow = slow_objective(law, result.theta, train)
    print(
        f"  fit over {result.n_starts} starts: {t_fit:.1f} s (target < 10 s); objective "
        f"{result.objective:.12e}, slow reference {slow:.12e} (rel diff "
        f"{abs(result.objective - slow) / slow:.1e}); {result.n_best} starts reached it"
    )
    print("  parameters: " + ", ".join(f"{k} {v:.4g}" for k, v in result.params.items()))

    if args.bootstrap:
        t0 = time.perf_counter()
        boot = bootstrap(result, train, n=args.bootstrap, groups=block_groups(train, 10), n_warm=0)
        t_boot = time.perf_counter() - t0
        print(
            f"  bootstrap, {args.bootstrap} resamples of 10-step blocks: {t_boot:.1f} s "
            f"(target < 60 s for 200)"
        )
        for name, vals in law.to_natural(boot).items():
            lo, hi = interval(vals, 0.9)
            print(f"    {name:6s} {result.params[name]:.4g}  90% [{lo:.4g}, {hi:.4g}]")

    print("  MPL held out:")
    print(held_out_summary(law, result.theta, table))
    tis = tissue(curves)
    t0 = time.perf_counter()
    tres = fit(tis, train)
    print(f"  Tissue (lambda 0.999) fit {time.perf_counter() - t0:.1f} s, held out:")
    print(held_out_summary(tis, tres.theta, table))


if __name__ == "__main__":
    main()
