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
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from shiftlens.analyses.base import ANCHORS  # noqa: E402
from shiftlens.canvases import axis_positions  # noqa: E402
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


def _map_grid(n_rows: int, n_cols: int, side: float):
    """Rows x columns of square maps sharing px axes (tick labels on the outer panels only), laid out so that titles,
    labels, colour bar and suptitle never overlap and the square panels sit close together (compressed layout)."""
    return plt.subplots(n_rows, n_cols, figsize=(side * n_cols + 1.8, side * n_rows + 1.3), squeeze=False,
                        sharex=True, sharey=True, layout="compressed")


def _colorbar(fig, im, axes, label: str):
    """A colour bar whose ticks read as plain numbers (no '1e-7+9.99e-1' offset for a nearly constant map)."""
    bar = fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    bar.formatter = ScalarFormatter(useOffset=False)
    bar.update_ticks()
    return bar


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
        fig, axes = _map_grid(len(means), len(ANCHORS), 2.0)
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
        _colorbar(fig, im, axes, "cosine similarity to anchor")
        fig.suptitle(f"Cosine similarity to each anchor, {size}px patches on a {canvas}px canvas, stride {stride}, "
                     f"mean over patches\nx, y: {offset_label(run.config)} (px)\n{weights_note(weights)}",
                     fontsize=10)
        written.append(save(fig, out / f"similarity_p{size}.png"))
    return written


def _analysis_table(parts: list[Part], analysis: str, fn) -> dict[tuple, list]:
    """Group per-part values of one analysis by (size, model, layer): {key: [fn(part, layer), ...]}."""
    out: dict[tuple, list] = {}
    for part in parts:
        for layer in part.layers(analysis):
            value = fn(part, layer)
            if value is not None:
                out.setdefault((part.patch_size, part.model, layer), []).append(value)
    return out


@register_figure
def separability_bars(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """Mean fold accuracy per model/layer and task, one panel per protocol, one figure per patch size."""
    from shiftlens.analyses.folds import PROTOCOLS, TASKS

    acc = _analysis_table(parts, "separability",
                          lambda p, l: {pr: p.get("separability", l, f"acc_{pr}") for pr in PROTOCOLS})
    written = []
    for size in sorted({k[0] for k in acc}):
        keys = [k for k in acc if k[0] == size]
        weights = {p.weights for p in parts if p.patch_size == size}
        bars = {}  # (protocol, task) -> (means, stds) over keys
        for protocol in PROTOCOLS:
            for t, task in enumerate(TASKS):
                per_patch = [[a[protocol][t] for a in acc[k] if a[protocol] is not None] for k in keys]
                bars[protocol, task] = (
                    np.array([float(np.mean([f.mean() for f in pp])) if pp else np.nan for pp in per_patch]),
                    np.array([float(np.mean([f.std() for f in pp])) if pp else np.nan for pp in per_patch]))
        lows = [np.nanmin(m - s) for m, s in bars.values() if np.isfinite(m).any()]
        highs = [np.nanmax(m + s) for m, s in bars.values() if np.isfinite(m).any()]
        # the whole error bar in view: a mean of 0.98 with a fold std of 0.05 reaches 1.03
        ylim = (min([0.4, *lows]) - 0.02, max([1.0, *highs]) + 0.02)
        fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(2 * (1.1 * len(keys) + 1.2) + 1.6, 3.8),
                                 squeeze=False, sharey=True, layout="constrained")
        for ax, protocol in zip(axes[0], PROTOCOLS):
            x = np.arange(len(keys))
            for t, task in enumerate(TASKS):
                means, stds = bars[protocol, task]
                ax.bar(x + (t - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=task.replace("_", "/"))
            ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance (0.5)")
            ax.set_xticks(x, [f"{m}\n{l}" for _, m, l in keys], fontsize=8)
            ax.set_ylim(*ylim)
            ax.set_title(f"protocol: {protocol}")
        axes[0, 0].set_ylabel("mean 5-fold accuracy\n(error bar: mean fold std)")
        fig.legend(*axes[0, 0].get_legend_handles_labels(), fontsize=8, loc="outside lower center",
                   ncols=len(TASKS) + 1)
        fig.suptitle(f"Linear SVM separability, {size}px patches, mean over patches\n{weights_note(weights)}", fontsize=10)
        written.append(save(fig, out / f"separability_p{size}.png"))
    return written


@register_figure
def invariance_tau_curves(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """Share of positions with similarity >= tau, as a curve over tau, per model/layer and anchor."""
    from shiftlens.analyses.invariance import TAUS

    taus = np.linspace(0.5, 1.0, 101)
    curves = _analysis_table(parts, "similarity", lambda p, l: (p.get("similarity", l, "maps")[..., None]
                                                                >= taus).mean(axis=(1, 2)))
    written = []
    if "invariance" not in run.config.analyses:
        return written
    for size in sorted({k[0] for k in curves}):
        keys = [k for k in curves if k[0] == size]
        weights = {p.weights for p in parts if p.patch_size == size}
        fig, axes = plt.subplots(1, len(ANCHORS), figsize=(2.6 * len(ANCHORS) + 2.6, 3.4), sharey=True,
                                 squeeze=False, layout="constrained")
        for a, anchor in enumerate(ANCHORS):
            ax = axes[0, a]
            for k in keys:
                ax.plot(taus, np.mean(curves[k], axis=0)[a], label=f"{k[1]} {k[2]}")
            for i, tau in enumerate(TAUS):
                ax.axvline(tau, color="grey", lw=0.5, ls=":", label="τ of invariance.csv" if i == 0 else None)
            ax.set_title(f"anchor {anchor}")
            ax.set_xlabel("τ (similarity threshold)")
        axes[0, 0].set_ylabel("share of positions\nwith similarity ≥ τ")
        fig.legend(*axes[0, 0].get_legend_handles_labels(), fontsize=7, loc="outside right upper")
        fig.suptitle(f"Global invariance, {size}px patches, mean over patches\n{weights_note(weights)}", fontsize=10)
        written.append(save(fig, out / f"invariance_tau_p{size}.png"))
    return written


@register_figure
def location_error_maps(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """Location-probe error (px) at each patch position, mean over patches; rows = model/layer, columns = protocol."""
    from shiftlens.analyses.folds import PROTOCOLS

    errs = _analysis_table(parts, "location", lambda p, l: [p.get("location", l, f"err_{pr}") for pr in PROTOCOLS])
    canvas, stride = run.config.canvas, run.config.stride
    written = []
    for size in sorted({k[0] for k in errs}):
        keys = [k for k in errs if k[0] == size]
        weights = {p.weights for p in parts if p.patch_size == size}
        means = {k: np.mean(errs[k], axis=0) for k in keys}
        vmax = max(float(m.max()) for m in means.values())
        o = axis_positions(canvas, size, stride, run.config.protocol, run.config.shift) + size / 2
        extent = (o[0] - 0.5 * stride, o[-1] + 0.5 * stride, o[-1] + 0.5 * stride, o[0] - 0.5 * stride)
        fig, axes = _map_grid(len(keys), len(PROTOCOLS), 2.4)
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
        _colorbar(fig, im, axes, "|predicted - true centre| (px)")
        fig.suptitle(f"Location probe (ridge, 5-fold CV): error by patch centre, {size}px patches\n"
                     f"x, y: the patch centre on the canvas (px)\n{weights_note(weights)}", fontsize=10)
        written.append(save(fig, out / f"location_error_p{size}.png"))
    return written


def make_all(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    written = []
    for maker in FIGURE_MAKERS:
        written += maker(parts, out, run)
    return written


