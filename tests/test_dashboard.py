"""The W&B scaling workspace (analysis/dashboard.py), built and published offline."""

from __future__ import annotations

import dataclasses
import json

import pytest
import wandb_workspaces.workspaces as ws
from fake_wandb import FakeApi
from matplotlib.colors import to_hex

from analysis import dashboard
from analysis.dashboard import (
    FIGURE_KEYS,
    SizedRun,
    build_workspace,
    describe,
    main,
    publish,
    run_colors,
)
from analysis.plots import FIGURES
from analysis.style import size_colors
from contract import WANDB_KEYS, RunSummary


def test_panels_are_log_log_on_the_keys_training_logs():
    spec = describe(build_workspace("ent", "proj", "ladder", convention="6n"))
    assert spec["name"] == "scaling: ladder"
    curves, final, analysis = spec["sections"].values()
    axes = {(p["x"], p["y"][0]) for p in curves}
    assert axes == {
        (WANDB_KEYS[x], WANDB_KEYS[y])
        for x in ("tokens", "flops_6n")
        for y in ("val_loss", "train_loss")
    }
    assert all(p["type"] == "LinePlot" and p["log_x"] and p["log_y"] for p in curves)
    scatter = next(p for p in final if p["type"] == "ScatterPlot")
    record = {f.name for f in dataclasses.fields(RunSummary)}
    assert {scatter["x"], scatter["y"]} <= record and scatter["log_x"] and scatter["log_y"]
    per_budget = next(p for p in final if p["type"] == "CustomChart")
    assert per_budget["fields"] == {"x": "N", "y": "loss", "stroke": "budget"}
    assert set(FIGURE_KEYS) == {f"figures/{f}" for f in FIGURES}
    assert {p["type"] for p in analysis} == {"MediaBrowser", "WeavePanelSummaryTable"}
    assert analysis[0]["media_keys"] == list(FIGURE_KEYS) and analysis[1]["table_name"] == "fit"


def test_runs_are_filtered_on_the_group_and_coloured_by_size():
    runs = [SizedRun("a", 1e6), SizedRun("b", 4e6), SizedRun("c", 1e6), SizedRun("d", 1.6e7)]
    workspace = build_workspace("ent", "proj", "ladder", runs)
    assert workspace.runset_settings.filters == "Metric(\"Group\") == 'ladder'"
    colors = describe(workspace)["colors"]
    assert colors == run_colors(runs)
    assert colors["a"] == colors["c"] and len({colors["a"], colors["b"], colors["d"]}) == 3
    figures = size_colors([1e6, 4e6, 1.6e7])  # the figures' colour of each size
    assert [colors[i] for i in "abd"] == [to_hex(figures[n]) for n in (1e6, 4e6, 1.6e7)]
    assert workspace.settings.max_runs >= len(runs)  # not W&B's first 10
    wire = json.loads(workspace._to_model().spec.model_dump_json(by_alias=True))
    section = wire["section"]
    assert section["runSets"][0]["filters"]["filters"][0]["key"] == {
        "section": "run",
        "name": "group",
    }
    assert section["customRunColors"] == colors
    panel = section["panelBankConfig"]["sections"][0]["panels"][0]["config"]
    assert panel["xLogScale"] and panel["yLogScale"] and panel["xAxis"] == "tokens"


def test_a_bad_convention_is_named():
    with pytest.raises(ValueError, match=r"convention 'flops' is not one of \('kaplan'"):
        build_workspace("e", "p", "g", convention="flops")


class _Views:
    """The project's saved views as W&B keeps them, answering the two calls publish makes."""

    def __init__(self):
        self.views: dict[str, dict] = {}

    def execute_graphql(self, query, variables=None):
        edges = [{"node": v} for v in self.views.values()]
        return {"project": {"allViews": {"edges": edges}}}

    def upsert(self, view):
        name = view.name or f"nw-{len(self.views)}-v"
        vid = view.id or f"view{len(self.views)}"
        self.views[vid] = {"id": vid, "name": name, "displayName": view.display_name}
        return {"upsertView": {"view": {"name": name, "id": vid}, "inserted": not view.id}}


def test_publish_twice_updates_the_same_workspace(monkeypatch):
    views = _Views()
    api = FakeApi(4, 3, group="ladder")
    api._service_api = views  # what wandb_workspaces' GraphQL helper talks to
    monkeypatch.setattr(ws.internal, "upsert_view2", views.upsert)
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: "https://wandb.test/v"))
    first, existed = publish("ent", "proj", "ladder", api=api)
    assert not existed and len(views.views) == 1
    assert set(describe(first)["colors"]) == {r.id for r in api.all_runs}
    second, existed = publish("ent", "proj", "ladder", api=api)
    assert existed and len(views.views) == 1  # updated, not duplicated
    assert second._internal_id == first._internal_id
    other = FakeApi(1, 1, group="other")
    other._service_api = views  # the same project
    publish("ent", "proj", "other", api=other)
    assert sorted(v["displayName"] for v in views.views.values()) == [
        "scaling: ladder",
        "scaling: other",
    ]  # another group: its own workspace


def test_missing_group_and_missing_credentials_are_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(dashboard, "has_credentials", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        main(["--entity", "e", "--project", "p", "--group", "g"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no W&B credentials" in err and "wandb login" in err

    monkeypatch.setattr(dashboard, "has_credentials", lambda: True)
    monkeypatch.setattr(dashboard.wandb, "Api", lambda: FakeApi(3, 1, group="ladder"))
    with pytest.raises(SystemExit) as exit_:
        main(["--entity", "e", "--project", "p", "--group", "ladr"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "W&B group 'ladr' does not exist in project 'e/p'" in err and "['ladder']" in err


def test_dry_run_prints_the_panels_without_w_and_b(capsys):
    assert main(["--entity", "e", "--project", "p", "--group", "g", "--dry-run"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["name"] == "scaling: g" and len(spec["sections"]) == 3
