"""The invariance figure: the share of positions whose similarity to an anchor reaches τ, as a curve over τ."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shiftlens.analyses.base import ANCHORS
from shiftlens.figures.base import analysis_table, plt, register_figure, save, weights_note
from shiftlens.store import Part, RunRecord


@register_figure
def invariance_tau_curves(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """Share of positions with similarity >= tau, as a curve over tau, per model/layer and anchor."""
    from shiftlens.analyses.invariance import TAUS

    taus = np.linspace(0.5, 1.0, 101)
    curves = analysis_table(parts, "similarity", lambda p, l: (p.get("similarity", l, "maps")[..., None]
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
