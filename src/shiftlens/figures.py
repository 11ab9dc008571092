"""Figures from the results folder, like the paper's Figures 3 and 4: models x anchors, mean map over patches.

`make_all(results)` regenerates every figure of a run from its stored results (one call, as model-vs-human).
Untrained weights are stated on every figure that shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shiftlens.analyses.base import ANCHORS, Part  # noqa: E402
from shiftlens.canvases import offsets  # noqa: E402
from shiftlens.models.weights import UNTRAINED  # noqa: E402

FIGURE_MAKERS: list[Callable[[list[Part], Path, dict], list[Path]]] = []
"""Each analysis can add a maker: (parts, figures_dir, run_info) -> written paths."""


def register_figure(fn):
    FIGURE_MAKERS.append(fn)
    return fn


def weights_note(weights: set[str]) -> str:
    if UNTRAINED in weights:
        return "UNTRAINED (random weights): not a finding about trained networks"
    return "weights: " + ", ".join(sorted(weights))


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


@register_figure
def similarity_grids(parts: list[Part], out: Path, run: dict) -> list[Path]:
    """One figure per patch size: rows = model/layer, columns = anchors, shared colour scale up to 1."""
    written = []
    cfg = run.get("config", {})
    canvas, stride = cfg.get("canvas", 224), cfg.get("stride", 1)
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
        fig, axes = plt.subplots(len(means), len(ANCHORS), figsize=(2.2 * len(ANCHORS) + 1, 2.2 * len(means) + 0.8),
                                 squeeze=False)
        o = offsets(canvas, size, stride)
        extent = (o[0] - 0.5 * stride, o[-1] + 0.5 * stride, o[-1] + 0.5 * stride, o[0] - 0.5 * stride)
        im = None
        for r, ((model, layer), m) in enumerate(means.items()):
            n_p = len(rows[(model, layer)])
            for c, anchor in enumerate(ANCHORS):
                ax = axes[r, c]
                im = ax.imshow(m[c], cmap="hot", vmin=vmin, vmax=1.0, extent=extent, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(anchor)
                if c == 0:
                    ax.set_ylabel(f"{model}\n{layer} ({n_p} patches)", fontsize=8)
        fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity to anchor")
        fig.suptitle(f"Cosine similarity to each anchor, {size}px patches on a {canvas}px canvas, stride {stride}, "
                     f"mean over patches\n{weights_note(weights)}", fontsize=10)
        written.append(save(fig, out / f"similarity_p{size}.png"))
    return written


def make_all(parts: list[Part], out: Path, run: dict) -> list[Path]:
    written = []
    for maker in FIGURE_MAKERS:
        written += maker(parts, out, run)
    return written
