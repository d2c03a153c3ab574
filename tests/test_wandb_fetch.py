"""Fast W&B collect (analysis/wandb_fetch.py) against a fake Api with latency and HTTP 429s."""

from __future__ import annotations

import pandas as pd
import pytest
import wandb
from fake_wandb import FakeApi, http_error

from analysis.cli import main as fit_main
from analysis.collect import CollectError, from_wandb
from analysis.wandb_fetch import (
    FetchError,
    FetchSettings,
    Retrier,
    RunCache,
    fetch_runs,
    scalar_table,
)


def settings(tmp_path=None, **kw) -> FetchSettings:
    """No real waits in tests: back-off of microseconds, a fixed jitter seed."""
    return FetchSettings(
        cache_dir=None if tmp_path is None else tmp_path / "cache",
        **{"backoff_s": 1e-4, "max_backoff_s": 1e-3, "seed": 0, **kw},
    )


def assert_same(a, b) -> None:
    """Two fetches hold the same runs (cache flags aside) and the same rows."""
    assert [(r.id, r.name, r.state, r.updated, r.summary) for r in a.runs] == [
        (r.id, r.name, r.state, r.updated, r.summary) for r in b.runs
    ]
    pd.testing.assert_frame_equal(a.history, b.history)


def test_parallel_fetch_equals_serial_and_runs_at_once():
    api = FakeApi(24, 30, latency_s=0.01)
    serial = fetch_runs("e/p", {"group": "ladder"}, api, settings(workers=1))
    assert api.max_in_flight == 1
    parallel = fetch_runs("e/p", {"group": "ladder"}, api, settings(workers=8))
    assert api.max_in_flight > 1  # the pool did overlap calls
    assert [r.name for r in parallel.runs] == [f"r{i:05d}" for i in range(24)]  # listing order
    assert parallel.history["_run"].is_monotonic_increasing
    assert parallel.history_of(3)["trainer/global_step"].tolist() == list(range(30))
    assert_same(serial, parallel)
    assert api.list_calls[-1] == ("e/p", {"group": "ladder"})
    # and collect's tables are the same whichever way the runs were read
    one = from_wandb("e/p", group="ladder", api=api, fetch=settings(workers=1))
    many = from_wandb("e/p", group="ladder", api=api, fetch=settings(workers=8))
    pd.testing.assert_frame_equal(one.runs, many.runs)
    pd.testing.assert_frame_equal(one.curves, many.curves)
    assert len(one.runs) == 24 and len(one.curves) == 24 * 3  # val/loss every 10th of 30 rows


def test_full_resolution_history_never_the_sample():
    api = FakeApi(2, 1200)
    runs = fetch_runs("e/p", None, api, settings())
    assert [len(runs.history_of(i)) for i in range(2)] == [1200, 1200]
    assert api.sampled == 0  # Run.history() (500 points) never called
    col = from_wandb("e/p", api=api, fetch=settings())
    assert len(col.curves) == 2 * 120  # every evaluation row, not a sample's share


def test_429_is_retried_and_gives_the_same_tables():
    clean = fetch_runs("e/p", None, FakeApi(30, 20), settings())
    api = FakeApi(30, 20, rate_429=0.3, seed=1)
    limited = fetch_runs("e/p", None, api, settings(workers=4, attempts=20))
    assert api.errors > 5
    assert_same(clean, limited)


def test_retries_are_bounded_and_other_errors_are_not_retried():
    api = FakeApi(3, 5, rate_429=1.0)
    with pytest.raises(CollectError, match=r"listing W&B project 'e/p' failed 3 times.*HTTP 429"):
        from_wandb("e/p", api=api, fetch=settings(attempts=3))
    assert api.calls == 3

    api, tries = FakeApi(3, 5), []

    def gone(*a, **k):
        tries.append(1)
        raise http_error(404)

    api.all_runs[1].scan_history = gone
    with pytest.raises(CollectError, match=r"cannot read W&B run 'r00001' of 'e/p': HTTPError"):
        from_wandb("e/p", api=api, fetch=settings(attempts=5, workers=1))
    assert len(tries) == 1  # a 404 is not tried again


