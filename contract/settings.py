"""Named settings: ``conf/<group>/<name>.yaml`` or a YAML file, plus overrides, checked against
the fields of the dataclass they fill. One loader for both sides: `scaling-prepare`
(``conf/prepare/``, scaling/prepare.py) and `scaling-hparams` (``conf/hparams/``,
analysis/hparams.py); each keeps its own exception type and its own checks of the values.

PyYAML is the one import beyond the standard library in contract/ (tests/test_architecture.py
allows it by name, for this module only): the settings files are YAML like the rest of conf/,
PyYAML is pure Python and already installed on both sides (OmegaConf depends on it), and a
hand-written YAML subset here would be a second parser to keep right.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml


class Loaded(NamedTuple):
    """A settings file read and merged with its overrides."""

    path: Path  # the file read (a named setting resolved to conf/<group>/<name>.yaml)
    values: dict[str, Any]  # its keys, overridden by every override that is not None


def settings_path(directory: Path, name_or_path: str | Path) -> Path:
    """``<directory>/<name>.yaml`` for a bare name, else the path as given."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1:
        return directory / f"{name_or_path}.yaml"
    return path


def load_settings(
    directory: Path,
    name_or_path: str | Path,
    valid: Sequence[str],
    overrides: Mapping[str, Any] | None,
    *,
    what: str,
    error: Callable[[str], Exception],
) -> Loaded:
    """Read a named setting or a YAML file, apply `overrides` (None = not given), and refuse
    an unreadable file, a non-mapping or a key outside `valid` (naming the nearest one) by
    raising ``error(message)``; `what` names the settings in messages ("prepare")."""
    path = settings_path(directory, name_or_path)
    known = sorted(p.stem for p in directory.glob("*.yaml"))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise error(
            f"{what} settings {str(name_or_path)!r} cannot be read ({type(err).__name__}); "
            f"give a named setting {known} or a .yaml file"
        ) from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of settings, got {data!r:.40}")
    merged = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    unknown = sorted(set(merged) - set(valid), key=str)
    if unknown:
        near = {u: m[0] for u in unknown if (m := difflib.get_close_matches(str(u), valid, n=1))}
        hint = ", ".join(f"{m!r} for {u!r}" for u, m in near.items())
        raise error(
            f"{path}: unknown setting(s) {unknown}; valid: {list(valid)}"
            + (f"; did you mean {hint}?" if hint else "")
        )
    return Loaded(path, merged)
