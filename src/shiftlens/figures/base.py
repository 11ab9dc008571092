"""What every figure maker shares: the registries (`register_figure`, `register_output_figures`), `make_all`, and
the helpers (`save`, `weights_note`, `offset_label`, `map_grid`, `colorbar`, `analysis_table`).

`make_all(parts, figures_dir, run)` regenerates every figure of a run from its stored results (one call, as
model-vs-human); importing `shiftlens.figures` registers every maker. Untrained weights are stated on every figure
that shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from shiftlens.models.weights import UNTRAINED  # noqa: E402
from shiftlens.store import Part, RunRecord, atomic_path  # noqa: E402

FIGURE_MAKERS: list[Callable[[list[Part], Path, RunRecord], list[Path]]] = []
"""Each analysis can add a maker: (parts, figures_dir, run record) -> written paths."""


def register_figure(fn):
    FIGURE_MAKERS.append(fn)
    return fn


OUTPUT_FIGURES: dict[str, Callable[..., list[Path]]] = {}
"""Analysis name -> `maker(outputs, results, run)`: the figures of an analysis's `outputs` (its cross-part state's
figure data), registered by the module that draws them."""


def register_output_figures(analysis: str):
    def register(fn):
        OUTPUT_FIGURES[analysis] = fn
        return fn
    return register


def weights_note(weights: set[str]) -> str:
    if UNTRAINED in weights:
        return "UNTRAINED (random weights): not a finding about trained networks"
    return "weights: " + ", ".join(sorted(weights))


def save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def offset_label(config) -> str:
    """What a map's x and y (px) are under the run's protocol and shift (the site's hover says the same)."""
    if config.protocol == "crop":
        return "the window's top-left corner on the resized image"
    if config.shift == "circular":
        return "how far the canvas is rolled"
    return "the patch's top-left corner on the canvas"


def map_grid(n_rows: int, n_cols: int, side: float):
    """Rows x columns of square maps sharing px axes (tick labels on the outer panels only), laid out so that titles,
    labels, colour bar and suptitle never overlap and the square panels sit close together (compressed layout)."""
    return plt.subplots(n_rows, n_cols, figsize=(side * n_cols + 1.8, side * n_rows + 1.3), squeeze=False,
                        sharex=True, sharey=True, layout="compressed")


def colorbar(fig, im, axes, label: str):
    """A colour bar whose ticks read as plain numbers (no '1e-7+9.99e-1' offset for a nearly constant map)."""
    bar = fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    bar.formatter = ScalarFormatter(useOffset=False)
    bar.update_ticks()
    return bar


def analysis_table(parts: list[Part], analysis: str, fn) -> dict[tuple, list]:
    """Group per-part values of one analysis by (size, model, layer): {key: [fn(part, layer), ...]}."""
    out: dict[tuple, list] = {}
    for part in parts:
        for layer in part.layers(analysis):
            value = fn(part, layer)
            if value is not None:
                out.setdefault((part.patch_size, part.model, layer), []).append(value)
    return out


def make_all(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    written = []
    for maker in FIGURE_MAKERS:
        written += maker(parts, out, run)
    return written


