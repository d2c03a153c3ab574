"""Fetch the runs of a W&B project or group fast: parallel, full resolution, retried, cached.

A lab's W&B project holds thousands of runs; reading them one after the other takes hours,
``Run.history()`` silently returns a 500-point sample, and parallel readers hit HTTP 429. Here:

- every history is read with ``scan_history`` (every logged row, never the sample), in a
  bounded pool of worker threads (the calls wait on the network, not the CPU);
- a call answered 429 (rate limit), 5xx or a dropped connection is tried again after an
  exponential back-off with full jitter (a Retry-After header is honoured), a bounded number of
  times; any other error is raised at once;
- the history of each run that will not change any more (finished, crashed, failed, killed) is
  cached as one parquet file per run, keyed by the run id and its last update (heartbeat), so a
  second collect reads only the runs that are new or changed; a running run is never cached.

Collect's W&B source (`analysis.collect.from_wandb`) reads runs through `fetch_runs`.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CACHE_FORMAT = 1
"""Version of a cached run file (its parquet metadata ``scaling`` key); another is a miss."""
FINAL_STATES = frozenset({"finished", "crashed", "failed", "killed"})
"""W&B run states whose history is cached (a resumed run changes its heartbeat, so its key)."""
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses tried again: rate limited, or the server failed for now."""
GROUP_SAMPLE = 500
"""Runs read to name a project's groups when the asked-for group has none."""

T = TypeVar("T")


class FetchError(ValueError):
    """The W&B source cannot be read: no login, no such project or group, a run that kept
    failing after every retry."""


