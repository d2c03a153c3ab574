"""Fetch the runs of a W&B project or group fast: parallel, full resolution, retried, cached.

A lab's W&B project holds thousands of runs; reading them one after the other takes hours,
``Run.history()`` silently returns a 500-point sample, and parallel readers hit HTTP 429. Here:

- every history is read with ``scan_history`` (every logged row, never the sample), in a
  bounded pool of worker threads (the calls wait on the network, not the CPU);
- a call answered 429 (rate limit), 5xx or a dropped connection is tried again after an
  exponential back-off with full jitter (a Retry-After header is honoured), a bounded number of
  times; any other error is raised at once;
- the rows of each run that will not change any more (finished, crashed, failed, killed) are
  cached on disk, keyed by the run id and its last update (heartbeat), so a second collect
  reads only the runs that are new or changed; a running run is never cached.

The cache of a project is one parquet file holding every cached run's rows (columns ``__id``
and ``__updated``) with the key of each run in its metadata: a second collect of 2,000 runs is
one read, where a file per run costs a file open and a table conversion each (measured 2 ms
apiece on a busy 2-core machine: 4 s for 2,000 runs). Histories travel as one long table
(column ``_run``: the run's position in the listing), so collect converts them in one pass.

Collect's W&B source (`analysis.collect.from_wandb`) reads runs through `fetch_runs`.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
    """One W&B run as collect reads it: what it is and its summary (its rows: `Fetched`)."""

    id: str | None
    """The run id (the last part of its URL); None from an API object without one."""
    name: str
    """The run's display name ("{size}-{budget}" for the training runs here)."""
    group: str | None
    """Its W&B group (the sweep's name)."""
    state: str | None
    """W&B state: running, finished, crashed, failed, killed."""
    updated: str | None
    """Its last update (heartbeat time): with the id, the key of its cached rows."""
    summary: dict
    """The run's summary (holds the run record, contract.RunSummary)."""
    cached: bool = False
    """Whether its rows came from the cache rather than W&B."""


@dataclass
class Fetched:
    """The runs of a W&B project or group and every row they logged, in one long table."""

    runs: list[FetchedRun]
    """The runs in listing order."""
    history: pd.DataFrame
    """Every logged row of every run, scalar columns only (media and nested values dropped);
    column ``_run`` is the run's position in ``runs``, rows in run order then logged order."""

    def history_of(self, i: int) -> pd.DataFrame:
        """The rows of run ``i`` alone, without the ``_run`` column."""
        rows = self.history[self.history["_run"] == i].drop(columns="_run")
        return rows.reset_index(drop=True)


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
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as err:
                attempt += 1
                if not transient(err):
                    raise
                if attempt == self.settings.attempts:
                    raise FetchError(
                        f"{what} failed {attempt} times, last {type(err).__name__}: {err} "
                        f"(HTTP {_status(err)}); try again later or with fewer workers"
                    ) from err
                self.sleep(self.wait(attempt - 1, err))


NUMERIC = frozenset({"integer", "floating", "mixed-integer-float", "decimal"})
SCALAR = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string)
KEY = "__key"
"""Cache column: the row's run, as its position in the file's list of (id, last update)."""


def scalar_table(rows: list[dict]) -> pa.Table:
    """History rows as an Arrow table of their scalar columns (numbers, booleans as 0/1, text);
    media, lists and nested values are dropped (they do not belong in a tidy table)."""
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a key with numbers and text: go by pandas
        df = pd.DataFrame.from_records(rows)
        keep = {}
        for col in df.columns:
            kind = pd.api.types.infer_dtype(df[col], skipna=True)
            if kind in NUMERIC or kind in ("boolean", "empty"):
                keep[col] = pd.to_numeric(df[col], errors="coerce")
            elif kind in ("string", "mixed-integer"):  # text, or numbers and text: text
                keep[col] = df[col].map(lambda v: v if v is None else str(v)).astype(object)
        table = pa.Table.from_pandas(pd.DataFrame(keep), preserve_index=False)
    cols = {}
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_boolean(col.type) or pa.types.is_null(col.type):
            cols[name] = col.cast(pa.float64())
        elif any(is_type(col.type) for is_type in SCALAR):
            cols[name] = col
    return pa.table(cols)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


