"""Fit report: fit.json, report.md, table.tex (booktabs), runs.csv and curves.csv; for a law of
whole loss curves (``--law multipower|tissue``) fit.json, report.md and curves.csv.

Everything here reads the typed `FitReport` (analysis/results.py); formulas, parameter names and
LaTeX labels come from the law registry (analysis/laws.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from analysis.collect import Collected
from analysis.results import Allocation, Estimate, FitReport, LawFit, Target

# LaTeX labels of the compute-optimal exponents (the laws' own parameters label themselves).
ALLOCATION_TEX = {
    "a": r"$a$ ($N_\mathrm{opt} \propto C^a$)",
    "b": r"$b$ ($D_\mathrm{opt} \propto C^b$)",
}
OUTPUTS = ("fit.json", "report.md", "table.tex", "runs.csv", "curves.csv")
# Characters LaTeX treats as commands in text (a CSV column name can hold any of them).
_TEX_ESCAPES = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def tex_escape(text: str) -> str:
    """Plain text safe inside a LaTeX paragraph."""
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def fmt(x: float | None, digits: int = 4) -> str:
    """A number in 4 significant digits (or '-' when it is not finite)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}"


def fmt_ci(ci: list[float] | None) -> str:
    """'[lo, hi]' or '' when there is no interval."""
    if not ci or any(v is None or not math.isfinite(v) for v in ci):
        return ""
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def fmt_est(est: Estimate) -> str:
    """'value [lo, hi]'."""
    return f"{fmt(est.value)} {fmt_ci(est.ci)}".rstrip()


def _tex_num(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "--"
    s = f"{x:.4g}"
    if "e" in s:
        mant, exp = s.split("e")
        return f"${mant} \\times 10^{{{int(exp)}}}$"
    return s


def _tex_row(label: str, est: Estimate) -> str:
    ci = est.ci
    ok = ci is not None and all(math.isfinite(v) for v in ci)
    interval = f"[{_tex_num(ci[0])}, {_tex_num(ci[1])}]" if ok else "--"
    return f"{label} & {_tex_num(est.value)} & {interval} \\\\"


def latex_table(report: FitReport) -> str:
    """Booktabs table of the fitted law's parameters and the exponents of each approach."""
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{lrr}",
        r"\toprule",
        f"Parameter & Estimate & {round(100 * report.bootstrap.ci)}\\% interval \\\\",
        r"\midrule",
    ]
    fitted = report.parametric()
    if fitted is not None:
        labels = fitted.registry_law.labels
        lines += [_tex_row(labels[name], est) for name, est in fitted.params.items()]
        lines += [
            _tex_row(ALLOCATION_TEX[n], fitted.derived[n])
            for n in ("a", "b")
            if n in fitted.derived
        ]
    for i, ap in ((1, report.approach1), (2, report.approach2)):
        if ap is not None and ap.allocation is not None:
            alloc = ap.allocation
            lines.append(r"\midrule")
            lines += [
                _tex_row(f"Approach {i}: {ALLOCATION_TEX[n]}", getattr(alloc, n)) for n in "ab"
            ]
    formula = fitted.registry_law.tex if fitted else "the compute-optimal allocation"
    delta = f"Huber $\\delta={fitted.huber_delta}$ on $\\log L$, " if fitted else ""
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        f"\\caption{{Fit of {formula} ({delta}{report.n_fitted} runs, "
        f"FLOPs: {tex_escape(report.convention)}); intervals from "
        f"{report.bootstrap.n} bootstrap resamples of runs.}}",
        r"\label{tab:scaling-fit}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _header(report: FitReport) -> list[str]:
    ci = report.bootstrap.ci
    out = [
        "# Scaling-law fit",
        "",
        f"- source: `{report.source}`",
        f"- FLOP convention: **{report.convention}** (C = {fmt(report.k)} N D)",
        f"- runs: {report.n_runs} collected, {report.n_fitted} fitted, "
        f"{len(report.heldout_runs)} held out, {len(report.excluded)} excluded",
        f"- bootstrap: {report.bootstrap.n} resamples of runs, seed "
        f"{report.bootstrap.seed}, {round(100 * ci)}% percentile intervals",
    ]
    if report.config.weights:
        out.append(f"- parametric-fit weights per run: `{report.config.weights}`")
    out.append("")
    if report.warnings:
        out += ["## Warnings", "", *(f"- **{w}**" for w in report.warnings), ""]
    return out


