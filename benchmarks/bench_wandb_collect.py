"""Time collecting a W&B group of 2,000 runs through a fake Api: first collect, then cached.

The fake (tests/fake_wandb.py) answers like ``wandb.Api``: runs listed in pages, each history
read with ``scan_history`` (one call per 1,000 rows), ``latency`` seconds per call and a seeded
share of calls answered HTTP 429. Both collects go through `analysis.collect.from_wandb` (the
tidy runs and curves tables), the first with an empty cache, the second with the cache the
first wrote; the tables must be identical. The serial estimate is what one reader without a
pool would spend waiting: calls x latency.

Targets (issue 16): first collect < 30 s, second < 2 s, identical tables.

Run: .venv/bin/python benchmarks/bench_wandb_collect.py [--runs 2000] [--rows 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_wandb import FakeApi  # noqa: E402 (the fake lives with the tests that share it)

from analysis.collect import Collected, from_wandb  # noqa: E402
from analysis.wandb_fetch import FetchSettings  # noqa: E402


def timed_collect(api: FakeApi, settings: FetchSettings) -> tuple[Collected, float, int]:
    """One collect of the fake group: its tables, its seconds and the Api calls it made."""
    calls = api.calls
    t0 = time.perf_counter()
    col = from_wandb("lab/ladder", group="ladder", api=api, fetch=settings)
    return col, time.perf_counter() - t0, api.calls - calls


def main(argv: list[str] | None = None) -> int:
    """Print first and second collect times, calls, 429s and whether the tables are equal."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--latency", type=float, default=0.05, help="seconds per API call")
    p.add_argument("--rate-429", type=float, default=0.02, help="share of calls answered 429")
    p.add_argument("--workers", type=int, default=FetchSettings.workers)
    args = p.parse_args(argv)

    api = FakeApi(args.runs, args.rows, latency_s=args.latency, rate_429=args.rate_429, seed=0)
    with tempfile.TemporaryDirectory() as cache:
        settings = FetchSettings(workers=args.workers, cache_dir=Path(cache), seed=0)
        first, t1, calls1 = timed_collect(api, settings)
        errors1 = api.errors
        second, t2, calls2 = timed_collect(api, settings)
    same = first.runs.equals(second.runs) and first.curves.equals(second.curves)
    pd.testing.assert_frame_equal(first.curves, second.curves)
    rows = args.runs * args.rows
    print(f"fake W&B group: {args.runs} runs x {args.rows} rows, {args.latency * 1e3:.0f} ms a call, "
          f"{args.rate_429:.0%} of calls 429, {args.workers} workers")  # fmt: skip
    print(f"first collect : {t1:7.2f} s  ({calls1} calls, {errors1} answered 429 and retried; "
          f"serial wait alone {calls1 * args.latency:.0f} s; {rows / t1:,.0f} rows/s)")  # fmt: skip
    print(f"second collect: {t2:7.2f} s  ({calls2} calls: listing only, {len(first.runs)} "
          f"histories from the cache)")  # fmt: skip
    print(f"speed-up      : {t1 / t2:7.1f} x second over first; "
          f"{calls1 * args.latency / t1:.1f} x first over a serial reader")  # fmt: skip
    print(f"tables        : runs {first.runs.shape}, curves {first.curves.shape}, "
          f"identical: {same}")  # fmt: skip
    print(f"targets       : first < 30 s {'ok' if t1 < 30 else 'MISSED'}, "
          f"second < 2 s {'ok' if t2 < 2 else 'MISSED'}")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
