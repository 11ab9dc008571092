"""Experiment 1's figure, like the paper's Figures 3 and 4: models x anchors, mean similarity map over patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shiftlens.analyses.base import ANCHORS
from shiftlens.canvases import axis_positions
from shiftlens.figures.base import colorbar, map_grid, offset_label, register_figure, save, weights_note
from shiftlens.store import Part, RunRecord


@register_figure
def similarity_grids(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """One figure per patch size: rows = model/layer, columns = anchors, shared colour scale up to 1."""
    written = []
    canvas, stride = run.config.canvas, run.config.stride
    for size in sorted({p.patch_size for p in parts}):
        rows: dict[tuple[str, str], list[np.ndarray]] = {}
        weights: set[str] = set()
        for part in (p for p in parts if p.patch_size == size):
            weights.add(part.weights)
            for layer in part.layers("similarity"):
                rows.setdefault((part.model, layer), []).append(part.get("similarity", layer, "maps"))
        if not rows:
            continue
        means = {k: np.mean(v, axis=0) for k, v in rows.items()}
        vmin = min(float(m.min()) for m in means.values())
        fig, axes = map_grid(len(means), len(ANCHORS), 2.0)
        o = axis_positions(canvas, size, stride, run.config.protocol, run.config.shift)
        extent = (o[0] - 0.5 * stride, o[-1] + 0.5 * stride, o[-1] + 0.5 * stride, o[0] - 0.5 * stride)
        im = None
        for r, ((model, layer), m) in enumerate(means.items()):
            n_p = len(rows[(model, layer)])
            for c, anchor in enumerate(ANCHORS):
                ax = axes[r, c]
                im = ax.imshow(m[c], cmap="hot", vmin=vmin, vmax=1.0, extent=extent, interpolation="nearest")
                ax.tick_params(labelsize=7)
                if r == 0:
                    ax.set_title(f"anchor {anchor}", fontsize=10)
                if r == len(means) - 1:
                    ax.set_xlabel("x (px)", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{model} {layer}\n({n_p} patches)\ny (px)", fontsize=8)
        colorbar(fig, im, axes, "cosine similarity to anchor")
        fig.suptitle(f"Cosine similarity to each anchor, {size}px patches on a {canvas}px canvas, stride {stride}, "
                     f"mean over patches\nx, y: {offset_label(run.config)} (px)\n{weights_note(weights)}",
                     fontsize=10)
        written.append(save(fig, out / f"similarity_p{size}.png"))
    return written
