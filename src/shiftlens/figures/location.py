"""The location probe's figure: its error (px) at each patch position, mean over patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shiftlens.canvases import axis_positions
from shiftlens.figures.base import analysis_table, colorbar, map_grid, register_figure, save, weights_note
from shiftlens.store import Part, RunRecord


@register_figure
def location_error_maps(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """Location-probe error (px) at each patch position, mean over patches; rows = model/layer, columns = protocol."""
    from shiftlens.analyses.folds import PROTOCOLS

    errs = analysis_table(parts, "location", lambda p, l: [p.get("location", l, f"err_{pr}") for pr in PROTOCOLS])
    canvas, stride = run.config.canvas, run.config.stride
    written = []
    for size in sorted({k[0] for k in errs}):
        keys = [k for k in errs if k[0] == size]
        weights = {p.weights for p in parts if p.patch_size == size}
        means = {k: np.mean(errs[k], axis=0) for k in keys}
        vmax = max(float(m.max()) for m in means.values())
        o = axis_positions(canvas, size, stride, run.config.protocol, run.config.shift) + size / 2
        extent = (o[0] - 0.5 * stride, o[-1] + 0.5 * stride, o[-1] + 0.5 * stride, o[0] - 0.5 * stride)
        fig, axes = map_grid(len(keys), len(PROTOCOLS), 2.4)
        im = None
        for r, k in enumerate(keys):
            for c, protocol in enumerate(PROTOCOLS):
                ax = axes[r, c]
                im = ax.imshow(means[k][c], cmap="viridis", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
                ax.tick_params(labelsize=7)
                if r == 0:
                    ax.set_title(f"protocol: {protocol}", fontsize=10)
                if r == len(keys) - 1:
                    ax.set_xlabel("x (px)", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{k[1]} {k[2]}\n({len(errs[k])} patches)\ny (px)", fontsize=8)
        colorbar(fig, im, axes, "|predicted - true centre| (px)")
        fig.suptitle(f"Location probe (ridge, 5-fold CV): error by patch centre, {size}px patches\n"
                     f"x, y: the patch centre on the canvas (px)\n{weights_note(weights)}", fontsize=10)
        written.append(save(fig, out / f"location_error_p{size}.png"))
    return written
