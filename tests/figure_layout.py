"""What a reader cannot read in a matplotlib figure: text on text, text on another panel, a legend on data.

`layout_problems(fig)` draws the figure and returns one line per problem (empty when it reads cleanly):

- two text boxes overlap (titles, suptitle, axis labels, the tick labels actually drawn, legend texts, figure and
  axes texts), with a pixel of tolerance;
- a text sits on another panel's ink (the frame of an axes with its axis on, the images of one drawn with axis off);
- a legend covers a data artist of its own axes (a line's points, a bar, an image, an error bar), another panel's
  ink, or a text that is not its own.

Tests patch the figure modules' save functions with `checking_save` so that every figure a maker writes is checked
as it is saved, in the layout it is saved with.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

TOLERANCE = 1.0
"""Pixels two boxes may share before they count as overlapping (antialiased edges, rounding)."""


def _shown(t: Text) -> bool:
    return bool(t.get_visible() and t.get_text().strip())


def _drawn_ticklabels(axis) -> list[Text]:
    """The tick labels the axis draws (the locator may place ticks outside the view, which are not drawn)."""
    out = []
    for tick in axis._update_ticks():  # matplotlib's own list of the ticks inside the view interval
        out += [lab for lab in (tick.label1, tick.label2) if lab.get_visible()]
    return out


def _axes_texts(ax: Axes) -> list[Text]:
    texts = [ax.title, ax._left_title, ax._right_title, *ax.texts]
    if ax.axison:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_visible():
                texts += [axis.label, axis.get_offset_text(), *_drawn_ticklabels(axis)]
    return [t for t in texts if _shown(t)]


def _legends(fig) -> list[Legend]:
    return [lg for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if lg is not None and lg.get_visible()]


def _ink(ax: Axes, renderer) -> list[Bbox]:
    """Where a panel draws: its frame when its axis is on, else its images."""
    if not ax.get_visible():
        return []
    if ax.axison:
        return [ax.get_window_extent(renderer)]
    return [im.get_window_extent(renderer) for im in ax.images if im.get_visible()]


def _overlap(a: Bbox, b: Bbox) -> bool:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > TOLERANCE and h > TOLERANCE


def _inside(points: np.ndarray, box: Bbox) -> bool:
    p = points[np.isfinite(points).all(axis=1)]
    return bool(np.any((p[:, 0] > box.x0 + TOLERANCE) & (p[:, 0] < box.x1 - TOLERANCE)
                       & (p[:, 1] > box.y0 + TOLERANCE) & (p[:, 1] < box.y1 - TOLERANCE)))


def _covers_data(ax: Axes, box: Bbox, renderer) -> str | None:
    """The first data artist of `ax` that the legend box `box` covers, or None."""
    for line in ax.lines:
        if line.get_visible():
            path = line.get_path()
            pts = line.get_transform().transform(path.interpolated(16).vertices if len(path.vertices) > 1
                                                  else path.vertices)
            if _inside(pts, box):
                return f"line {line.get_label()!r}"
    for coll in ax.collections:
        if isinstance(coll, LineCollection) and coll.get_visible():
            for seg in coll.get_segments():
                pts = np.linspace(seg[0], seg[-1], 16) if len(seg) > 1 else seg
                if _inside(coll.get_transform().transform(pts), box):
                    return "error bar"
    for patch in ax.patches:
        if patch.get_visible() and _overlap(patch.get_window_extent(renderer), box):
            return f"bar/patch {patch.get_label()!r}"
    for im in ax.images:
        if im.get_visible() and _overlap(im.get_window_extent(renderer), box):
            return "image"
    return None


def layout_problems(fig) -> list[str]:
    """Every text, panel and legend collision of `fig` as drawn; [] when none."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    items: list[tuple[Text, Axes | None]] = [(t, None) for t in fig.texts if _shown(t)]
    for ax in fig.axes:
        if ax.get_visible():
            items += [(t, ax) for t in _axes_texts(ax)]
    legends = _legends(fig)
    legend_texts = {id(t): lg for lg in legends for t in [*lg.get_texts(), lg.get_title()] if _shown(t)}
    items += [(t, None) for lg in legends for t in [*lg.get_texts(), lg.get_title()] if _shown(t)]
    boxes = [(t, owner, t.get_window_extent(renderer)) for t, owner in items]
    ink = {id(ax): _ink(ax, renderer) for ax in fig.axes}
    problems = []
    for i, (a, _, ba) in enumerate(boxes):
        for b, _, bb in boxes[i + 1:]:
            if _overlap(ba, bb):
                problems.append(f"text {a.get_text()!r} overlaps text {b.get_text()!r}")
    for t, owner, box in boxes:
        if id(t) in legend_texts:
            continue
        for ax in fig.axes:
            if ax is not owner and any(_overlap(box, b) for b in ink[id(ax)]):
                problems.append(f"text {t.get_text()!r} lies on another panel ({ax.get_title() or ax.get_label()!r})")
                break
    for lg in legends:
        box = lg.get_window_extent(renderer)
        own = lg.axes if isinstance(lg.parent, Axes) else None
        for t, _, tb in boxes:
            if legend_texts.get(id(t)) is not lg and _overlap(box, tb):
                problems.append(f"legend covers text {t.get_text()!r}")
        for ax in fig.axes:
            if ax is own:
                what = _covers_data(ax, box, renderer)
                if what:
                    problems.append(f"legend covers the {what} of its panel ({ax.get_title()!r})")
            elif any(_overlap(box, b) for b in ink[id(ax)]):
                problems.append(f"legend lies on another panel ({ax.get_title() or ax.get_label()!r})")
    return problems


def checking_save(save: Callable, found: dict[str, list[str]]) -> Callable:
    """A save function that records `layout_problems` of each figure under its file name, then saves it."""
    def wrapped(fig, path, *args, **kwargs):
        found[path.name] = layout_problems(fig)
        return save(fig, path, *args, **kwargs)
    return wrapped
