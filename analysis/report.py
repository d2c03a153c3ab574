"""Fit report: fit.json, report.md, table.tex (booktabs), runs.csv and curves.csv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from analysis.collect import Collected

PARAM_LABELS = {
    "E": "$E$",
    "A": "$A$",
    "B": "$B$",
    "alpha": r"$\alpha$",
    "beta": r"$\beta$",
    "a": r"$a$ ($N_\mathrm{opt} \propto C^a$)",
    "b": r"$b$ ($D_\mathrm{opt} \propto C^b$)",
    "Nc": r"$N_c$",
    "Dc": r"$D_c$",
    "Sc": r"$S_c$",
    "alpha_N": r"$\alpha_N$",
    "alpha_D": r"$\alpha_D$",
    "alpha_S": r"$\alpha_S$",
}
# The registry's laws in LaTeX, for the table caption (analysis/laws.py has the plain forms).
LAW_TEX = {
    "chinchilla": r"$L = E + A/N^\alpha + B/D^\beta$",
    "kaplan_nd": r"$L = [(N_c/N)^{\alpha_N/\alpha_D} + D_c/D]^{\alpha_D}$",
    "kaplan_ns": r"$L = (N_c/N)^{\alpha_N} + (S_c/S)^{\alpha_S}$",
    **{f"saturating_{x}": f"$L = E + A/{x}^\\alpha$" for x in "NDC"},
    **{f"power_{x}": f"$L = A/{x}^\\alpha$" for x in "NDC"},
}
# Characters LaTeX treats as commands in text (a CSV column name can hold any of them).
_TEX_ESCAPES = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def tex_escape(text: str) -> str:
    """Plain text safe inside a LaTeX paragraph."""
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def jsonable(obj):
    """Plain JSON types (NaN and inf become null; numpy scalars and arrays become numbers)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def fmt(x, digits: int = 4) -> str:
    """A number in 4 significant digits (or '-')."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def fmt_ci(ci) -> str:
    """'[lo, hi]' or '' when there is no interval."""
    if not ci or any(v is None for v in ci):
        return ""
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _tex_num(x) -> str:
    if x is None or not math.isfinite(x):
        return "--"
    s = f"{x:.4g}"
    if "e" in s:
        mant, exp = s.split("e")
        return f"${mant} \\times 10^{{{int(exp)}}}$"
    return s


def law_param_names(block: dict | None) -> list[str]:
    """Parameter names of a law_fit entry, in the order fit.json lists them."""
    if not block:
        return []
    skip = {"law", "formula", "objective", "n_starts", "n_best", "huber_delta", "asymmetry"}
    return [
        k
        for k, v in block.items()
        if k not in skip
        and not k.endswith("_ci")
        and k != "n_points"
        and isinstance(v, int | float)
    ]


def latex_table(result: dict) -> str:
    """Booktabs table of the fitted law's parameters and the exponents of each approach."""
    ci = result.get("bootstrap", {}).get("ci", 0.9)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{lrr}",
        r"\toprule",
        f"Parameter & Estimate & {round(100 * ci)}\\% interval \\\\",
        r"\midrule",
    ]
    a3 = result.get("approach3", {})
    law_fit = result.get("law_fit")
    fitted = law_fit or (a3 if a3 and "error" not in a3 else {})
    names = [n for n in (*PARAM_LABELS, *law_param_names(law_fit)) if n in fitted]
    for name in dict.fromkeys(names):
        c = fitted.get(f"{name}_ci")
        interval = f"[{_tex_num(c[0])}, {_tex_num(c[1])}]" if c and None not in c else "--"
        label = PARAM_LABELS.get(name, rf"\texttt{{{tex_escape(name)}}}")
        lines.append(f"{label} & {_tex_num(fitted[name])} & {interval} \\\\")
    for key, label in (("approach1", "Approach 1"), ("approach2", "Approach 2")):
        ap = result.get(key, {})
        if ap and "error" not in ap:
            lines.append(r"\midrule")
            for name in ("a", "b"):
                c = ap.get(f"{name}_ci")
                interval = f"[{_tex_num(c[0])}, {_tex_num(c[1])}]" if c and None not in c else "--"
                lines.append(
                    f"{label}: {PARAM_LABELS[name]} & {_tex_num(ap[name])} & {interval} \\\\"
                )
    law = fitted.get("law", "chinchilla")
    formula = LAW_TEX.get(law, rf"\texttt{{{tex_escape(fitted.get('formula', law))}}}")
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        f"\\caption{{Fit of {formula} (Huber $\\delta={fitted.get('huber_delta', '')}$ on "
        f"$\\log L$, {result.get('n_fitted', '')} runs, "
        f"FLOPs: {tex_escape(result.get('convention', ''))}); intervals from "
        f"{result.get('bootstrap', {}).get('n', 0)} bootstrap resamples of runs.}}",
        r"\label{tab:scaling-fit}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def markdown_report(result: dict) -> str:
    """The human-readable fit report."""
    ci = result.get("bootstrap", {}).get("ci", 0.9)
    out = [
        "# Scaling-law fit",
        "",
        f"- source: `{result.get('source')}`",
        f"- FLOP convention: **{result.get('convention')}** (C = {fmt(result.get('k'))} N D)",
        f"- runs: {result.get('n_runs')} collected, {result.get('n_fitted')} fitted, "
        f"{len(result.get('heldout_runs', []))} held out, {len(result.get('excluded', []))} excluded",
        f"- bootstrap: {result.get('bootstrap', {}).get('n', 0)} resamples of runs, seed "
        f"{result.get('bootstrap', {}).get('seed')}, {round(100 * ci)}% percentile intervals",
    ]
    if result.get("weights"):
        out.append(f"- parametric-fit weights per run: `{result['weights']}`")
    out.append("")
    a3 = result.get("approach3", {})
    if a3:
        out += ["## Approach 3: parametric fit", ""]
    if "error" in a3:
        out += [f"Not computed: {a3['error']}", ""]
    elif a3:
        out += [
            f"L = {fmt(a3['E'])} + {fmt(a3['A'])} / N^{fmt(a3['alpha'])} + "
            f"{fmt(a3['B'])} / D^{fmt(a3['beta'])}",
            "",
            f"Huber delta {a3['huber_delta']} on log loss, L-BFGS from {a3['n_starts']} starts; "
            f"{a3['n_best']} reached the best objective {a3['objective']:.6g}.",
            "",
            "| parameter | estimate | interval |",
            "|---|---|---|",
        ]
        for name in ("E", "A", "B", "alpha", "beta", "a", "b", "N_coef", "D_coef"):
            if name in a3:
                out.append(f"| {name} | {fmt(a3[name])} | {fmt_ci(a3.get(name + '_ci'))} |")
        out.append("")
    lf = result.get("law_fit")
    if lf:
        out += [
            f"## Law fit: {lf['law']}",
            "",
            lf["formula"],
            "",
            f"Huber delta {lf['huber_delta']} on log loss, L-BFGS from {lf['n_starts']} starts; "
            f"{lf['n_best']} reached the best objective {lf['objective']:.6g}.",
            "",
            "| parameter | estimate | interval |",
            "|---|---|---|",
        ]
        for name in law_param_names(lf):
            out.append(f"| {name} | {fmt(lf[name])} | {fmt_ci(lf.get(name + '_ci'))} |")
        out.append("")
    out += [
        "## Compute-optimal exponents",
        "",
        "| approach | a | a interval | b | b interval |",
        "|---|---|---|---|---|",
    ]
    for i in (1, 2, 3):
        ap = result.get(f"approach{i}")
        if ap is None:
            continue
        if "error" in ap:
            out.append(f"| {i} | - | - | - | - |  ({ap['error']})")
        else:
            out.append(
                f"| {i} | {fmt(ap['a'])} | {fmt_ci(ap.get('a_ci'))} | {fmt(ap['b'])} | {fmt_ci(ap.get('b_ci'))} |"
            )
    out.append("")
    a2 = result.get("approach2", {})
    if a2.get("budgets"):
        out += [
            "### IsoFLOP budgets (approach 2)",
            "",
            "| C | N_opt | D_opt | loss | points | edge |",
            "|---|---|---|---|---|---|",
        ]
        for b in a2["budgets"]:
            out.append(
                f"| {fmt(b['C'])} | {fmt(b['N_opt'])} | {fmt(b['D_opt'])} | {fmt(b['loss_opt'])} | "
                f"{b['n_points']} | {'**edge**' if b['edge'] else ''} |"
            )
        out.append("")
    rows = [(3, t) for t in result.get("targets") or []]
    rows += [(i, t) for i in (1, 2) for t in (result.get(f"approach{i}") or {}).get("targets", [])]
    if rows:
        out += [
            "## Predictions at target compute",
            "",
            "| C | approach | N_opt | D_opt | D/N | loss |",
            "|---|---|---|---|---|---|",
        ]
        for i, t in sorted(rows, key=lambda r: (r[1]["C"], r[0])):
            loss = f"{fmt(t['loss'])} {fmt_ci(t.get('loss_ci'))}" if "loss" in t else "-"
            out.append(
                f"| {fmt(t['C'])} | {i} | {fmt(t['N_opt'])} {fmt_ci(t.get('N_opt_ci'))} | "
                f"{fmt(t['D_opt'])} {fmt_ci(t.get('D_opt_ci'))} | {fmt(t['tokens_per_param'])} | "
                f"{loss} |"
            )
        out.append("")
    ho = result.get("holdout")
    if ho:
        out += [f"## Extrapolation check ({ho['rule']})", ""]
        if "error" in ho:
            out += [f"Not computed: {ho['error']}", ""]
        else:
            out += ["| run | observed | predicted | relative error |", "|---|---|---|---|"]
            for r in ho["runs"]:
                out.append(
                    f"| {r['run']} | {fmt(r['observed'])} | {fmt(r['predicted'])} | {r['rel_error']:+.2%} |"
                )
            out += ["", f"Mean absolute relative error: {ho['mean_abs_rel_error']:.2%}", ""]
    out += ["## Excluded runs", ""]
    if result.get("excluded"):
        out += ["| run | status | reason |", "|---|---|---|"]
        out += [f"| {e['run']} | {e['status']} | {e['reason']} |" for e in result["excluded"]]
    else:
        out.append("None.")
    return "\n".join(out) + "\n"


def write_outputs(out_dir: str | Path, result: dict, collected: Collected) -> dict[str, Path]:
    """Write fit.json, report.md, table.tex, runs.csv and curves.csv into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        name: out / name
        for name in ("fit.json", "report.md", "table.tex", "runs.csv", "curves.csv")
    }
    paths["fit.json"].write_text(json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n")
    paths["report.md"].write_text(markdown_report(result))
    paths["table.tex"].write_text(latex_table(result))
    collected.runs.to_csv(paths["runs.csv"], index=False)
    collected.curves.to_csv(paths["curves.csv"], index=False)
    return paths
