"""docs/formats.md section 3 lists exactly the fields of the fit.json dataclasses and of FitConfig.

After changing `analysis/results.py` or `analysis/fitconfig.py`, regenerate the tables with
`SCALING_UPDATE_DOCS=1 pytest tests/test_fit_doc.py` and review the diff.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from analysis import results
from analysis.fitconfig import FitConfig
from contract import field_docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
BLOCK = re.compile(r"(<!-- fit-fields:start -->\n)(.*?)(<!-- fit-fields:end -->)", re.S)
# In the order a reader meets them in fit.json.
CLASSES = (
    results.FitReport,
    FitConfig,
    results.Bootstrap,
    results.Exclusion,
    results.Approach1Result,
    results.Envelope,
    results.EnvelopePoint,
    results.Approach2Result,
    results.IsoflopBudget,
    results.Approach3Result,
    results.LawFit,
    results.Estimate,
    results.Allocation,
    results.Target,
    results.Band,
    results.HoldoutCheck,
    results.HoldoutRun,
    results.CurvesResult,
    results.CurveScore,
    results.CurvePrediction,
    results.Verification,
    results.VerificationRun,
)


def fields_table(cls: type) -> list[str]:
    """A heading with the class docstring and one markdown row per field."""
    docs = field_docs(cls)
    rows = [f"#### `{cls.__name__}`", "", cls.__doc__.splitlines()[0], ""]
    rows += ["| key | type | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        kind = str(f.type).replace("|", "\\|")  # a bare | would split the markdown cell
        rows.append(f"| `{f.name}` | `{kind}` | {docs[f.name]} |")
    return [*rows, ""]


def fit_tables() -> str:
    """The generated text between the markers of docs/formats.md section 3."""
    return "\n".join(line for cls in CLASSES for line in fields_table(cls))


def test_every_fit_dataclass_is_documented() -> None:
    """Every dataclass of analysis/results.py is in the generated section, with a docstring
    per field."""
    defined = {
        obj
        for obj in vars(results).values()
        if dataclasses.is_dataclass(obj) and obj.__module__ == results.__name__
    }
    assert defined | {FitConfig} == set(CLASSES)
    for cls in CLASSES:
        assert set(field_docs(cls)) == {f.name for f in dataclasses.fields(cls)}, cls


def test_formats_doc_lists_the_fit_fields() -> None:
    text = DOC.read_text()
    m = BLOCK.search(text)
    assert m, f"{DOC}: section 3 lost its <!-- fit-fields --> markers"
    want = fit_tables()
    if os.environ.get("SCALING_UPDATE_DOCS"):
        DOC.write_text(text[: m.start(2)] + want + text[m.end(2) :])
        return
    assert m.group(2) == want, "regenerate with SCALING_UPDATE_DOCS=1 (see the module docstring)"