class RunCache:
    """The cached rows of a project's finished runs: one parquet file whose metadata lists the
    runs' (id, last update) keys and whose column ``__key`` gives each row's run in that list."""

    def __init__(self, root: Path, project: str):
        self.path = Path(root) / f"{_safe(project)}.parquet"

    def read(self) -> tuple[list[tuple[str, str]], pa.Table | None]:
        """The cached runs' (id, last update) keys and their rows; none if absent or torn."""
        if not self.path.is_file():
            return [], None
        try:
            table = pq.read_table(self.path)
            meta = json.loads((table.schema.metadata or {}).get(b"scaling", b"{}"))
            keys = [(str(i), str(u)) for i, u in meta["runs"]]
        except (OSError, pa.ArrowException, ValueError, KeyError, TypeError):
            return [], None  # a torn or foreign file: every run fetched again, file rewritten
        if meta.get("format") != CACHE_FORMAT or KEY not in table.column_names:
            return [], None
        return keys, table

    def write(self, keys: list[tuple[str, str]], table: pa.Table) -> None:
        """Store the rows of the runs in ``keys`` atomically (a reader never sees half)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"format": CACHE_FORMAT, "runs": keys}).encode()
        table = table.replace_schema_metadata({b"scaling": meta})
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Tables with different columns stacked; a column with numbers and text becomes text."""
    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(f.type)
    text = {n for n, ts in types.items() if any(pa.types.is_string(t) for t in ts) and len(ts) > 1}
    if text:
        tables = [
            pa.table(
                {
                    n: c.cast(pa.string()) if n in text else c
                    for n, c in zip(t.column_names, t.columns)
                }
            )
            for t in tables
        ]
    return pa.concat_tables(tables, promote_options="permissive")


def _summary(run: Any) -> dict:
    summary = run.summary
    return dict(getattr(summary, "_json_dict", summary))


def _describe(run: Any, retry: Retrier) -> FetchedRun:
    """A listed run's identity, state, last update and summary."""
    name = str(getattr(run, "name", None))
    updated = getattr(run, "heartbeat_at", None)
    return FetchedRun(
        id=getattr(run, "id", None),
        name=name,
        group=getattr(run, "group", None),
        state=getattr(run, "state", None),
        updated=None if updated is None else str(updated),
        summary=retry(lambda: _summary(run), f"summary of W&B run {name!r}"),
    )


def _rows(run: Any, retry: Retrier) -> pa.Table:
    """Every row a run logged (``scan_history``: full resolution, never the sample)."""
    name = getattr(run, "name", None)
    return retry(lambda: scalar_table(list(run.scan_history())), f"history of W&B run {name!r}")


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


def _tagged(table: pa.Table, **columns: Any) -> pa.Table:
    """``table`` with constant columns added (the run's position, id, last update)."""
    for name, value in columns.items():
        table = table.append_column(name, pa.array([value] * len(table)))
    return table


def _rekeyed(table: pa.Table, new: np.ndarray, name: str) -> pa.Table:
    """The rows whose old key maps to a new one (``new[old] >= 0``), that key in ``name``."""
    at = new[table[KEY].to_numpy()]
    keep = at >= 0
    if not keep.all():  # else every row stays: no copy
        table, at = table.filter(pa.array(keep)), at[keep]
    return table.drop_columns([KEY]).append_column(name, pa.array(at))


