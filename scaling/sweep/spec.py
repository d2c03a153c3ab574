"""The `sweep:` node of a composed config, checked against SweepSpec and its kind."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scaling.config import SWEEPS_DIR, ConfigError, SweepSpec
from scaling.sweep.kinds import kind_of


def names() -> list[str]:
    """The sweeps declared in sweeps/*.yaml."""
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def parse_spec(node: Any) -> SweepSpec:
    """Check the `sweep:` node against SweepSpec and its kind (unknown keys, bad values)."""
    if node is None:
        raise ConfigError("no sweep selected: add +sweep=<name>; available: " + ", ".join(names()))
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = [str(k) for k in node if k not in known] if isinstance(node, DictConfig) else []
    if unknown:  # `+sweep.<key>=` adds keys past the schema: name them
        raise ConfigError(f"sweep: unknown key(s) {unknown}; valid: {sorted(known)}")
    try:
        spec = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepSpec), node))
    except ConfigError:
        raise
    except Exception as e:  # omegaconf wraps errors raised inside __post_init__
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"sweep: {e}".splitlines()[0]) from None
    assert isinstance(spec, SweepSpec)
    kind_of(spec)
    return spec