def _law_section(title: str, fit: LawFit, formula_line: str, extra: tuple[str, ...]) -> list[str]:
    """A law fit: formula, how the optimiser got there, parameters (and ``extra`` derived)."""
    out = [
        title,
        "",
        formula_line,
        "",
        f"Huber delta {fit.huber_delta} on log loss, L-BFGS from {fit.n_starts} starts; "
        f"{fit.n_best} reached the best objective {fit.objective:.6g}.",
        "",
        "| parameter | estimate | interval |",
        "|---|---|---|",
    ]
    rows = {**fit.params, **{n: fit.derived[n] for n in extra if n in fit.derived}}
    out += [f"| {name} | {fmt(e.value)} | {fmt_ci(e.ci)} |" for name, e in rows.items()]
    return [*out, ""]


def approach3_line(fit: LawFit) -> str:
    """'L = E + A / N^alpha + B / D^beta' with the fitted numbers."""
    p = fit.values()
    return (
        f"L = {fmt(p['E'])} + {fmt(p['A'])} / N^{fmt(p['alpha'])} + "
        f"{fmt(p['B'])} / D^{fmt(p['beta'])}"
    )


def _parametric_sections(report: FitReport) -> list[str]:
    out: list[str] = []
    a3 = report.approach3
    if a3 is not None and a3.fit is None:
        out += ["## Approach 3: parametric fit", "", f"Not computed: {a3.error}", ""]
    elif a3 is not None:
        derived = ("a", "b", "N_coef", "D_coef")
        title = "## Approach 3: parametric fit"
        out += _law_section(title, a3.fit, approach3_line(a3.fit), derived)
    if report.law_fit is not None:
        lf = report.law_fit
        out += _law_section(f"## Law fit: {lf.law}", lf, lf.registry_law.formula, ())
    return out


def _exponents(report: FitReport) -> list[str]:
    out = [
        "## Compute-optimal exponents",
        "",
        "| approach | a | a interval | b | b interval |",
        "|---|---|---|---|---|",
    ]
    for i, ap in report.approaches().items():
        alloc: Allocation | None = ap.allocation
        if alloc is None:
            out.append(f"| {i} | - | - | - | - |  ({ap.error})")
        else:
            out.append(
                f"| {i} | {fmt(alloc.a.value)} | {fmt_ci(alloc.a.ci)} | {fmt(alloc.b.value)} | "
                f"{fmt_ci(alloc.b.ci)} |"
            )
    degenerate = [f"approach {i}: {ap.n_degenerate}" for i, ap in report.approaches().items()]
    if any(ap.n_degenerate for ap in report.approaches().values()):
        out += [
            "",
            f"Degenerate bootstrap resamples (left out of the intervals): {', '.join(degenerate)}.",
        ]
    return [*out, ""]


def _budgets(report: FitReport) -> list[str]:
    a2 = report.approach2
    if a2 is None or not a2.budgets:
        return []
    out = [
        "### IsoFLOP budgets (approach 2)",
        "",
        "| C | N_opt | D_opt | loss | points | edge |",
        "|---|---|---|---|---|---|",
    ]
    for b in a2.budgets:
        out.append(
            f"| {fmt(b.C)} | {fmt(b.N_opt)} | {fmt(b.D_opt)} | {fmt(b.loss_opt)} | "
            f"{b.n_points} | {'**edge**' if b.edge else ''} |"
        )
    return [*out, ""]


def _targets(report: FitReport) -> list[str]:
    rows: list[tuple[int, Target]] = [
        (i, t) for i, ap in report.approaches().items() for t in ap.targets
    ]
    if not rows:
        return []
    out = [
        "## Predictions at target compute",
        "",
        "| C | approach | N_opt | D_opt | D/N | loss |",
        "|---|---|---|---|---|---|",
    ]
    for i, t in sorted(rows, key=lambda r: (r[1].C, r[0])):
        loss = fmt_est(t.loss) if t.loss is not None else "-"
        out.append(
            f"| {fmt(t.C)} | {i} | {fmt_est(t.N_opt)} | {fmt_est(t.D_opt)} | "
            f"{fmt(t.tokens_per_param.value)} | {loss} |"
        )
    return [*out, ""]


