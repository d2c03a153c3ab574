"""A fake ``wandb.Api`` for the W&B collect tests and benchmark: latency per call, HTTP 429s.

It answers what `analysis.wandb_fetch` asks of the real Api (``runs`` listed in pages,
``scan_history`` read in pages, ``summary``, ``heartbeat_at``), counts every call, sleeps a
fixed latency per call and answers a seeded share of calls with a real
``requests.HTTPError`` of status 429, as W&B does past its rate limit. ``history()`` returns
the 500-point sample the real Api returns, so a reader that uses it is caught.
"""

from __future__ import annotations

import math
import random
import threading
import time
import types

import requests
from fixtures_analysis import run_summary


def http_error(status: int, retry_after: float | None = None) -> requests.HTTPError:
    """The error requests raises for an HTTP status (as wandb's client lets it through)."""
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return requests.HTTPError(f"{status} Client Error: Too Many Requests", response=response)


class FakeRun:
    """One W&B run: its record in the summary, and ``n_rows`` logged rows."""

    def __init__(self, api: FakeApi, index: int, n_rows: int, group: str, state: str):
        n = 1e6 * 2 ** (index % 8)
        d = 20 * n * 2 ** (index // 8 % 4 - 1)
        r = types.SimpleNamespace(run=f"r{index:05d}", N=n, D=d, C=6 * n * d, loss=2 + n**-0.1)
        self.api, self.id, self.name, self.group, self.state = (
            api,
            f"id{index:05d}",
            r.run,
            group,
            state,
        )
        self.heartbeat_at = "2026-01-01T00:00:00"
        self.summary = run_summary(r).to_dict()
        self.config = {"model": {"name": f"{n:.3g}"}, "N": n}
        self.n, self.n_rows = n, n_rows

    @property
    def rows(self) -> list[dict]:
        """The logged rows, made on demand (2,000 runs x 500 rows would fill memory)."""
        n = self.n
        return [
            {
                "trainer/global_step": step,
                "_step": step,
                "tokens": step * 4096,
                "flops/chinchilla": step * 4096 * 6.3 * n,
                "train/loss": 2 + 5 / (step + 1) ** 0.3,
                "lr": 1e-3,
                **({"val/loss": 2 + 5 / (step + 1) ** 0.3 + 0.01} if step % 10 == 0 else {}),
                **({"media": {"_type": "image-file", "path": "x.png"}} if step == 0 else {}),
            }
            for step in range(self.n_rows)
        ]

    def update(self, rows: int = 1) -> None:
        """The run logs ``rows`` more rows: a new heartbeat, so a new cache key."""
        self.n_rows += rows
        self.heartbeat_at = f"2026-01-01T00:00:{self.n_rows:05d}"

    def scan_history(self, keys=None, page_size: int = 1000):
        """Every row, one API call per page."""
        with self.api.lock:
            self.api.scans[self.id] = self.api.scans.get(self.id, 0) + 1
        for _ in range(max(1, math.ceil(self.n_rows / page_size))):
            self.api.call()
        return iter(self.rows)

    def history(self, samples: int = 500, pandas: bool = True):
        """A sample of at most ``samples`` rows, as the real Api gives: never to be used."""
        self.api.sampled += 1
        step = max(1, math.ceil(len(self.rows) / samples))
        return self.rows[::step]


class FakeApi:
    """Runs of one project in one group, with ``latency_s`` per call and a share of 429s."""

    def __init__(
        self,
        n_runs: int,
        n_rows: int,
        latency_s: float = 0.0,
        rate_429: float = 0.0,
        group: str = "ladder",
        states: dict[int, str] | None = None,
        seed: int = 0,
    ):
        self.latency_s, self.rate_429 = latency_s, rate_429
        self.lock = threading.Lock()
        self.calls = self.errors = self.sampled = 0
        self.scans: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self._rng = random.Random(seed)
        self.list_calls: list[tuple] = []
        states = states or {}
        self.all_runs = [
            FakeRun(self, i, n_rows, group, states.get(i, "finished")) for i in range(n_runs)
        ]

    def call(self) -> None:
        """One API round trip: the latency, then maybe a 429."""
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            limited = self._rng.random() < self.rate_429
            self.errors += limited
        try:
            time.sleep(self.latency_s)
        finally:
            with self.lock:
                self.in_flight -= 1
        if limited:
            raise http_error(429, retry_after=0.0)

    def runs(self, path, filters=None, order="+created_at", per_page=50, lazy=True):
        """The matching runs, listed in pages of ``per_page`` (one call each)."""
        self.list_calls.append((path, filters))
        group = (filters or {}).get("group")
        out = [r for r in self.all_runs if group is None or r.group == group]
        for _ in range(max(1, math.ceil(len(out) / per_page))):
            self.call()
        return iter(out)
