"""Fuzz: scaling-fit and scaling-plot on a few hundred malformed inputs, generated with a seed
(one case per generator in the fast suite, all under `slow`).

Inputs: CSVs of final results (empty, header only, ragged, binary, NaN/inf/negative/zero/huge
values, missing columns, duplicate runs), run stores (corrupt or partial summary.json, metrics.csv
with bad steps, binary or ragged logs, runs without a record) and results folders for the figures
(truncated fit.json, fit.json with nulls, broken runs.csv/curves.csv). Each command runs
in-process through its ``main(argv)`` and must: raise nothing, print no traceback, exit 0 or 2
(0 only with a valid result, listing every run the input damaged), and write nothing outside
``--out``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
from fixtures_analysis import synthetic, write_run_store

from analysis.cli import main as fit_main
from analysis.plots import main as plot_main

SEED = 20261202
RUNS, CURVES = synthetic(budgets=(1e17, 1e18, 1e19), sizes_per_budget=5, curve_points=4)
FAST = ("--bootstrap", "0", "--approaches", "1,2", "--grid", "2")  # a law fit only if asked
LAW = ("--bootstrap", "0", "--approaches", "3", "--grid", "2")
BAD = ("nan", "inf", "-inf", "-1", "0", "abc", "", "1e400", "-0", "1e2e3")
HUGE = ("1e300", "1e-300", "1.7976931348623157e308", "123456789012345678901234567890")


@dataclass(frozen=True)
class Case:
    """One generated input and the command line to run on it."""

    id: str
    """Names the case in the test id."""
    make: Callable[[Path], Path]
    """Writes the input under a folder; returns the path to give the command."""
    args: tuple[str, ...] = FAST
    """Options after the source and --out."""
    listed: tuple[str, ...] = ()
    """Runs a successful fit must list as excluded (the runs the case damaged)."""
    warned: bool = False
    """Whether a successful fit must carry a warning."""


# ---- building blocks ---------------------------------------------------------------------------


def _write(name: str, data: bytes | str | Callable[[], bytes | str]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / name
        content = data() if callable(data) else data
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


def _junk(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


BASE_CSV = RUNS[["run", "N", "D", "C", "loss"]].to_csv(index=False)
LINES = BASE_CSV.splitlines()


def _set_cells(cells: Sequence[tuple[int, str, str]]) -> str:
    """The base CSV with cells (row, column, text) replaced."""
    rows = [line.split(",") for line in LINES]
    cols = rows[0]
    for row, col, text in cells:
        rows[row + 1][cols.index(col)] = text
    return "\n".join(",".join(r) for r in rows) + "\n"


def _drop_col(col: str) -> str:
    return RUNS[[c for c in ("run", "N", "D", "C", "loss") if c != col]].to_csv(index=False)


def csv_cases() -> list[Case]:
    """Malformed CSVs of final results, and option strings a careless user might type."""
    fixed = {
        "empty": b"",
        "blank-lines": b"\n\n\n",
        "header-only": LINES[0] + "\n",
        "header-and-blank": LINES[0] + "\n\n\n",
        "short-row": "\n".join(LINES[:3] + [LINES[3].rsplit(",", 1)[0]] + LINES[4:]) + "\n",
        "long-row": "\n".join(LINES[:3] + [LINES[3] + ",7"] + LINES[4:]) + "\n",
        "open-quote": "\n".join(LINES[:2] + ['"' + LINES[2]] + LINES[3:]) + "\n",
        "nul-byte": BASE_CSV[:40] + "\x00" + BASE_CSV[40:],
        "crlf": BASE_CSV.replace("\n", "\r\n"),
        "bom": "\ufeff" + BASE_CSV,
        "one-row": "\n".join(LINES[:2]) + "\n",
        "all-rows-equal": "\n".join([LINES[0]] + [LINES[1]] * 10) + "\n",
        "no-N": _drop_col("N"),
        "no-loss": _drop_col("loss"),
        "no-D-no-C": RUNS[["run", "N", "loss"]].to_csv(index=False),
        "only-C": RUNS[["N", "C", "loss"]].to_csv(index=False),
        "columns-shuffled": RUNS[["loss", "C", "run", "D", "N"]].to_csv(index=False),
        "extra-text-column": RUNS.assign(note="x,y").to_csv(index=False),
        "latin1": BASE_CSV.replace("run", "r\xe9n").encode("latin-1"),
        "all-losses-negative": RUNS.assign(loss=-RUNS["loss"]).to_csv(index=False),
        "all-N-zero": RUNS.assign(N=0).to_csv(index=False),
    }
    cases = [Case(f"csv-{k}", _write("in.csv", v)) for k, v in fixed.items()]
    cases += [Case(f"csv-binary-{i}", _write("in.csv", _junk(i, 16 * 4**i))) for i in range(5)]
    cases.append(
        Case("csv-duplicate-rows", _write("in.csv", BASE_CSV + LINES[4] + "\n"), warned=True)
    )
    run = str(RUNS["run"][6])
    for col in ("N", "D", "C", "loss"):
        for i, bad in enumerate(BAD):
            text = _set_cells([(6, col, bad)])
            cases.append(Case(f"csv-{col}-bad{i}", _write("in.csv", text), listed=(run,)))
        for i, huge in enumerate(HUGE):
            cases.append(Case(f"csv-{col}-huge{i}", _write("in.csv", _set_cells([(6, col, huge)]))))
    rng = random.Random(SEED)
    for i in range(40):
        cells = [
            (rng.randrange(len(RUNS)), rng.choice(["N", "D", "C", "loss"]), rng.choice(BAD + HUGE))
            for _ in range(rng.randint(1, 6))
        ]
        text = _set_cells(cells)
        if rng.random() < 0.3:  # a torn write: the file ends at a random byte
            text = text[: rng.randrange(len(text))]
        listed = () if len(text) < len(BASE_CSV) else _bad_runs(cells)
        cases.append(Case(f"csv-random{i}", _write("in.csv", text), listed=listed))
    return cases + option_cases()


def _bad_runs(cells: Sequence[tuple[int, str, str]]) -> tuple[str, ...]:
    """Runs whose final row a fit cannot use (D is rebuilt from C, so a bad D alone counts)."""
    return tuple(sorted({str(RUNS["run"][r]) for r, _, text in cells if text in BAD}))


OPTIONS = [
    ("--holdout", "largest-C:0.2"), ("--holdout", "largest-C:abc"), ("--holdout", "largest-C:2"),
    ("--holdout", "largest-N"), ("--holdout", "N > 1e99"), ("--holdout", "N >"),
    ("--holdout", "N.__class__"), ("--holdout", "loss * 2"), ("--weights", "C ** 0.5"),
    ("--weights", "-C"), ("--weights", "0 * N"), ("--weights", "N @ N"),
    ("--weights", "log(-N)"), ("--weights", "1 / (N - N)"), ("--approaches", "abc"),
    ("--approaches", "7"), ("--approaches", ""), ("--target", "-1"), ("--target", "inf"),
    ("--target", "nan"), ("--target", "1e400"), ("--asymmetry", "0"), ("--asymmetry", "-1"),
    ("--law", "nonexistent"), ("--drop-highest", "100"), ("--drop-highest", "-3"),
    ("--ci", "2"), ("--ci", "nan"), ("--huber-delta", "-1"), ("--grid", "0"),
    ("--convention", "6n"), ("--columns", "N=nope"), ("--columns", "garbage"),
    ("--curves", "nothing*.csv"), ("--bootstrap", "-5"),
]  # fmt: skip


def option_cases() -> list[Case]:
    """The valid CSV with one option each (a few on the parametric law, most without)."""
    cases = []
    for i, (flag, value) in enumerate(OPTIONS):
        law = flag in ("--weights", "--law", "--huber-delta", "--asymmetry") or i % 7 == 0
        args = (*(LAW if law else FAST), flag, value)
        cases.append(Case(f"opt{i}{flag}", _write("in.csv", BASE_CSV), args=args))
    return cases


# ---- run stores --------------------------------------------------------------------------------


STORE_RUNS = RUNS.iloc[::2].reset_index(drop=True)  # 8 runs over 3 budgets: quick to write


_BASE_STORE: list[Path] = []  # filled by the base_store fixture


@pytest.fixture(scope="module", autouse=True)
def base_store(tmp_path_factory) -> Iterator[Path]:
    """The valid run store, written once (summary.json writes are fsynced) and copied per case."""
    _BASE_STORE.append(write_run_store(tmp_path_factory.mktemp("base"), STORE_RUNS, CURVES))
    yield _BASE_STORE[0]
    _BASE_STORE.clear()


def _store(mutate: Callable[[Path, random.Random], None], seed: int = 0) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        store = shutil.copytree(_BASE_STORE[0], root / "store")
        mutate(store / "demo", random.Random(seed))
        return store

    return make


def _run_dir(i: int) -> str:
    return str(STORE_RUNS["run"][i])


def _summary_edit(i: int, edit: Callable[[dict], object]) -> Callable[[Path, random.Random], None]:
    def mutate(demo: Path, rng: random.Random) -> None:
        path = demo / _run_dir(i) / "summary.json"
        data = json.loads(path.read_text())
        out = edit(data)
        path.write_text(out if isinstance(out, str) else json.dumps(data))

    return mutate


def _summary_bytes(i: int, data: bytes | Callable[[bytes], bytes]):
    def mutate(demo: Path, rng: random.Random) -> None:
        path = demo / _run_dir(i) / "summary.json"
        path.write_bytes(data(path.read_bytes()) if callable(data) else data)

    return mutate


def _metrics_edit(i: int, edit: Callable[[list[str], random.Random], str | bytes]):
    def mutate(demo: Path, rng: random.Random) -> None:
        path = demo / _run_dir(i) / "metrics.csv"
        out = edit(path.read_text().splitlines(), rng)
        path.write_bytes(out if isinstance(out, bytes) else out.encode())

    return mutate


def _set_key(key: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data[key] = value

    return edit


def _bad_steps(step: str) -> Callable[[list[str], random.Random], str]:
    def edit(lines: list[str], rng: random.Random) -> str:
        k = rng.randrange(1, len(lines))
        lines[k] = step + lines[k][lines[k].index(",") :]
        return "\n".join(lines) + "\n"

    return edit


def _field(index: int, value: str) -> Callable[[list[str], random.Random], str]:
    """Every data row of metrics.csv with field ``index`` set to ``value``."""

    def edit(lines: list[str], rng: random.Random) -> str:
        rows = [line.split(",") for line in lines]
        for row in rows[1:]:
            row[index] = value
        return "\n".join(",".join(r) for r in rows) + "\n"

    return edit


def store_cases() -> list[Case]:
    """Run stores with one damaged run (listed if the fit succeeds), or wholly broken."""
    v = _run_dir(3)
    summary: dict[str, Callable[[Path, random.Random], None]] = {
        "empty": _summary_bytes(3, b""),
        "binary": _summary_bytes(3, _junk(7, 300)),
        "list": _summary_bytes(3, b"[1, 2]"),
        "null": _summary_bytes(3, b"null"),
        "nan-literal": _summary_bytes(3, b"NaN"),
        **{f"cut{k}": _summary_bytes(3, lambda b, k=k: b[: len(b) * k // 7]) for k in range(1, 7)},
        "format99": _summary_edit(3, _set_key("format", 99)),
        "status-weird": _summary_edit(3, _set_key("status", "weird")),
        "status-running": _summary_edit(3, _set_key("status", "running")),
        "N-null": _summary_edit(3, _set_key("N", None)),
        "N-text": _summary_edit(3, _set_key("N", "many")),
        "N-zero": _summary_edit(3, _set_key("N", 0)),
        "N-negative": _summary_edit(3, _set_key("N", -5)),
        "N-fraction": _summary_edit(3, _set_key("N", 1.5)),
        "N-bool": _summary_edit(3, _set_key("N", True)),
        "D-zero": _summary_edit(3, _set_key("D", 0)),
        "C-empty": _summary_edit(3, _set_key("C", {})),
        "C-null": _summary_edit(3, _set_key("C", None)),
        "C-strings": _summary_edit(3, _set_key("C", {"chinchilla": "x"})),
        "budget-null": _summary_edit(3, _set_key("budget", None)),
        "budget-list": _summary_edit(3, _set_key("budget", [1])),
        "loss-nan": _summary_edit(3, lambda d: json.dumps({**d, "final_val_loss": float("nan")})),
        "loss-inf": _summary_edit(3, lambda d: json.dumps({**d, "final_val_loss": float("inf")})),
        "loss-negative": _summary_edit(3, _set_key("final_val_loss", -1.0)),
        "loss-text": _summary_edit(3, _set_key("final_val_loss", "low")),
        "missing-keys": _summary_edit(3, lambda d: json.dumps({"status": "completed"})),
        "old-guessed-keys": _summary_edit(3, lambda d: json.dumps({"val/loss": 3.0, "N": 1e6})),
        "deleted": lambda demo, rng: (demo / v / "summary.json").unlink(),
    }
    metrics: dict[str, Callable[[Path, random.Random], None]] = {
        **{f"step-{s or 'blank'}": _metrics_edit(3, _bad_steps(s)) for s in ("1e2", "nan", "", "3.5", "-", "0x10")},
        "binary": _metrics_edit(3, lambda lines, rng: _junk(3, 500)),
        "empty": _metrics_edit(3, lambda lines, rng: b""),
        "header-only": _metrics_edit(3, lambda lines, rng: lines[0] + "\n"),
        "ragged": _metrics_edit(3, lambda lines, rng: "\n".join(lines + ["1,2"]) + "\n"),
        "no-val-loss": _metrics_edit(3, lambda lines, rng: "\n".join(x.rsplit(",", 6)[0] for x in lines)),
        "loss-inf": _metrics_edit(3, _field(6, "inf")),
        "loss-negative": _metrics_edit(3, _field(6, "-2.5")),
        "tokens-negative": _metrics_edit(3, _field(1, "-4096")),
        "tokens-text": _metrics_edit(3, _field(1, "lots")),
        "torn-tail": _metrics_edit(3, lambda lines, rng: ("\n".join(lines))[:-17]),
    }  # fmt: skip
    damaged_by_summary = set(summary) - {"loss-negative"}
    cases = [
        Case(f"store-summary-{k}", _store(m), listed=(v,) if k in damaged_by_summary else ())
        for k, m in summary.items()
    ]
    listed_metrics = {"binary", "ragged", "no-val-loss"}
    cases += [
        Case(f"store-metrics-{k}", _store(m), listed=(v,) if k in listed_metrics else ())
        for k, m in metrics.items()
    ]
    cases += [
        Case("store-empty", lambda root: (root / "store").mkdir() or root / "store"),
        Case("store-all-corrupt", _store(_all(lambda i: _summary_bytes(i, b"{")))),
        Case("store-all-metrics-only", _store(_all(lambda i: lambda d, r: (d / _run_dir(i) / "summary.json").unlink()))),
        Case("store-duplicate-run", _store(lambda demo, rng: shutil.copytree(demo, demo.parent / "again")), warned=True),
        Case("store-is-a-file", _write("store", b"not a folder")),
        Case("store-missing", lambda root: root / "nothing-here"),
    ]  # fmt: skip
    rng = random.Random(SEED + 1)
    pool = list(summary.values()) + list(metrics.values())
    for i in range(20):
        picks = [rng.randrange(len(pool)) for _ in range(rng.randint(2, 5))]
        cases.append(Case(f"store-random{i}", _store(_all_of([pool[p] for p in picks]), seed=i)))
    return cases


def _all(per_run: Callable[[int], Callable[[Path, random.Random], None]]):
    return _all_of([per_run(i) for i in range(len(STORE_RUNS))])


def _all_of(mutations: Sequence[Callable[[Path, random.Random], None]]):
    def mutate(demo: Path, rng: random.Random) -> None:
        for m in mutations:
            with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, IndexError):
                m(demo, rng)  # a second edit of a file an earlier one broke or removed

    return mutate


# ---- results folders (scaling-plot) ------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A valid results folder of all three approaches, written by scaling-fit."""
    root = tmp_path_factory.mktemp("results")
    store = write_run_store(root / "store", RUNS, CURVES)
    out = root / "fit"
    argv = [str(store), "--out", str(out), "--bootstrap", "0", "--grid", "20"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert fit_main(argv) == 0
    return out


def _nulls(tree: object, rng: random.Random, p: float) -> object:
    """``tree`` with some values (leaves or whole subtrees) replaced by null."""
    if rng.random() < p / 4:
        return None
    if isinstance(tree, dict):
        return {k: _nulls(v, rng, p) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_nulls(v, rng, p) for v in tree]
    return None if rng.random() < p else tree


def _result_edit(name: str, edit: Callable[[bytes, random.Random], bytes | None], seed: int = 0):
    def mutate(res: Path) -> None:
        path = res / name
        out = edit(path.read_bytes(), random.Random(seed))
        if out is None:
            path.unlink()
        else:
            path.write_bytes(out)

    return mutate


def _json_edit(fn: Callable[[dict, random.Random], object], seed: int = 0):
    return _result_edit(
        "fit.json", lambda b, rng: json.dumps(fn(json.loads(b), rng)).encode(), seed
    )


def _csv_edit(name: str, fn: Callable[[pd.DataFrame], pd.DataFrame]):
    return _result_edit(
        name, lambda b, rng: fn(pd.read_csv(io.BytesIO(b))).to_csv(index=False).encode()
    )


def _set_path(keys: Sequence[str], value: object) -> Callable[[dict, random.Random], object]:
    def fn(d: dict, rng: random.Random) -> object:
        node = d
        for k in keys[:-1]:
            node = node.get(k) or {}
        if isinstance(node, dict):
            node[keys[-1]] = value
        return d

    return fn


@dataclass(frozen=True)
class PlotCase:
    """One damaged results folder and the figure to draw from it."""

    id: str
    mutate: Callable[[Path], None]
    figure: str = "isoflop"


def plot_cases() -> list[PlotCase]:
    """Results folders with a damaged fit.json, runs.csv or curves.csv."""
    fit_bytes = {
        "empty": lambda b, rng: b"",
        "binary": lambda b, rng: _junk(11, 400),
        "list": lambda b, rng: b"[]",
        "null": lambda b, rng: b"null",
        "object": lambda b, rng: b"{}",
        "deleted": lambda b, rng: None,
        **{f"cut{k}": (lambda b, rng, k=k: b[: len(b) * k // 9]) for k in range(1, 9)},
    }
    cases = [PlotCase(f"fitjson-{k}", _result_edit("fit.json", e)) for k, e in fit_bytes.items()]
    paths = {
        "format99": (["format"], 99),
        "a3-N_coef-null": (["approach3", "N_coef"], None),
        "a3-alpha-negative": (["approach3", "law", "params", "alpha"], -0.3),
        "a3-null": (["approach3"], None),
        "a1-null": (["approach1"], None),
        "a2-null": (["approach2"], None),
        "excluded-null": (["excluded"], None),
        "targets-text": (["targets"], "many"),
        "config-null": (["config"], None),
    }
    figures = ("compute_optimal", "isoflop", "surface", "parity", "learning_curves")
    for i, (k, (keys, value)) in enumerate(paths.items()):
        cases.append(PlotCase(f"fitjson-{k}", _json_edit(_set_path(keys, value)), figures[i % 5]))
    for i in range(14):
        fn = lambda d, rng: _nulls(d, rng, 0.08)  # noqa: E731
        cases.append(PlotCase(f"fitjson-nulls{i}", _json_edit(fn, seed=i), figures[i % 5]))
    nan_n = lambda df: df.assign(N=[float("nan")] + list(df["N"][1:]))  # noqa: E731
    for name in ("runs.csv", "curves.csv"):
        stem = name.split(".")[0]
        fig = "learning_curves" if stem == "curves" else "isoflop"
        cases += [
            PlotCase(f"{stem}-deleted", _result_edit(name, lambda b, rng: None), fig),
            PlotCase(f"{stem}-empty", _result_edit(name, lambda b, rng: b""), fig),
            PlotCase(f"{stem}-binary", _result_edit(name, lambda b, rng: _junk(5, 300)), fig),
            PlotCase(f"{stem}-ragged", _result_edit(name, lambda b, rng: b + b"1,2\n"), fig),
            PlotCase(f"{stem}-header-only", _result_edit(name, lambda b, rng: b.split(b"\n")[0]), fig),
            PlotCase(f"{stem}-N-nan", _csv_edit(name, nan_n), fig),
            PlotCase(f"{stem}-no-loss", _csv_edit(name, lambda df: df.drop(columns="loss")), fig),
            PlotCase(f"{stem}-text-N", _csv_edit(name, lambda df: df.assign(N="big")), fig),
        ]  # fmt: skip
    cases.append(PlotCase("curves-unknown-runs", _csv_edit("curves.csv", lambda df: df.assign(run="ghost")), "learning_curves"))  # fmt: skip
    return cases


# ---- the checks --------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file()
    }


def _call(main: Callable[[list[str]], int], argv: list[str], cwd: Path) -> tuple[int, str]:
    """Exit code and stderr of ``main(argv)`` run in ``cwd``; any exception fails the test."""
    err, old = io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own exit for a malformed option
                code = exc.code
    finally:
        os.chdir(old)
    return code, err.getvalue()


def _check_exit(code: int, err: str, prog: str) -> None:
    assert "Traceback (most recent call last)" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert f"{prog}: error: " in err, err
        lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
        assert len(lines) == 1, err


def _check_writes(before: dict, after: dict, out: Path, root: Path) -> None:
    changed = {p for p, v in after.items() if before.get(p) != v}
    outside = {p for p in changed if not (root / p).resolve().is_relative_to(out.resolve())}
    assert outside == set(), f"written outside --out: {sorted(outside)}"


# The fast suite runs one case of each generator (a kind of damage per input format, one
# random mix each); the full few hundred run under `slow` (CI runs both).
FAST_CASES = {
    *("csv-empty", "csv-header-only", "csv-short-row", "csv-nul-byte", "csv-no-loss"),
    *("csv-binary-0", "csv-N-bad0", "csv-N-huge2", "csv-loss-bad3", "csv-random0"),
    *("opt0--holdout", "opt8--weights", "opt14--approaches", "opt17--target", "opt31--columns"),
    *("store-summary-cut3", "store-summary-N-text", "store-summary-deleted", "store-empty"),
    *("store-metrics-step-nan", "store-metrics-torn-tail", "store-duplicate-run", "store-random0"),
    *("fitjson-cut1", "fitjson-a3-alpha-negative", "fitjson-nulls0", "runs-header-only"),
    *("curves-N-nan", "curves-unknown-runs"),
}


def fast_subset(cases: Sequence[Case | PlotCase]) -> list:
    """`cases` as test parameters: those outside FAST_CASES marked slow."""
    return [
        pytest.param(c, id=c.id, marks=() if c.id in FAST_CASES else pytest.mark.slow)
        for c in cases
    ]


def test_fast_cases_exist() -> None:
    ids = {c.id for c in (*csv_cases(), *store_cases(), *plot_cases())}
    assert ids >= FAST_CASES, sorted(FAST_CASES - ids)  # a renamed case is not lost silently


@pytest.mark.parametrize("case", fast_subset(csv_cases() + store_cases()))
def test_scaling_fit_survives(case: Case, tmp_path: Path) -> None:
    source = case.make(tmp_path)
    out = tmp_path / "out"
    before = _snapshot(tmp_path)
    code, err = _call(fit_main, [str(source), "--out", str(out), *case.args], tmp_path)
    _check_exit(code, err, "scaling-fit")
    _check_writes(before, _snapshot(tmp_path), out, tmp_path)
    if code == 2:
        assert not out.exists() or not any(out.iterdir()), "a refused fit wrote outputs"
        return
    report = json.loads((out / "fit.json").read_text())
    excluded = {e["run"] for e in report["excluded"]}
    assert set(case.listed) <= excluded, (case.listed, report["excluded"])
    if case.warned:
        assert report["warnings"], "duplicate runs went unreported"


@pytest.mark.parametrize("case", fast_subset(plot_cases()))
def test_scaling_plot_survives(case: PlotCase, results: Path, tmp_path: Path) -> None:
    res = tmp_path / "results"
    shutil.copytree(results, res)
    case.mutate(res)
    out = tmp_path / "figures"
    before = _snapshot(tmp_path)
    argv = [str(res), "--out", str(out), "--format", "png", "--only", case.figure]
    code, err = _call(plot_main, argv, tmp_path)
    _check_exit(code, err, "scaling-plot")
    _check_writes(before, _snapshot(tmp_path), out, tmp_path)
    if code == 0:
        assert (out / f"{case.figure}.png").stat().st_size > 0
