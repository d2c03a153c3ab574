"""Sweep progress beside the runs: each finishing job prints "k/n runs done, time left".

The sweep writes `.sweep_progress.json` into each experiment folder it launches into; a job
that ends reads it and counts its siblings' statuses. Imports only the run contract, so the
trainer can use it without importing the sweep planner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from contract import SummaryError, atomic_write_text, read_summary

PROGRESS_FILE = ".sweep_progress.json"


def write_progress(sweep: str, roots: Iterable[Path]) -> None:
    """Record a sweep's run folders beside them, so each finishing job can say "k/n done"."""
    by_dir: dict[Path, list[str]] = {}
    for root in roots:
        by_dir.setdefault(root.parent, []).append(root.name)
    for folder, names in by_dir.items():
        data = {"sweep": sweep, "runs": names, "started": time.time()}
        atomic_write_text(folder / PROGRESS_FILE, json.dumps(data))


def _ended(root: Path) -> bool:
    """Whether the run at `root` has ended (completed or diverged); a corrupt record has not."""
    try:
        s = read_summary(root / "summary.json")
    except SummaryError:
        return False
    return s is not None and s.status.ended


def progress_line(run_root: Path) -> str | None:
    """'[sweep demo] 5/12 runs done, 1m20s elapsed, ~2m left' for a run of a launched sweep."""
    f = run_root.parent / PROGRESS_FILE
    try:
        data = json.loads(f.read_text())
        names, sweep, started = list(data["runs"]), str(data["sweep"]), float(data["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if run_root.name not in names:
        return None
    done = sum(_ended(run_root.parent / n) for n in names)
    total, elapsed = len(names), time.time() - started
    left = f", ~{_dur(elapsed / done * (total - done))} left" if 0 < done < total else ""
    return f"[sweep {sweep}] {done}/{total} runs done, {_dur(elapsed)} elapsed{left}"


def _dur(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"
