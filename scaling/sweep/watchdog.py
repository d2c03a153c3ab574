"""Orphaned workers stop: a job run in a worker process exits when the sweep process dies.

joblib (loky) and submitit_local run jobs in child processes of the sweep. If the sweep is
killed (SIGKILL, a closed terminal, an OOM kill), nothing tells them: they would keep training,
writing run folders a relaunch is about to train again. `Watched` wraps the sweep's task
function; in a worker whose parent is the sweep process it starts a daemon thread that polls
the parent pid and ends the worker when the parent is gone. The run it was training stays
"running" and resumes from its last checkpoint on a relaunch. Jobs run in the sweep process
itself (the basic launcher) or on other machines (SLURM) are not watched.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

POLL_S = 1.0  # how often a worker checks its parent
EXIT_CODE = 75  # the worker's exit status when it stops because the sweep is gone

_started: set[int] = set()  # pids of the sweeps this process already watches


def _watch(parent: int, poll_s: float) -> None:
    """Poll until `parent` is no longer this process's parent, then end the process at once."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    print(
        f"[worker {os.getpid()}] the sweep process {parent} is gone: stopping this job "
        "(its run stays 'running' and resumes on a relaunch)",
        file=sys.stderr,
        flush=True,
    )
    os._exit(EXIT_CODE)  # no cleanup: the run's last checkpoint is where a relaunch resumes


def watch_parent(parent: int, poll_s: float = POLL_S) -> bool:
    """In a worker started by the sweep process `parent`, stop when it dies; True if watching."""
    if os.getpid() == parent or os.getppid() != parent or parent in _started:
        return False  # in the sweep process, not its child, or already watched
    _started.add(parent)
    threading.Thread(
        target=_watch, args=(parent, poll_s), name="sweep-watchdog", daemon=True
    ).start()
    return True


class Watched:
    """A task function that, run in a worker process of the sweep, stops when the sweep dies."""

    def __init__(self, task: Callable[[Any], Any], parent: int | None = None) -> None:
        self.task = task
        self.parent = os.getpid() if parent is None else parent

    def __call__(self, cfg: Any) -> Any:
        """Start the watchdog (in a worker only), then run the task."""
        watch_parent(self.parent)
        return self.task(cfg)