def _holdout(report: FitReport) -> list[str]:
    ho = report.holdout
    if ho is None:
        return []
    out = [f"## Extrapolation check ({ho.rule})", ""]
    if ho.error:
        return [*out, f"Not computed: {ho.error}", ""]
    out += ["| run | observed | predicted | relative error |", "|---|---|---|---|"]
    out += [
        f"| {r.run} | {fmt(r.observed)} | {fmt(r.predicted)} | {r.rel_error:+.2%} |"
        for r in ho.runs
    ]
    return [*out, "", f"Mean absolute relative error: {ho.mean_abs_rel_error:.2%}", ""]


def _verification(report: FitReport) -> list[str]:
    v = report.verification
    if v is None:
        return []
    ratio = (
        ""
        if not math.isfinite(v.extrapolation)
        else f", {v.extrapolation:.3g}x the largest fitted C"
    )
    verdict = {None: "no interval to judge", True: "**inside**", False: "**outside**"}
    spread = "-" if not math.isfinite(v.seed_std) else f"{fmt(v.seed_std)} {fmt_ci(v.seed_range)}"
    out = [
        f"## Verification: a run predicted before it was trained ({v.method})",
        "",
        f"Target C = {fmt(v.C)}{ratio}: {v.model} (N = {v.N:,}"
        f"{'' if v.family else ', a new shape'}) on D = {v.D:,} tokens ({v.steps:,} steps x "
        f"{v.batch_size} x {v.seq_len}), C = {fmt(v.C_trained)}, peak LR {fmt(v.lr)}.",
        "",
        "| predicted | observed (mean) | seeds | seed std [min, max] | relative error | "
        "judged interval | inside |",
        "|---|---|---|---|---|---|---|",
        f"| {fmt_est(v.predicted)} | {fmt(v.observed)} | {len(v.runs)} | {spread} | "
        f"{v.rel_error:+.2%} | {fmt_ci(v.judged_interval) or '-'} | "
        f"{verdict[v.inside_interval]} |",
        "",
        f"Interval: {v.interval}. The observed mean is judged against the interval widened in "
        "quadrature by the seed noise of the mean (bare with one seed).",
        "",
        "| run | seed | final loss | folder |",
        "|---|---|---|---|",
        *(f"| {r.run} | {r.seed} | {fmt(r.loss)} | `{r.path}` |" for r in v.runs),
        "",
    ]
    return out + [f"- {n}" for n in v.notes] + ([""] if v.notes else [])


def _excluded(report: FitReport) -> list[str]:
    out = ["## Excluded runs", ""]
    if not report.excluded:
        return [*out, "None.", ""]
    out += ["| run | status | reason |", "|---|---|---|"]
    return [*out, *(f"| {e.run} | {e.status} | {e.reason} |" for e in report.excluded), ""]


def _settings(report: FitReport) -> list[str]:
    return [
        "## Settings",
        "",
        "The resolved fit configuration (`fit.json` `config`; `scaling-fit --config FILE`):",
        "",
        "```yaml",
        report.config.to_yaml().rstrip(),
        "```",
    ]


def markdown_report(report: FitReport) -> str:
    """The human-readable fit report."""
    sections = (
        _header,
        _parametric_sections,
        _exponents,
        _budgets,
        _targets,
        _holdout,
        _verification,
        _excluded,
        _settings,
    )
    return "\n".join(line for section in sections for line in section(report)) + "\n"


# ---- a law of whole loss curves (scaling-fit --law multipower|tissue) ----

CURVE_OUTPUTS = ("fit.json", "report.md", "curves.csv")
CURVE_FIGURE = "curve_law"  # figures/curve_law.{pdf,png}, drawn by analysis.plots


