"""A golden loss curve: a tiny seeded run must reproduce the stored curve.

Catches silent changes to initialisation, data order, the optimiser or the schedule (torchtitan
keeps such a test). After an intended change, regenerate with
`SCALING_UPDATE_GOLDEN=1 pytest tests/test_golden.py` and say why in the commit.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import pytest

from scaling.store import schema_defaults
from scaling.train import train

GOLDEN = Path(__file__).parent / "golden" / "tiny_markov.json"
DEFAULTS = Path(__file__).parent / "golden" / "schema_defaults.json"
OVERRIDES = (
    "data=markov",
    "data.markov.n_tokens=200000",
    "train.steps=40",
    "train.n_evals=6",
    "experiment=golden",
)


def test_golden_loss_curve(tiny_cfg) -> None:
    cfg = tiny_cfg(*OVERRIDES)
    s = dataclasses.asdict(train(cfg).summary)
    with (Path(cfg.runs_dir) / "golden" / s["run"] / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    curve = {
        "train_loss": {r["step"]: float(r["train_loss"]) for r in rows if r["train_loss"]},
        "val_loss": {r["step"]: float(r["val_loss"]) for r in rows if r["val_loss"]},
        "N": s["N"],
        "D": s["D"],
        "corpus_hash": s["corpus_hash"],
    }
    if os.environ.get("SCALING_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(curve, indent=1, sort_keys=True) + "\n")
    gold = json.loads(GOLDEN.read_text())
    assert (curve["N"], curve["D"], curve["corpus_hash"]) == (
        gold["N"],
        gold["D"],
        gold["corpus_hash"],
    )
    for key in ("train_loss", "val_loss"):
        assert curve[key].keys() == gold[key].keys()
        for step, v in gold[key].items():
            # fp32 CPU kernels may differ in the last bits between machines; 2e-3 nats is far
            # below any real change (a different seed moves these by > 1e-2)
            assert curve[key][step] == pytest.approx(v, abs=2e-3), (key, step)


def test_schema_defaults_only_grow() -> None:
    """The config hash leaves out values at their schema default (docs/formats.md, the migration
    rule), so an old run means what its default meant: a default may be added, never changed or
    removed. After adding settings, regenerate with SCALING_UPDATE_GOLDEN=1."""
    now = schema_defaults()
    if os.environ.get("SCALING_UPDATE_GOLDEN"):
        DEFAULTS.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    stored = json.loads(DEFAULTS.read_text())
    changed = {k: (v, now.get(k, "(removed)")) for k, v in stored.items() if now.get(k, k) != v}
    assert not changed, (
        f"schema defaults changed {changed}: old runs' hashes would now mean the new default; "
        "give the new behaviour a new value or setting instead"
    )
