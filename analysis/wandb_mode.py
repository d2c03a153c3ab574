"""Resolve a W&B mode without touching the network: shared by training and analysis runs.

`auto` honours WANDB_MODE, else goes online only when credentials exist (WANDB_API_KEY or a
netrc entry for the W&B host), so a machine without a login never waits on a network.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

MODES = ("auto", "online", "offline", "disabled")


def has_credentials() -> bool:
    """Whether a W&B API key is configured (WANDB_API_KEY or a netrc entry); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str = "auto") -> str:
    """online/offline/disabled; auto honours WANDB_MODE, else online only with credentials."""
    if mode not in MODES:
        raise ValueError(f"W&B mode {mode!r} is not one of {MODES}")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if has_credentials() else "offline"
