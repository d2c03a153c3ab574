"""The paper style: figure sizes, the size colour map, and deterministic saving."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import matplotlib.style
import numpy as np
from matplotlib.colors import Colormap, ListedColormap, LogNorm
from matplotlib.figure import Figure

PAPER_STYLE = Path(__file__).with_name("paper.mplstyle")

# Column widths (inches) of the common two-column venues (ACL, ICML, NeurIPS single = 5.5).
WIDTHS = {"single": 3.25, "double": 6.75}

# Sequential, colour-blind-safe maps: model size (N) and compute budget (C). The light end is
# cut so the largest size stays visible on white.
SIZE_CMAP = "cividis"
BUDGET_CMAP = "viridis"
CMAP_RANGE = (0.0, 0.85)

FORMATS = ("pdf", "png", "svg")

# Per-format metadata that would otherwise embed a version string or a timestamp.
_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "svg": {"Creator": None, "Date": None},
}


def width_inches(width: str | float) -> float:
    """Figure width in inches for 'single', 'double' or a number of inches."""
    if isinstance(width, (int, float)):
        return float(width)
    if width not in WIDTHS:
        raise ValueError(f"width {width!r} is not one of {sorted(WIDTHS)} or a number of inches")
    return WIDTHS[width]


@contextmanager
def paper_style(style: str | Path | None = None, usetex: bool = False) -> Iterator[None]:
    """Apply the paper style (plus an optional user style merged over it) inside the block."""
    styles: list[str | Path] = [PAPER_STYLE]
    if style is not None:
        if not Path(style).is_file() and style not in matplotlib.style.available:
            raise FileNotFoundError(
                f"style {str(style)!r} is neither a file nor one of matplotlib's styles "
                f"({', '.join(sorted(matplotlib.style.available)[:6])}, ...)"
            )
        styles.append(style)
    with (
        matplotlib.style.context(styles, after_reset=True),
        mpl.rc_context({"text.usetex": usetex, "svg.hashsalt": "scaling-plot"}),
    ):
        yield


def cmap(name: str) -> Colormap:
    """A named sequential map truncated to CMAP_RANGE (so no entry is near-white)."""
    base = mpl.colormaps[name]
    lo, hi = CMAP_RANGE
    return ListedColormap(base(np.linspace(lo, hi, 256)), name=f"{name}_paper")


def log_norm(values: Iterable[float]) -> LogNorm:
    """A log colour norm spanning the positive finite values (padded if they are all equal)."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    if v.size == 0:
        return LogNorm(1.0, 10.0)
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        lo, hi = lo / 2, hi * 2
    return LogNorm(lo, hi)


def size_colors(sizes: Sequence[float]) -> dict[float, tuple]:
    """One colour per model size, ordered by N on the sequential size map."""
    norm = log_norm(sizes)
    m = cmap(SIZE_CMAP)
    return {n: m(norm(n)) for n in sizes}


def save(fig: Figure, stem: Path, fmt: Sequence[str] = ("pdf", "png")) -> list[Path]:
    """Write fig as stem.<fmt> for each format, with no timestamps or version strings."""
    paths = []
    for f in fmt:
        if f not in FORMATS:
            raise ValueError(f"format {f!r} is not one of {FORMATS}")
        path = stem.with_suffix(f".{f}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=f, metadata=_METADATA[f])
        paths.append(path)
    return paths
