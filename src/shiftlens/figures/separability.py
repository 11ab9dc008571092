"""Experiment 2's figure: linear SVM fold accuracy per model/layer, task and fold protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shiftlens.figures.base import analysis_table, plt, register_figure, save, weights_note
from shiftlens.store import Part, RunRecord


@register_figure
def separability_bars(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """Mean fold accuracy per model/layer and task, one panel per protocol, one figure per patch size."""
    from shiftlens.analyses.folds import PROTOCOLS, TASKS

    acc = analysis_table(parts, "separability",
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
