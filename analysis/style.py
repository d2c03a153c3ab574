"""The paper style: figure sizes, the size colour map, uncluttered labels, deterministic saving."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import matplotlib.style
import numpy as np
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import Formatter
from matplotlib.transforms import Bbox

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


# --- labels that never overlap -----------------------------------------------------------------


def _drawn_ticks(axis: Axis) -> list:
    """The ticks the last draw put inside the view (matplotlib keeps spare ones outside it)."""
    return axis._update_ticks()  # the list Axis.draw itself uses


def label_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """(name, window extent) of every text a draw of ``fig`` shows: tick labels of the ticks in
    view, axis labels, offsets, titles, legend texts, annotations and figure texts."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes: list[tuple[str, Bbox]] = []

    def add(text: Text | None, where: str) -> None:
        if text is not None and text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            if box.width > 0 and box.height > 0:
                boxes.append((f"{where}: {text.get_text()}", box))

    for i, ax in enumerate(fig.axes):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            for tick in _drawn_ticks(axis):
                add(tick.label1, f"axes {i} {name} tick")
                add(tick.label2, f"axes {i} {name} tick")
            add(axis.label, f"axes {i} {name} label")
            add(axis.get_offset_text(), f"axes {i} {name} offset")
        for text in (ax.title, ax._left_title, ax._right_title, *ax.texts):
            add(text, f"axes {i} text")
        if ax.get_legend() is not None:
            for text in (ax.get_legend().get_title(), *ax.get_legend().get_texts()):
                add(text, f"axes {i} legend")
    for legend in fig.legends:
        for text in (legend.get_title(), *legend.get_texts()):
            add(text, "figure legend")
    for text in fig.texts:
        add(text, "figure text")
    return boxes


def _overlap(a: Bbox, b: Bbox, tol: float = 0.5) -> bool:
    """True when two boxes share more than ``tol`` pixels in both directions."""
    dx = min(a.x1, b.x1) - max(a.x0, b.x0)
    dy = min(a.y1, b.y1) - max(a.y0, b.y0)
    return dx > tol and dy > tol


def label_problems(fig: Figure) -> list[str]:
    """Texts of ``fig`` that overlap one another or stick out of the figure (empty: clean)."""
    boxes = label_boxes(fig)
    w, h = fig.bbox.width, fig.bbox.height
    problems = [
        f"outside the figure: {name!r}"
        for name, b in boxes
        if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > w + 0.5 or b.y1 > h + 0.5
    ]
    for i, (name, box) in enumerate(boxes):
        problems += [
            f"{name!r} overlaps {other!r}" for other, b in boxes[i + 1 :] if _overlap(box, b)
        ]
    return problems


class _Thinned(Formatter):
    """A tick formatter that leaves some tick values unlabelled (the ticks themselves stay)."""

    def __init__(self, base: Formatter, hidden: Sequence[float]) -> None:
        self.base, self.hidden = base, np.asarray(hidden, float)

    def set_axis(self, axis) -> None:
        super().set_axis(axis)
        self.base.set_axis(axis)

    def set_locs(self, locs) -> None:
        self.base.set_locs(locs)

    def __call__(self, x: float, pos: int | None = None) -> str:
        if np.any(np.isclose(x, self.hidden, rtol=1e-9, atol=0)):
            return ""
        return self.base(x, pos)


def declutter(fig: Figure) -> int:
    """Unlabel the tick labels that would overlap: in each axis the major labels come first, in
    order, then the minor ones, and a label touching one already kept loses its text (crowded
    minor labels at single-column width, close colour-bar ticks). Returns how many went."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    hidden_total = 0
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            kept: list[Bbox] = []
            for minor, formatter in ((False, axis.get_major_formatter()),
                                     (True, axis.get_minor_formatter())):  # fmt: skip
                ticks = [t for t in _drawn_ticks(axis) if (t in axis.minorTicks) == minor]
                hidden = []
                for tick in ticks:
                    label = tick.label1 if tick.label1.get_visible() else tick.label2
                    if not label.get_visible() or not label.get_text().strip():
                        continue
                    box = label.get_window_extent(renderer)
                    if any(_overlap(box, k, tol=-2.0) for k in kept):  # keep a 2 px gap
                        hidden.append(tick.get_loc())
                    else:
                        kept.append(box)
                if hidden:
                    thinned = _Thinned(formatter, hidden)
                    (axis.set_minor_formatter if minor else axis.set_major_formatter)(thinned)
                    hidden_total += len(hidden)
    return hidden_total
