"""docs/formats.md section 1 lists exactly the fields of RunSummary (generated from them).

After changing `contract.RunSummary` or `BudgetRecord`, regenerate the tables with
`SCALING_UPDATE_DOCS=1 pytest tests/test_run_store_doc.py` and review the diff.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from contract import BudgetRecord, RunSummary, Status, field_docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
BLOCK = re.compile(r"(<!-- summary-fields:start -->\n)(.*?)(<!-- summary-fields:end -->)", re.S)


def fields_table(cls: type, prefix: str = "") -> list[str]:
    """One markdown row per dataclass field: key, type, its docstring."""
    docs = field_docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        kind = str(f.type).replace("|", "\\|")  # a bare | would split the markdown cell
        rows.append(f"| `{prefix}{f.name}` | `{kind}` | {docs[f.name]} |")
    return rows


def summary_tables() -> str:
    """The generated text between the markers of docs/formats.md section 1."""
    statuses = ", ".join(f"`{s.value}`" for s in Status)
    lines = [
        "| key | type | meaning |",
        "|---|---|---|",
        *fields_table(RunSummary),
        *fields_table(BudgetRecord, prefix="budget."),
        "",
        f"`status` is one of {statuses} (the last two are assigned by readers, never written).",
        "",
    ]
    return "\n".join(lines)


def test_formats_doc_lists_the_run_summary_fields() -> None:
    text = DOC.read_text()
    m = BLOCK.search(text)
    assert m, f"{DOC}: section 1 lost its <!-- summary-fields --> markers"
    want = summary_tables()
    if os.environ.get("SCALING_UPDATE_DOCS"):
        DOC.write_text(text[: m.start(2)] + want + text[m.end(2) :])
        return
    documented = re.findall(r"^\| `([\w.]+)` \|", m.group(2), re.M)
    fields = [f.name for f in dataclasses.fields(RunSummary)]
    fields += [f"budget.{f.name}" for f in dataclasses.fields(BudgetRecord)]
    assert documented == fields
    assert m.group(2) == want, "regenerate with SCALING_UPDATE_DOCS=1 (see the module docstring)"