def _curve_header(report: FitReport) -> list[str]:
    cr = report.curves
    assert cr is not None
    n_held = sum(s.held_out for s in cr.per_curve.values())
    out = [
        f"# Loss-curve law fit: {cr.law}",
        "",
        f"- source: `{report.source}`",
        f"- curves: {len(cr.per_curve)} ({len(cr.per_curve) - n_held} fitted, {n_held} held "
        f"out); {cr.n_points} logged steps fitted; loss: `{cr.loss}`",
        f"- bootstrap: {report.bootstrap.n} resamples of blocks of {cr.bootstrap_block} "
        f"consecutive logged steps, seed {report.bootstrap.seed}, "
        f"{round(100 * report.bootstrap.ci)}% percentile intervals",
        "",
    ]
    if report.warnings:
        out += ["## Warnings", "", *(f"- **{w}**" for w in report.warnings), ""]
    return out


def _curve_sections(report: FitReport) -> list[str]:
    cr = report.curves
    assert cr is not None
    decay = f" (Tissue's lambda = {cr.decay})" if cr.decay is not None else ""
    out = [
        "## Fitted law",
        "",
        f"`{cr.formula}`{decay}",
        "",
        f"Huber delta {report.config.huber_delta} on log loss, L-BFGS from {cr.n_starts} starts; "
        f"{cr.n_best} reached the best objective {cr.objective:.6g}.",
        "",
        "| parameter | estimate | interval |",
        "|---|---|---|",
        *(f"| {name} | {fmt(e.value)} | {fmt_ci(e.ci)} |" for name, e in cr.params.items()),
        "",
        "## Curves: observed against predicted",
        "",
        "| curve | held out | R^2 | mean rel. error | max rel. error |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {name} | {'yes' if s.held_out else 'no'} | {s.r2:.5f} | {s.mean_rel_err:.3%} | "
        f"{s.max_rel_err:.3%} |"
        for name, s in cr.per_curve.items()
    ]
    out.append("")
    if cr.predictions:
        out += ["## Predicted schedules (not trained)", ""]
        out += ["| schedule | steps | final loss | interval |", "|---|---|---|---|"]
        out += [
            f"| `{p.schedule}` | {p.total_steps} | {fmt(p.final_loss.value)} | "
            f"{fmt_ci(p.final_loss.ci)} |"
            for p in cr.predictions
        ]
        out.append("")
    return [*out, f"![observed and predicted curves](figures/{CURVE_FIGURE}.png)", ""]


def curves_report(report: FitReport) -> str:
    """The human-readable report of a curve-law fit."""
    sections = (_curve_header, _curve_sections, _settings)
    return "\n".join(line for section in sections for line in section(report)) + "\n"


def curves_summary(report: FitReport) -> str:
    """A few lines for the terminal: the law, its parameters, the held-out scores, predictions."""
    cr = report.curves
    assert cr is not None
    params = ", ".join(f"{name} = {fmt_est(e)}" for name, e in cr.params.items())
    lines = [f"{cr.law}: {params}"]
    held = {n: s for n, s in cr.per_curve.items() if s.held_out}
    if held:
        r2 = sum(s.r2 for s in held.values()) / len(held)
        err = sum(s.mean_rel_err for s in held.values()) / len(held)
        lines.append(
            f"held-out curves {sorted(held)}: mean R^2 {r2:.5f}, mean rel. error {err:.3%}"
        )
    lines += [f"predicted {p.schedule}: final loss {fmt_est(p.final_loss)}" for p in cr.predictions]
    return "\n".join(lines)


def write_curve_outputs(out_dir: str | Path, report: FitReport, table: Any) -> dict[str, Path]:
    """Write fit.json, report.md and curves.csv (``table``, a DataFrame) of a curve-law fit."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in CURVE_OUTPUTS}
    report.save(paths["fit.json"])
    paths["report.md"].write_text(curves_report(report))
    table.to_csv(paths["curves.csv"], index=False)
    return paths


def write_outputs(out_dir: str | Path, report: FitReport, collected: Collected) -> dict[str, Path]:
    """Write fit.json, report.md, table.tex, runs.csv and curves.csv into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in OUTPUTS}
    report.save(paths["fit.json"])
    paths["report.md"].write_text(markdown_report(report))
    paths["table.tex"].write_text(latex_table(report))
    collected.runs.to_csv(paths["runs.csv"], index=False)
    collected.curves.to_csv(paths["curves.csv"], index=False)
    return paths
