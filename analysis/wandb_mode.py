"""Resolve a W&B mode without waiting on the network: shared by training and analysis runs.

`auto` honours WANDB_MODE, else goes online only when credentials exist (WANDB_API_KEY or a
netrc entry for the W&B host) and the host answers a TCP connect within 2 s, so neither a
machine without a login nor one with a login but no network (a cluster node, a train) waits on
the network: both log offline, to be synced later.
"""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

MODES = ("auto", "online", "offline", "disabled")


def _host() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def reachable(timeout: float = 2.0) -> bool:
    """Whether the W&B host accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection(_host(), timeout=timeout):
            return True
    except OSError:
        return False


def has_credentials() -> bool:
    """Whether a W&B API key is configured (WANDB_API_KEY or a netrc entry); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = _host()[0]
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str = "auto") -> str:
    """online/offline/disabled; auto honours WANDB_MODE, else online only with credentials and
    a reachable host."""
    if mode not in MODES:
        raise ValueError(f"W&B mode {mode!r} is not one of {MODES}")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if has_credentials() and reachable() else "offline"