def test_backoff_doubles_within_its_cap_and_honours_retry_after():
    r = Retrier(FetchSettings(backoff_s=1.0, max_backoff_s=8.0, seed=0, cache_dir=None))
    err = http_error(429)
    waits = [r.wait(a, err) for a in range(6) for _ in range(200)]
    caps = [min(8.0, 2.0**a) for a in range(6) for _ in range(200)]
    assert all(0 <= w <= c for w, c in zip(waits, caps))
    assert max(waits[-200:]) > 4.0  # the cap reached 8 s, not 2**5
    assert r.wait(0, http_error(429, retry_after=5)) == 5.0  # the server's ask wins
    assert r.wait(0, http_error(429, retry_after=60)) == 8.0  # within the cap


def test_cache_hit_for_finished_runs_refreshed_for_updated_ones(tmp_path):
    api = FakeApi(6, 40, states={5: "running"})
    first = fetch_runs("e/p", None, api, settings(tmp_path))
    assert not any(r.cached for r in first.runs)
    keys, table = RunCache(tmp_path / "cache", "e/p").read()
    assert sorted(k[0] for k in keys) == [f"id{i:05d}" for i in range(5)]  # not the running one
    assert len(table) == 5 * 40

    second = fetch_runs("e/p", None, api, settings(tmp_path))
    assert [r.cached for r in second.runs] == [True] * 5 + [False]
    assert api.scans == {**{f"id{i:05d}": 1 for i in range(5)}, "id00005": 2}
    assert_same(first, second)

    api.all_runs[2].update(rows=3)  # the run was resumed: new rows, a new heartbeat
    third = fetch_runs("e/p", None, api, settings(tmp_path))
    assert [r.cached for r in third.runs] == [True, True, False, True, True, False]
    assert len(third.history_of(2)) == 43 and api.scans["id00002"] == 2
    fourth = fetch_runs("e/p", None, api, settings(tmp_path))
    assert fourth.runs[2].cached and len(fourth.history_of(2)) == 43
    assert_same(third, fourth)
    assert len(RunCache(tmp_path / "cache", "e/p").read()[1]) == 5 * 40 + 3  # old rows replaced


def test_a_torn_cache_file_is_fetched_again(tmp_path):
    api = FakeApi(2, 10)
    first = fetch_runs("e/p", None, api, settings(tmp_path))
    RunCache(tmp_path / "cache", "e/p").path.write_bytes(b"PAR1 torn")
    again = fetch_runs("e/p", None, api, settings(tmp_path))
    assert [r.cached for r in again.runs] == [False, False]
    assert_same(first, again)
    assert [r.cached for r in fetch_runs("e/p", None, api, settings(tmp_path)).runs] == [True] * 2


def test_history_keeps_scalar_columns_only():
    table = scalar_table(
        [
            {"step": 0, "loss": 3.0, "tag": "a", "img": {"_type": "image-file"}, "ok": True},
            {"step": 1, "loss": None, "tag": None, "img": None, "ok": False},
        ]
    ).to_pandas()
    assert list(table.columns) == ["step", "loss", "tag", "ok"]
    assert table["step"].dtype == "int64" and table["loss"].isna().tolist() == [False, True]
    assert table["ok"].tolist() == [1.0, 0.0]
    assert table["tag"][0] == "a" and table["tag"].isna().tolist() == [False, True]
    mixed = scalar_table([{"x": 1, "y": 2}, {"x": "one", "y": 2.5}]).to_pandas()
    assert mixed["y"].tolist() == [2.0, 2.5] and mixed["x"].tolist() == ["1", "one"]


def test_missing_group_is_named_with_the_groups_that_exist():
    api = FakeApi(4, 5, group="ladder")
    with pytest.raises(
        CollectError,
        match=r"W&B group 'ladr' does not exist in project 'e/p'.*groups in its runs: \['ladder'\]",
    ):
        from_wandb("e/p", group="ladr", api=api, fetch=settings())


def test_bad_settings_are_named():
    with pytest.raises(FetchError, match=r"workers=0.*workers, attempts and per_page >= 1"):
        FetchSettings(workers=0)


def test_scaling_fit_names_a_missing_group_in_one_line(monkeypatch, tmp_path, capsys):
    """The real command (`scaling-fit wandb:e/p --group ...`): exit 2, one line, nothing written."""
    monkeypatch.setenv("SCALING_WANDB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wandb, "Api", lambda: FakeApi(4, 5, group="ladder"))
    code = fit_main(["wandb:e/p", "--group", "ladr", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "W&B group 'ladr' does not exist in project 'e/p'" in err and "['ladder']" in err
    assert not (tmp_path / "out").exists()
