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

from shiftlens.analyses.base import ANCHORS  # noqa: E402
from shiftlens.canvases import axis_positions  # noqa: E402
from shiftlens.models.weights import UNTRAINED  # noqa: E402
from shiftlens.store import Part, RunRecord, atomic_path  # noqa: E402

FIGURE_MAKERS: list[Callable[[list[Part], Path, RunRecord], list[Path]]] = []
"""Each analysis can add a maker: (parts, figures_dir, run record) -> written paths."""


def register_figure(fn):
    FIGURE_MAKERS.append(fn)
    return fn


def weights_note(weights: set[str]) -> str:
    if UNTRAINED in weights:
        return "UNTRAINED (random weights): not a finding about trained networks"
    return "weights: " + ", ".join(sorted(weights))


def save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


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
        fig, axes = plt.subplots(len(means), len(ANCHORS), figsize=(2.2 * len(ANCHORS) + 1, 2.2 * len(means) + 0.8),
                                 squeeze=False)
        o = axis_positions(canvas, size, stride, run.config.protocol, run.config.shift)
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
        fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(4 + 1.2 * len(keys) * len(PROTOCOLS), 3.6), squeeze=False,
                                 sharey=True)
        for ax, protocol in zip(axes[0], PROTOCOLS):
            x = np.arange(len(keys))
            for t, task in enumerate(TASKS):
                per_patch = [[a[protocol][t] for a in acc[k] if a[protocol] is not None] for k in keys]
                means = [float(np.mean([f.mean() for f in pp])) if pp else np.nan for pp in per_patch]
                stds = [float(np.mean([f.std() for f in pp])) if pp else np.nan for pp in per_patch]
                ax.bar(x + (t - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=task.replace("_", "/"))
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_xticks(x, [f"{m}\n{l}" for _, m, l in keys], fontsize=8)
            ax.set_ylim(0.4, 1.02)
            ax.set_title(f"protocol: {protocol}")
        axes[0, 0].set_ylabel("mean 5-fold accuracy (error bar: mean fold std)")
        axes[0, -1].legend(fontsize=8, loc="lower right")
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
        fig, axes = plt.subplots(1, len(ANCHORS), figsize=(3 * len(ANCHORS), 3.2), sharey=True, squeeze=False)
        for a, anchor in enumerate(ANCHORS):
            ax = axes[0, a]
            for k in keys:
                ax.plot(taus, np.mean(curves[k], axis=0)[a], label=f"{k[1]} {k[2]}")
            for tau in TAUS:
                ax.axvline(tau, color="grey", lw=0.5, ls=":")
            ax.set_title(anchor)
            ax.set_xlabel("tau")
        axes[0, 0].set_ylabel("share of positions with similarity >= tau")
        axes[0, -1].legend(fontsize=7)
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
        fig, axes = plt.subplots(len(keys), len(PROTOCOLS), figsize=(3 * len(PROTOCOLS) + 1, 2.8 * len(keys) + 0.8),
                                 squeeze=False)
        im = None
        for r, k in enumerate(keys):
            for c, protocol in enumerate(PROTOCOLS):
                ax = axes[r, c]
                im = ax.imshow(means[k][c], cmap="viridis", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
                if r == 0:
                    ax.set_title(f"protocol: {protocol}")
                if c == 0:
                    ax.set_ylabel(f"{k[1]}\n{k[2]} ({len(errs[k])} patches)", fontsize=8)
        fig.colorbar(im, ax=axes, shrink=0.8, label="|predicted - true centre| (px)")
        fig.suptitle(f"Location probe (ridge, 5-fold CV): error by patch centre, {size}px patches\n"
                     f"{weights_note(weights)}", fontsize=10)
        written.append(save(fig, out / f"location_error_p{size}.png"))
    return written


def make_all(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    written = []
    for maker in FIGURE_MAKERS:
        written += maker(parts, out, run)
    return written


from shiftlens import cross_object_figure  # noqa: E402,F401  (registers its maker; it imports this module)
