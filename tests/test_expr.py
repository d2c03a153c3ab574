"""Safe --weights/--holdout expressions: exploits run nothing, valid rules keep their results."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_analysis import synthetic

from analysis.cli import main as fit_main
from analysis.expr import ExprError, mask_of, parse, values_of

SCALING_FIT = shutil.which("scaling-fit", path=str(Path(sys.executable).parent))

EXPLOITS = [
    ("--weights", "@pd.io.common.os.system('touch pwned')"),
    (
        "--holdout",
        "N.__class__.__init__.__globals__['warnings'].sys.modules['os'].system('touch pwned') == 0",
    ),
    (
        "--weights",
        "N.__class__.__init__.__globals__['__builtins__']['exec']('open(\"pwned\",\"w\")')",
    ),
    ("--holdout", "__import__('os').system('touch pwned') == 0"),
    ("--weights", "[c for c in ().__class__.__base__.__subclasses__()][0]"),
    ("--holdout", "N @ N"),
]


@pytest.fixture(scope="module")
def csv_source(tmp_path_factory) -> Path:
    runs, _ = synthetic(budgets=(1e17, 1e18, 1e19), sizes_per_budget=5, curve_points=3)
    runs["size"] = np.where(runs["N"] > runs["N"].median(), "3B", "1B")
    path = tmp_path_factory.mktemp("src") / "runs.csv"
    runs.to_csv(path, index=False)
    return path


EXPLOIT_IDS = [f"{f}-{i}" for i, (f, _) in enumerate(EXPLOITS)]


@pytest.mark.parametrize(("flag", "text"), EXPLOITS, ids=EXPLOIT_IDS)
def test_exploits_through_main_run_nothing(csv_source, tmp_path, monkeypatch, capfd, flag, text):
    """scaling-fit's own main in this process (capfd sees what a shell it started would print):
    exit 2, one line, no file anywhere. The console-script twin below runs under `slow`."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert fit_main([str(csv_source), "--out", str(out), "--bootstrap", "0", flag, text]) == 2
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder either
    captured = capfd.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scaling-fit: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.slow
@pytest.mark.parametrize(("flag", "text"), EXPLOITS, ids=EXPLOIT_IDS)
def test_exploits_through_the_cli_run_nothing(csv_source, tmp_path, flag, text):
    """The real console script refuses the expression: exit 2, one line, no file anywhere."""
    assert SCALING_FIT, "scaling-fit is not installed next to this Python"
    out = tmp_path / "out"
    proc = subprocess.run(
        [SCALING_FIT, str(csv_source), "--out", str(out), "--bootstrap", "0", flag, text],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder either
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scaling-fit: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_echo_exploit_prints_nothing(csv_source, tmp_path):
    rule = "N.__class__.__init__.__globals__['warnings'].sys.modules['os'].system('echo x') == 0"
    proc = subprocess.run(
        [SCALING_FIT, str(csv_source), "--out", str(tmp_path / "o"), "--holdout", rule],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "x" not in proc.stdout.split()
    assert "attribute access" in proc.stderr or "calling anything" in proc.stderr


TABLE = pd.DataFrame(
    {
        "run": ["a", "b", "c", "d"],
        "size": ["1B", "3B", "3B", np.nan],
        "N": [1e8, 2e9, 3e9, np.nan],
        "D": [1e10, 1e13, 1e11, 5e11],
        "C": [4.0, 9.0, 16.0, 25.0],
        "heldout": [False, True, False, False],
    }
)


@pytest.mark.parametrize(
    "text",
    [
        "C ** 0.5",
        "N / 1e9 + 2 * D / 1e12",
        "-C + 30",
        "sqrt(C)",
        "log(C)",
        "exp(C / 10)",
        "C * (N > 1e9)",
    ],
)
def test_values_match_pandas_eval(text):
    """What the old `runs.eval` gave for a plain expression, the safe evaluator gives too."""
    np.testing.assert_allclose(values_of(text, TABLE), TABLE.eval(text).to_numpy(float))


@pytest.mark.parametrize(
    "text",
    [
        "size == '3B'", "size != '3B'", "N > 1e9 and D < 1e12", "N > 1e9 & D < 1e12",
        "N > 1e9 or heldout", "not (N > 1e9)", "~heldout", "1e9 < N < 2.5e9",
        "size in ['1B', '3B']", "size not in ['1B']", "(C > 5) | (C < 1)",
    ],
)  # fmt: skip
def test_masks_match_pandas_query(text):
    """What the old `runs.query` selected, the safe evaluator selects too."""
    expected = TABLE.index.isin(TABLE.query(text).index)
    np.testing.assert_array_equal(mask_of(text, TABLE), expected)


def test_min_max_of_a_column_and_row_by_row():
    np.testing.assert_array_equal(mask_of("N > min(N)", TABLE), [False, True, True, False])
    np.testing.assert_allclose(values_of("max(C, 10)", TABLE), [10, 10, 16, 25])
    np.testing.assert_allclose(values_of("min(C, 10, 5)", TABLE), [4, 5, 5, 5])


def test_numbers_are_floats_so_huge_powers_do_not_hang():
    assert np.isinf(values_of("9 ** 9 ** 9", TABLE)).all()
    assert np.isinf(values_of("10 ** 400 + C", TABLE)).all()


@pytest.mark.parametrize(
    ("text", "piece"),
    [
        ("N.__class__", "attribute access"),
        ("N[0]", "subscripting"),
        ("foo > 1", "the name 'foo' (not a column)"),
        ("getattr(N, 'x')", "calling anything but the listed functions"),
        ("log(C, 2)", "log with 2 arguments"),
        ("sqrt(x=C)", "keyword or * arguments"),
        ("size + 'x' == 'a'", "a string outside a comparison"),
        ("N @ N", "the operator MatMult"),
        ("N if N else C", "an if-expression"),
        ("lambda: 0", "a lambda"),
        ("(N := 1)", "assignment"),
        ("N > [1]", "a list outside"),
        ("size in [N]", "not a literal"),
        ("log", "without a call"),
        ("@x", "`@` names are not allowed"),
        ("N +", "is not a valid expression"),
        ("", "empty expression"),
        ("N" + " + N" * 100, "nests deeper"),
        ("N" * 2000, "at most 1000"),
    ],
)
def test_refused_expressions_name_the_piece_and_what_is_allowed(text, piece):
    with pytest.raises(ExprError) as err:
        parse(text, list(TABLE.columns))
    message = str(err.value)
    assert piece in message and "\n" not in message
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("text", "fn", "msg"),
    [
        ("size * 2", values_of, "is not numeric"),
        ("N and C", mask_of, "is not a condition"),
        ("C * 2", mask_of, "is not a condition"),
        ("size == '3B'", values_of, None),  # a condition weighs 0 or 1
        ("size < 1", mask_of, "cannot be evaluated"),
    ],
)
def test_kinds_are_checked_on_evaluation(text, fn, msg):
    if msg is None:
        np.testing.assert_array_equal(fn(text, TABLE), [0, 1, 1, 0])
        return
    with pytest.raises(ExprError, match=msg):
        fn(text, TABLE)
