"""`scaling-dashboard`: the sweep's W&B workspace as code, ready when the user opens it.

W&B's automatic workspace shows one linear-axis chart per metric against the step. A scaling
study wants, for one sweep group: loss against tokens and against FLOPs on log-log axes with one
colour per model size, final loss against N per compute budget, and the analysis run's figures
and fit table beside them. `build_workspace` makes that view with W&B's own library
(``wandb-workspaces``) as a pure function of the group (nothing reaches W&B, so it is tested
offline); `publish` saves it, updating the workspace of the same name if the project has one
(a second call never duplicates it).

What the panels read (written elsewhere, named here once):
- training runs' history keys: `contract.WANDB_KEYS` (tokens, flops/<convention>,
  val/loss, train/loss), and their summary's run record (`RunSummary`: N, final_val_loss);
- the analysis run (`analysis/wandb_log.py`, same group): tables ``fit`` and ``runs``, images
  ``figures/<name>`` for each figure of `analysis.plots.FIGURES`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import wandb
import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from matplotlib.colors import to_hex
from wandb_workspaces import expr
from wandb_workspaces._graphql import execute_graphql

from analysis.plots import FIGURES
from analysis.style import size_colors
from analysis.wandb_fetch import FetchError, FetchSettings, Retrier, list_runs
from contract import CONVENTIONS, WANDB_KEYS
from contract import wandb_has_credentials as has_credentials

NAME_PREFIX = "scaling: "
"""A group's workspace is named NAME_PREFIX + group: how a second call finds it again."""
N_KEY = "N"
"""RunSummary's N (non-embedding parameters), in each training run's summary and config."""
FINAL_LOSS_KEY = "final_val_loss"
"""RunSummary's final validation loss, in each training run's summary."""
RUNS_TABLE, FIT_TABLE = "runs", "fit"
"""The analysis run's tables (analysis/wandb_log.py): one row per run, one per fitted value."""
FIGURE_KEYS = tuple(f"figures/{name}" for name in FIGURES)
"""The analysis run's figure images (analysis/wandb_log.py logs figures/<stem>)."""
MIN_RUNS_SHOWN = 100
"""Panels show at least this many runs (W&B's default is the first 10: a ladder has more)."""
LIST_PAGE = 500
"""Runs per listing page when colouring the group's runs."""


@dataclass(frozen=True)
class SizedRun:
    """A training run of the group, coloured by its model size."""

    id: str
    """The W&B run id (the key of its colour in the workspace)."""
    N: float
    """Its non-embedding parameter count (the run record's N)."""


def workspace_name(group: str) -> str:
    """The name of a group's workspace (how `publish` finds it again)."""
    return f"{NAME_PREFIX}{group}"


def run_colors(runs: Sequence[SizedRun]) -> dict[str, str]:
    """One colour per model size (the figures' size map, ordered by N), for each run id."""
    by_n = {n: to_hex(c) for n, c in size_colors(sorted({r.N for r in runs})).items()}
    return {r.id: by_n[r.N] for r in runs}


def _loss_plot(title: str, x: str, y: str, x_label: str, runs: int) -> wr.LinePlot:
    return wr.LinePlot(
        title=title, x=x, y=[y], log_x=True, log_y=True, title_x=x_label, title_y=y,
        smoothing_type="none", max_runs_to_show=runs,
    )  # fmt: skip


def _sections(convention: str, shown: int) -> list[ws.Section]:
    """The three sections: learning curves, final loss against N, the analysis run."""
    tokens, flops = WANDB_KEYS["tokens"], WANDB_KEYS[f"flops_{convention}"]
    val, train = WANDB_KEYS["val_loss"], WANDB_KEYS["train_loss"]
    curves = [
        _loss_plot("validation loss vs tokens", tokens, val, "tokens", shown),
        _loss_plot(f"validation loss vs FLOPs ({convention})", flops, val, f"FLOPs ({convention})", shown),
        _loss_plot("training loss vs tokens", tokens, train, "tokens", shown),
        _loss_plot(f"training loss vs FLOPs ({convention})", flops, train, f"FLOPs ({convention})", shown),
    ]  # fmt: skip
    final = [
        wr.CustomChart(  # W&B's line preset over the analysis run's runs table
            query={"summaryTable": {"tableKey": RUNS_TABLE}},
            chart_name="wandb/line/v0",
            chart_fields={"x": "N", "y": "loss", "stroke": "budget"},
            chart_strings={"title": "final loss vs N per compute budget"},
        ),
        wr.ScatterPlot(
            title="final validation loss vs N (every run)", x=N_KEY, y=FINAL_LOSS_KEY,
            log_x=True, log_y=True,
        ),
    ]  # fmt: skip
    analysis = [
        wr.MediaBrowser(title="analysis figures", media_keys=list(FIGURE_KEYS), num_columns=2),
        wr.WeavePanelSummaryTable(table_name=FIT_TABLE),
    ]
    return [
        ws.Section(name="Learning curves (log-log, one colour per size)", panels=curves, is_open=True),
        ws.Section(name="Final loss vs N per compute budget", panels=final, is_open=True),
        ws.Section(name="Analysis: figures and fit", panels=analysis, is_open=True),
    ]  # fmt: skip