def default_cache_dir() -> Path:
    """$SCALING_WANDB_CACHE, else $XDG_CACHE_HOME/scaling/wandb (~/.cache by default)."""
    if os.environ.get("SCALING_WANDB_CACHE"):
        return Path(os.environ["SCALING_WANDB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scaling" / "wandb"


@dataclass
class FetchSettings:
    """How runs are read from W&B: how many at once, how often a call is tried, the cache."""

    workers: int = 16
    """Runs read at once (bounded: W&B answers 429 past its rate limit)."""
    attempts: int = 8
    """Tries per call (1 = no retry); only 429, 5xx and dropped connections are retried."""
    backoff_s: float = 0.5
    """Cap of the first retry's wait; each later retry doubles it (full jitter below the cap)."""
    max_backoff_s: float = 30.0
    """Longest wait between two tries, a Retry-After header included."""
    per_page: int = 500
    """Runs per listing page (one API call each)."""
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    """Where finished runs' histories are cached as parquet; None: no cache."""
    seed: int | None = None
    """Seed of the back-off jitter (None: from the OS); tests fix it."""

    def __post_init__(self) -> None:
        checks = {
            "workers": self.workers >= 1,
            "attempts": self.attempts >= 1,
            "backoff_s": self.backoff_s >= 0,
            "max_backoff_s": self.max_backoff_s >= self.backoff_s,
            "per_page": self.per_page >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise FetchError(
                f"fetch settings {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} out of "
                "range: workers, attempts and per_page >= 1, 0 <= backoff_s <= max_backoff_s"
            )
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)


@dataclass
class FetchedRun:
    """One W&B run as collect reads it: what it is, its summary and its whole history."""

    id: str | None
    """The run id (the last part of its URL); None from an API object without one."""
    name: str
    """The run's display name ("{size}-{budget}" for the training runs here)."""
    group: str | None
    """Its W&B group (the sweep's name)."""
    state: str | None
    """W&B state: running, finished, crashed, failed, killed."""
    updated: str | None
    """Its last update (heartbeat time): with the id, the key of the cached history."""
    summary: dict
    """The run's summary (holds the run record, scaling.contract.RunSummary)."""
    history: pd.DataFrame
    """Every logged row, scalar columns only (media and nested values dropped)."""
    cached: bool = False
    """Whether the history came from the cache rather than W&B."""


def _status(err: BaseException) -> int | None:
    """The HTTP status behind an API error (wandb wraps the requests error), if any."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        code = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(code, int):
            return code
        todo += [e.__cause__, e.__context__, getattr(e, "exc", None)]
    return None


def _retry_after(err: BaseException) -> float | None:
    """Seconds a 429's Retry-After header asks to wait, if it gives a number."""
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def transient(err: BaseException) -> bool:
    """Whether a failed call is worth trying again: 429, 5xx, or a network error (no status)."""
    status = _status(err)
    if status is not None:
        return status in RETRY_STATUS
    return isinstance(err, (OSError, TimeoutError))  # requests' errors are OSErrors too


class Retrier:
    """Calls a function, retrying transient failures with capped exponential back-off."""

    def __init__(self, settings: FetchSettings, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.sleep = sleep
        self.retries = 0
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()

    def wait(self, attempt: int, err: BaseException) -> float:
        """Seconds to wait before try ``attempt + 1``: full jitter below a doubling cap."""
        s = self.settings
        cap = min(s.max_backoff_s, s.backoff_s * 2**attempt)
        with self._lock:
            self.retries += 1
            jitter = self._rng.uniform(0, cap)
        asked = _retry_after(err)
        return min(s.max_backoff_s, max(jitter, asked)) if asked is not None else jitter

    def __call__(self, fn: Callable[[], T], what: str) -> T:
        """fn(), tried up to settings.attempts times; FetchError naming ``what`` at the end."""
        for attempt in range(self.settings.attempts):
            try:
                return fn()
            except Exception as err:
                if not transient(err):
                    raise
                if attempt + 1 == self.settings.attempts:
                    raise FetchError(
                        f"{what} failed {self.settings.attempts} times, last "
                        f"{type(err).__name__}: {err} (HTTP {_status(err)}); try again later or "
                        "with fewer workers"
                    ) from err
                self.sleep(self.wait(attempt, err))
        raise AssertionError("unreachable")  # attempts >= 1


NUMERIC = frozenset({"integer", "floating", "mixed-integer-float", "decimal"})


def scalar_table(rows: Iterable[dict]) -> pd.DataFrame:
    """History rows as a table of their scalar columns: numbers (int64 or float64) and text;
    media, lists and nested values are dropped (they do not belong in a tidy table)."""
    df = pd.DataFrame.from_records(list(rows))
    keep = {}
    for col in df.columns:
        kind = pd.api.types.infer_dtype(df[col], skipna=True)
        if kind in NUMERIC:
            keep[col] = pd.to_numeric(df[col])
        elif kind in ("boolean", "empty"):
            keep[col] = df[col].astype(float)
        elif kind == "string":
            keep[col] = df[col].astype(object).where(df[col].notna(), None)
    return pd.DataFrame(keep, index=pd.RangeIndex(len(df)))


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


class RunCache:
    """Histories of finished runs as parquet files, one per run, keyed by id and last update."""

    def __init__(self, root: Path, project: str):
        self.folder = Path(root) / _safe(project)

    def path(self, run_id: str) -> Path:
        """The cache file of one run."""
        return self.folder / f"{_safe(run_id)}.parquet"

    def read(self, run_id: str, updated: str) -> pd.DataFrame | None:
        """The cached history of a run at this update; None if absent, stale or unreadable."""
        path = self.path(run_id)
        if not path.is_file():
            return None
        try:
            table = pq.read_table(path)
            key = json.loads((table.schema.metadata or {}).get(b"scaling", b"{}"))
        except (OSError, pa.ArrowException, ValueError):
            return None  # a torn or foreign file: fetched again and overwritten
        if key != {"format": CACHE_FORMAT, "id": run_id, "updated": updated}:
            return None
        return table.to_pandas()

    def write(self, run_id: str, updated: str, history: pd.DataFrame) -> None:
        """Store a run's history atomically (a reader never sees half a file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(history, preserve_index=False)
        key = json.dumps({"format": CACHE_FORMAT, "id": run_id, "updated": updated})
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"scaling": key})
        tmp = self.path(run_id).with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path(run_id))


def _summary(run: Any) -> dict:
    summary = run.summary
    return dict(getattr(summary, "_json_dict", summary))


def _fetch_one(run: Any, retry: Retrier, cache: RunCache | None) -> FetchedRun:
    """One run's record and history: from the cache when its key matches, else from W&B."""
    name = str(getattr(run, "name", None))
    run_id = getattr(run, "id", None)
    updated = getattr(run, "heartbeat_at", None)
    out = FetchedRun(
        id=run_id,
        name=name,
        group=getattr(run, "group", None),
        state=getattr(run, "state", None),
        updated=None if updated is None else str(updated),
        summary=retry(lambda: _summary(run), f"summary of W&B run {name!r}"),
        history=pd.DataFrame(),
    )
    keyed = cache is not None and run_id is not None and out.updated is not None
    if keyed and (hit := cache.read(run_id, out.updated)) is not None:
        out.history, out.cached = hit, True
        return out
    out.history = retry(lambda: scalar_table(run.scan_history()), f"history of W&B run {name!r}")
    if keyed and out.state in FINAL_STATES:
        cache.write(run_id, out.updated, out.history)
    return out


def _missing_group(api: Any, project: str, group: str, retry: Retrier) -> FetchError:
    """The error for a group without runs, naming the groups seen in the project."""
    sample = retry(
        lambda: list(islice(api.runs(project, per_page=GROUP_SAMPLE), GROUP_SAMPLE)),
        f"listing W&B project {project!r}",
    )
    groups = sorted({str(r.group) for r in sample if getattr(r, "group", None)})
    where = f"the first {GROUP_SAMPLE} runs" if len(sample) == GROUP_SAMPLE else "its runs"
    listed = f"groups in {where}: {groups[:20]}{' ...' if len(groups) > 20 else ''}"
    return FetchError(
        f"W&B group {group!r} does not exist in project {project!r} (no run has it); "
        + (listed if groups else "the project has no grouped runs")
    )


def list_runs(api: Any, project: str, filters: dict, retry: Retrier, per_page: int) -> list:
    """The project's runs matching ``filters`` (full records: summaries come with the list)."""
    import wandb  # the only wandb names used here are its error types

    try:
        runs = retry(
            lambda: list(api.runs(project, filters=filters or None, per_page=per_page, lazy=False)),
            f"listing W&B project {project!r}",
        )
        if not runs and filters.get("group"):
            raise _missing_group(api, project, filters["group"], retry)
        return runs
    except (wandb.errors.Error, OSError, ValueError) as err:
        if isinstance(err, FetchError):
            raise
        # ValueError: the Api's "Could not find project"; OSError: requests' errors
        raise FetchError(
            f"cannot read W&B project {project!r}: {type(err).__name__}: {str(err).rstrip('.')}. "
            "Log in with `wandb login` (or set WANDB_API_KEY) and give the project as "
            "wandb:ENTITY/PROJECT; for offline runs pass the wandb/ folder instead"
        ) from err


def fetch_runs(
    project: str,
    filters: dict | None = None,
    api: Any = None,
    settings: FetchSettings | None = None,
) -> list[FetchedRun]:
    """Every run of ``project`` (entity/project) matching ``filters`` (group, sweep), with its
    summary and full history, in listing order; histories read in parallel and cached."""
    import wandb

    settings = settings or FetchSettings()
    retry = Retrier(settings)
    try:
        api = wandb.Api() if api is None else api
    except wandb.errors.Error as err:
        raise FetchError(
            f"cannot reach W&B for project {project!r}: {err}. Log in with `wandb login` "
            "(or set WANDB_API_KEY)"
        ) from err
    runs = list_runs(api, project, dict(filters or {}), retry, settings.per_page)
    cache = RunCache(settings.cache_dir, project) if settings.cache_dir is not None else None

    def one(run: Any) -> FetchedRun:
        try:
            return _fetch_one(run, retry, cache)
        except (wandb.errors.Error, OSError, ValueError, KeyError) as err:
            if isinstance(err, FetchError):
                raise
            name = getattr(run, "name", None)
            raise FetchError(
                f"cannot read W&B run {name!r} of {project!r}: {type(err).__name__}: {err}"
            ) from err

    pool = ThreadPoolExecutor(max_workers=min(settings.workers, max(1, len(runs))))
    try:
        return list(pool.map(one, runs))
    finally:
        pool.shutdown(cancel_futures=True)  # one run failed: the others are not waited for
