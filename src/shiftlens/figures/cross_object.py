"""Figure of the location probe's cross-object protocol: error on unseen objects per model/layer, probe and baseline.

Drawn from `tables/location_cross_object.csv` (written just before the figures), so the probes are not trained twice.
Registers itself with `figures.FIGURE_MAKERS` (the figures package imports this module).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shiftlens.figures.base import plt, register_figure, save, weights_note
from shiftlens.store import Part, ResultsDir, RunRecord

TABLE = "location_cross_object"


@register_figure
def cross_object_bars(parts: list[Part], out: Path, run: RunRecord) -> list[Path]:
    """Median error (px) on unseen objects per model/layer, one bar per probe, one figure per patch size."""
    results = ResultsDir(out.parent)
    if "location" not in run.config.analyses or not (results.tables_dir / f"{TABLE}.csv").is_file():
        return []
    table = results.read_table(TABLE).dropna(subset=["median_dist_px"])
    written = []
    for size, rows in table.groupby("patch_size", sort=True):
        keys = list(dict.fromkeys(zip(rows.model, rows.layer)))
        probes = list(dict.fromkeys(rows.probe))
        fig, ax = plt.subplots(figsize=(3 + 0.9 * len(keys) * len(probes), 3.6))
        x = np.arange(len(keys))
        width = 0.8 / len(probes)
        for i, probe in enumerate(probes):
            by_key = rows[rows.probe == probe].set_index(["model", "layer"]).median_dist_px
            ax.bar(x + (i - (len(probes) - 1) / 2) * width, [by_key.get(k, np.nan) for k in keys], width,
                   label="centre (baseline: the training mean)" if probe == "centre" else probe)
        ax.set_xticks(x, [f"{m}\n{l}" for m, l in keys], fontsize=8)
        ax.set_ylabel("median |predicted - true centre| (px)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        n = int(rows.n_patches.iloc[0])
        fig.suptitle(f"Location probe across objects (grouped folds over {n} patches, tested on unseen objects), "
                     f"{size}px patches\n{weights_note(set(rows.weights))}", fontsize=10)
        written.append(save(fig, out / f"location_cross_object_p{size}.png"))
    return written
