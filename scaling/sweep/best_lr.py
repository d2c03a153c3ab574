"""`scaling-best-lr`: choose each size's peak LR from an lr sweep into conf/optim/<name>.yaml."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from contract import RunSummary, Status, SummaryError, read_summary
from scaling.config import ConfigError
from scaling.family import SIZES

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LrChoice:
    """One size's best run of an lr sweep."""

    run: RunSummary  # the completed run with the lowest final validation loss
    lr_grid: list[float]  # the LRs that completed for this size
    at_grid_edge: bool  # the best is the smallest or largest LR tried: the optimum may lie outside

    @property
    def lr(self) -> float:
        """The chosen peak LR."""
        return self.run.lr


@dataclass
class LrSweepResult:
    """The choice per size, and the runs whose summary.json could not be read."""

    best: dict[str, LrChoice]
    corrupt: list[SummaryError] = field(default_factory=list)


def best_lr(runs_dir: Path) -> LrSweepResult:
    """Per size, the lr-sweep run with the lowest final validation loss (corrupt runs listed)."""
    done: dict[str, list[RunSummary]] = {}
    corrupt: list[SummaryError] = []
    for path in sorted(Path(runs_dir).glob("*/summary.json")):
        try:
            s = read_summary(path)
        except SummaryError as e:
            corrupt.append(e)
            continue
        if s is not None and s.status is Status.COMPLETED and s.final_val_loss is not None:
            done.setdefault(s.size, []).append(s)
    if not done:
        raise ConfigError(f"no completed runs under {runs_dir}; run the lr sweep first")
    best: dict[str, LrChoice] = {}
    for size, runs in done.items():
        budgets = sorted({r.budget.label for r in runs})
        if len(budgets) > 1:  # losses at different budgets do not rank learning rates
            raise ConfigError(
                f"{runs_dir}: size {size} has lr runs at several budgets {budgets}; "
                "choose LRs from one budget (one lr sweep per folder)"
            )
        grid = sorted({r.lr for r in runs})
        b = min(runs, key=lambda r: r.final_val_loss or 0.0)
        best[size] = LrChoice(b, grid, len(grid) > 1 and b.lr in (grid[0], grid[-1]))
    return LrSweepResult(best, corrupt)


def write_tuned(best: dict[str, LrChoice], out: Path, source: Path) -> str:
    """conf/optim/<name>.yaml: adamw with the chosen LR of every size in optim.lr_table."""
    order = {n: i for i, n in enumerate(SIZES)}
    lines = [
        f"# Written by `scaling-best-lr {source}`: the peak LR with the lowest",
        "# final validation loss per size in that lr sweep. Sizes not listed use optim.lr.",
        "defaults:",
        "  - adamw",
        "  - _self_",
        "",
        "lr_table:",
    ]
    for size in sorted(best, key=lambda n: order.get(n, len(order))):
        c = best[size]
        edge = "; at the edge of the grid tried" if c.at_grid_edge else ""
        lines.append(
            f"  {size}: {c.lr:.6g}  # val_loss {c.run.final_val_loss:.4f} ({c.run.run}){edge}"
        )
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def parser() -> argparse.ArgumentParser:
    """The command line of scaling-best-lr."""
    p = argparse.ArgumentParser(
        prog="scaling-best-lr",
        description="Choose each model size's peak learning rate from the completed runs of "
        "an lr sweep (`scaling-train -m +sweep=lr`) and write them as an optim option; use it "
        "with optim=<name> (default optim=tuned).",
    )
    p.add_argument("runs", type=Path, help="the lr sweep's run folder, e.g. runs/lr")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "conf" / "optim" / "tuned.yaml",
        help="the optim option to write (default: conf/optim/tuned.yaml)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`scaling-best-lr runs/lr [--out conf/optim/tuned.yaml]`."""
    p = parser()
    args = p.parse_args(argv)
    try:
        result = best_lr(args.runs)
        text = write_tuned(result.best, args.out, args.runs)
    except (ConfigError, OSError) as e:
        p.error(str(e))
    for e in result.corrupt:
        print(f"warning: {e} (left out)", file=sys.stderr)
    for size, c in result.best.items():
        if c.at_grid_edge:
            print(
                f"warning: {size}: the best LR {c.lr:g} is at the edge of the grid "
                f"[{', '.join(f'{x:g}' for x in c.lr_grid)}]; the optimum may lie beyond "
                "it: extend sweep.lrs",
                file=sys.stderr,
            )
    print(text + f"-> {args.out} (use it with optim={args.out.stem})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