def _from_cache(
    runs: list[FetchedRun], keys: list[tuple[str, str]], table: pa.Table | None
) -> tuple[list[int], pa.Table | None, bool]:
    """(positions of the runs whose cached key matches, their rows tagged ``_run``, whether
    those rows are in run order already: the file keeps each run's rows together, in key order)."""
    slot = {key: k for k, key in enumerate(keys)}
    found = {i: slot.get((r.id, r.updated)) for i, r in enumerate(runs) if r.id is not None}
    hits = [i for i, k in found.items() if k is not None]
    if not hits or table is None:
        return [], None, True
    position = np.full(len(keys), -1, np.int64)
    position[[found[i] for i in hits]] = hits
    ordered = bool(np.all(np.diff(position[position >= 0]) > 0))
    return hits, _rekeyed(table, position, "_run"), ordered


def _store(cache: RunCache, runs: list[FetchedRun], fresh: dict[int, pa.Table], old: tuple) -> None:
    """Rewrite the cache with the newly read rows of runs that will not change any more."""
    done = [
        i
        for i in fresh
        if runs[i].state in FINAL_STATES and runs[i].id is not None and runs[i].updated
    ]
    if not done:
        return
    keys, table = old
    renewed = {runs[i].id for i in done}
    kept = [k for k, (run_id, _) in enumerate(keys) if run_id not in renewed]
    parts = []
    if table is not None and kept:
        new = np.full(len(keys), -1, np.int64)
        new[kept] = np.arange(len(kept))
        parts.append(_rekeyed(table, new, KEY))
    parts += [_tagged(fresh[i], **{KEY: len(kept) + j}) for j, i in enumerate(done)]
    entries = [keys[k] for k in kept] + [(runs[i].id, runs[i].updated) for i in done]
    cache.write(entries, _concat(parts))


def fetch_runs(
    project: str,
    filters: dict | None = None,
    api: Any = None,
    settings: FetchSettings | None = None,
) -> Fetched:
    """Every run of ``project`` (entity/project) matching ``filters`` (group, sweep), with its
    summary, and every row they logged; new or changed runs read in parallel, then cached."""
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
    listed = list_runs(api, project, dict(filters or {}), retry, settings.per_page)
    cache = RunCache(settings.cache_dir, project) if settings.cache_dir is not None else None
    old = cache.read() if cache is not None else ([], None)

    def guarded(fn: Callable[[Any], T]) -> Callable[[Any], T]:
        def call(item: Any) -> T:
            try:
                return fn(item)
            except (wandb.errors.Error, OSError, ValueError, KeyError) as err:
                if isinstance(err, FetchError):
                    raise
                run = listed[item] if isinstance(item, int) else item
                raise FetchError(
                    f"cannot read W&B run {getattr(run, 'name', None)!r} of {project!r}: "
                    f"{type(err).__name__}: {err}"
                ) from err

        return call

    pool = ThreadPoolExecutor(max_workers=min(settings.workers, max(1, len(listed))))
    try:
        runs = [guarded(lambda r: _describe(r, retry))(r) for r in listed]  # listed in full
        hits, cached, ordered = _from_cache(runs, *old)
        todo = sorted(set(range(len(runs))) - set(hits))
        fresh = dict(zip(todo, pool.map(guarded(lambda i: _rows(listed[i], retry)), todo)))
    finally:
        pool.shutdown(cancel_futures=True)  # one run failed: the others are not waited for
    for i in hits:
        runs[i].cached = True
    if cache is not None:
        _store(cache, runs, fresh, old)
    parts = [_tagged(t, _run=i) for i, t in fresh.items()] + (
        [cached] if cached is not None else []
    )
    history = _concat(parts) if parts else pa.table({"_run": pa.array([], pa.int64())})
    if not ordered or (fresh and cached is not None):  # a run's rows stay in logged order
        history = history.take(pc.sort_indices(history["_run"]))  # (a stable sort)
    return Fetched(runs=runs, history=history.to_pandas(split_blocks=True, self_destruct=True))