def build_workspace(
    entity: str,
    project: str,
    group: str,
    runs: Sequence[SizedRun] = (),
    convention: str = "chinchilla",
) -> ws.Workspace:
    """The scaling workspace of one sweep group (nothing reaches W&B)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"FLOP convention {convention!r} is not one of {CONVENTIONS}")
    shown = max(MIN_RUNS_SHOWN, len(runs))
    return ws.Workspace(
        entity=entity,
        project=project,
        name=workspace_name(group),
        sections=_sections(convention, shown),
        settings=ws.WorkspaceSettings(x_axis=WANDB_KEYS["tokens"], max_runs=shown),
        runset_settings=ws.RunsetSettings(
            filters=expr.And(expr.Metric("Group") == group),
            run_settings={i: ws.RunSettings(color=c) for i, c in run_colors(runs).items()},
        ),
    )


def describe(workspace: ws.Workspace) -> dict:
    """The workspace's panels as plain data: section -> panel type, title, axes, keys."""
    fields = ("title", "x", "y", "log_x", "log_y", "media_keys", "table_name", "chart_name")
    out: dict[str, Any] = {"name": workspace.name, "filters": workspace.runset_settings.filters}
    out["sections"] = {
        s.name: [
            {"type": type(p).__name__}
            | {f: getattr(p, f) for f in fields if getattr(p, f, None) is not None}
            | ({"fields": p.chart_fields} if isinstance(p, wr.CustomChart) else {})
            for p in s.panels
        ]
        for s in workspace.sections
    }
    out["colors"] = {i: s.color for i, s in workspace.runset_settings.run_settings.items()}
    return out


VIEWS_QUERY = """
query ProjectViews($entityName: String, $name: String, $viewType: String) {
    project(name: $name, entityName: $entityName) {
        allViews(viewType: $viewType) { edges { node { id name displayName } } }
    }
}
"""


def find_workspaces(api: Any, entity: str, project: str, name: str) -> list[tuple[str, str]]:
    """(internal name, id) of the project's saved workspaces called ``name``."""
    reply = execute_graphql(
        api, VIEWS_QUERY, {"entityName": entity, "name": project, "viewType": "project-view"}
    )
    if reply.get("project") is None:
        raise FetchError(f"W&B project {entity}/{project} not found (or no access to it)")
    edges = reply["project"].get("allViews", {}).get("edges", [])
    return [(e["node"]["name"], e["node"]["id"]) for e in edges if e["node"]["displayName"] == name]


def _sized(run: Any) -> SizedRun | None:
    """A listed run with its N (from its record, else its config); None for other runs."""
    for source in (run.summary, run.config):
        try:
            n = float(source.get(N_KEY))
        except (TypeError, ValueError, AttributeError):
            continue
        if n > 0:
            return SizedRun(str(run.id), n)
    return None


def publish(
    entity: str, project: str, group: str, convention: str = "chinchilla", api: Any = None
) -> tuple[ws.Workspace, bool]:
    """Create or update the group's workspace; (the saved workspace, whether it existed)."""
    api = wandb.Api() if api is None else api
    retry = Retrier(FetchSettings(cache_dir=None))
    listed = list_runs(api, f"{entity}/{project}", {"group": group}, retry, LIST_PAGE)
    runs = [s for s in map(_sized, listed) if s is not None]
    workspace = build_workspace(entity, project, group, runs, convention)
    found = find_workspaces(api, entity, project, workspace.name)
    if found:  # update that view in place: same internal name and id
        workspace._internal_name, workspace._internal_id = found[0]
    workspace.save()
    return workspace, bool(found)


def main(argv: Sequence[str] | None = None) -> int:
    """`scaling-dashboard`: create or update the sweep group's scaling workspace on W&B."""
    parser = argparse.ArgumentParser(
        prog="scaling-dashboard",
        description=main.__doc__
        + " Panels: log-log loss vs tokens and vs FLOPs (one colour per model size), final "
        "loss vs N per compute budget, the analysis run's figures and fit table. A second call "
        "updates the workspace of the same name, never duplicates it.",
    )
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project of the sweep")
    parser.add_argument("--group", required=True, help="the sweep's W&B group (its name)")
    parser.add_argument(
        "--convention", choices=CONVENTIONS, default="chinchilla", help="FLOPs of the x-axis"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the panels as JSON; W&B is not contacted"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        spec = build_workspace(args.entity, args.project, args.group, convention=args.convention)
        print(json.dumps(describe(spec), indent=1, default=str))
        return 0
    if not has_credentials():
        parser.exit(2, "scaling-dashboard: error: no W&B credentials: run `wandb login` or set "
                       "WANDB_API_KEY (nothing was created)\n")  # fmt: skip
    try:
        workspace, existed = publish(args.entity, args.project, args.group, args.convention)
    except (FetchError, wandb.errors.Error, OSError, ValueError) as err:
        parser.exit(2, f"scaling-dashboard: error: {err}\n")
    print(f"{'updated' if existed else 'created'} workspace {workspace.name!r}: {workspace.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
