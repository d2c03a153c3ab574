"""The plan table printed before a launch, and the end table printed after it."""

from __future__ import annotations

from contract import Status
from scaling.sweep.estimate import fmt_time
from scaling.sweep.runs import NEW, PlannedRun, SweepPlan, ended, read_state

SKIPPED = "skipped"  # ended before this launch: not trained again
LOCKED = "locked"  # another process held the run folder: this launch skipped it
OUTCOMES = ("completed", "diverged", "failed", SKIPPED, LOCKED, Status.CORRUPT.value)
SHOWN_IF_ANY = (LOCKED, Status.CORRUPT.value)  # in the counts line only when they occur


def format_plan(sp: SweepPlan) -> str:
    """The plan as a table: every run, what is dropped, total FLOPs, estimated wall time."""
    spec = sp.spec
    lines = [
        f"sweep {spec.name} ({spec.kind}): {len(sp.runs)} runs, {len(sp.to_launch)} to launch, "
        f"{len(sp.dropped)} dropped; launcher {sp.launcher} x{sp.parallel}"
        + (f", {sp.threads} thread(s)/run" if sp.threads else ""),
        f"{'run':<28} {'stage':>5} {'N':>11} {'D':>11} {f'C ({sp.convention})':>16} "
        f"{'steps':>7} {'D/N':>7} {'lr':>8} {'est':>6}  status",
    ]
    for r in sp.runs:
        lines.append(
            f"{r.name:<28} {r.stage:>5} {r.N:>11,} {r.D:>11,} {r.C:>16.4g} {r.steps:>7} "
            f"{r.D / r.N:>7.3g} {r.lr:>8.3g} {fmt_time(r.est_s):>6}  {r.status}"
        )
    if sp.dropped:
        lines.append(f"dropped ({len(sp.dropped)}):")
        lines += [f"  {n}: {why}" for n, why in sp.dropped]
    if sp.corrupt:
        lines.append(
            f"corrupt ({len(sp.corrupt)}), not launched: repair or move aside each folder, "
            "then relaunch:"
        )
        lines += [f"  {r.name}: {r.state.error}" for r in sp.corrupt]
    todo = sp.to_launch
    c_all = sum(r.C for r in sp.runs)
    c_todo = sum(r.C for r in todo) if todo else 0.0
    lines.append(
        f"total: {c_all:.4g} FLOPs ({sp.convention}) over {len(sp.runs)} runs; to launch: "
        f"{c_todo:.4g} FLOPs in {len(todo)} runs, estimated wall time {fmt_time(sp.makespan_s)}"
    )
    if sp.saving:
        w = sp.saving
        lines.append(
            f"wsd: {w['wsd']:.4g} FLOPs for the whole L(N, D) grid vs {w['scratch']:.4g} from "
            f"scratch: {100 * w['saved_frac']:.0f}% saved"
        )
    lines += [f"warning: {w}" for w in sp.warnings]
    return "\n".join(lines)


def run_outcome(r: PlannedRun) -> tuple[str, str]:
    """(outcome, detail) of one run after a launch; the outcome is one of OUTCOMES."""
    if ended(r.status):
        return SKIPPED, f"already {r.status}"
    if r.status == Status.CORRUPT.value:
        return r.status, r.state.error or ""
    if r.held_by is not None:
        return LOCKED, f"held by {r.held_by}: skipped (that process trains it)"
    now = read_state(r.root)
    if now.status == Status.CORRUPT.value:
        return now.status, now.error or ""
    if now.status == Status.COMPLETED.value:
        v = now.final_val_loss
        return now.status, (f"val_loss {v:.4f}" if v is not None else "")
    st = now.status if now.status == Status.DIVERGED.value else Status.FAILED.value
    return st, r.note or now.error or ("no record" if now.status == NEW else "")


def outcome(sp: SweepPlan) -> tuple[list[tuple[PlannedRun, str, str]], dict[str, int]]:
    """Each run's outcome after a launch: (run, outcome, detail), and the count of each."""
    rows = []
    counts = dict.fromkeys(OUTCOMES, 0)
    for r in sp.runs:
        st, detail = run_outcome(r)
        counts[st] += 1
        rows.append((r, st, detail))
    return rows, counts


def format_outcome(sp: SweepPlan, wall_s: float) -> str:
    """The end-of-sweep table: completed / diverged / failed / skipped (/ locked / corrupt)."""
    rows, counts = outcome(sp)
    lines = [f"sweep {sp.spec.name}: results", f"{'run':<28} {'status':<10} detail"]
    lines += [f"{r.name:<28} {st:<10} {detail}" for r, st, detail in rows]
    shown = [k for k in OUTCOMES if k not in SHOWN_IF_ANY or counts[k]]
    lines.append(
        " / ".join(f"{k} {counts[k]}" for k in shown)
        + f" ({len(sp.dropped)} dropped by the plan); wall time {fmt_time(wall_s)}"
    )
    if sp.saving:
        lines.append(f"wsd: {100 * sp.saving['saved_frac']:.0f}% of the from-scratch FLOPs saved")
    return "\n".join(lines)
