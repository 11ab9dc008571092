"""Figures of single units, side by side as in Borowski et al.: the unit's tuning map (mean over patches at every
position), its natural exemplars (the canvases that drive it most, re-rendered from (patch, position): no image is
stored but the figures), and, where `shiftlens units visualise` made one, its synthetic image (activation
maximisation with the inversion's optimiser and priors).

One figure per model, layer and patch size: the 16 most position-coding units, the 16 most identity-coding units,
and the units asked for with `--units`. Untrained weights are stated on every figure that shows them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402

from shiftlens.analyses.units import LayerUnits, UnitOutputs, positions  # noqa: E402
from shiftlens.canvases import Normalisation, make_renderer  # noqa: E402
from shiftlens.config import RunConfig  # noqa: E402
from shiftlens.errors import ShiftlensError  # noqa: E402
from shiftlens.figures.base import register_output_figures, save, weights_note  # noqa: E402
from shiftlens.patches.patch import read_image  # noqa: E402
from shiftlens.store import ResultsDir, RunRecord, atomic_path, atomic_write_text, file_key  # noqa: E402

PLAIN = Normalisation(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
"""Renders RGB in [0, 1]: the exemplars are drawn, not fed to a network."""
TILES_PER_ROW = 4


class SyntheticImage(BaseModel):
    """One image made by `shiftlens units visualise`, listed in figures/units/synthetic.json."""

    model_config = ConfigDict(extra="forbid")

    model: str
    layer: str
    kind: Literal["maximise", "caricature"]
    unit: int | None
    """The maximised unit (None for a caricature, which pushes the whole layer)."""
    file: str
    """Path inside the results folder."""
    value: float
    start_value: float
    gain: float
    """(value - start) / |start|: how far the optimiser raised the quantity over its start."""
    patch: str | None = None
    position: tuple[int, int] | None = None
    """The canvas (patch, top-left y, x at the run's first size): a caricature's, or the start of a maximisation
    whose noise starts left the unit at 0 (None: it started from noise)."""
    steps: int
    tv_weight: float
    seed: int
    seconds: float
    untrained: bool


class SyntheticIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[SyntheticImage] = []


def synthetic_index_path(results: ResultsDir) -> Path:
    return results.figures_dir / "units" / "synthetic.json"


def read_synthetic(results: ResultsDir) -> SyntheticIndex:
    path = synthetic_index_path(results)
    if not path.is_file():
        return SyntheticIndex()
    try:
        return SyntheticIndex.model_validate_json(path.read_text())
    except ValueError:
        raise ShiftlensError(f"{path} is not a valid list of synthetic images: delete it and make them again with "
                             "`shiftlens units visualise`") from None


def add_synthetic(results: ResultsDir, image: SyntheticImage) -> None:
    index = read_synthetic(results)
    index.images = [i for i in index.images if i.file != image.file] + [image]
    atomic_write_text(synthetic_index_path(results), index.model_dump_json(indent=2))


class ExemplarRenderer:
    """Canvases at (patch, position) as (H, W, 3) float images in [0, 1], from the run's saved patch PNGs."""

    def __init__(self, results: ResultsDir, config: RunConfig, size: int) -> None:
        self.results, self.config, self.size = results, config, size
        self._renderers: dict[str, object] = {}

    def __call__(self, patch_id: str, y: int, x: int) -> np.ndarray:
        r = self._renderers.get(patch_id)
        if r is None:
            path = self.results.patch_png(self.size, patch_id)
            rgba = read_image(path, "RGBA")
            r = self._renderers[patch_id] = make_renderer(rgba, self.config.canvas, self.config.background, PLAIN,
                                                          "cpu", None, self.config.protocol, self.config.shift)
        with torch.inference_mode():
            img = r.render(np.array([y]), np.array([x]))[0]
        return img.float().permute(1, 2, 0).clamp(0, 1).numpy()


GAP_GREY = 0.6
"""Grey of the gaps and frame between exemplars: on a white background white gaps would hide where a canvas ends."""


def mosaic(images: list[np.ndarray]) -> np.ndarray:
    """Square-ish grid of equally sized images, 2 px grey gaps and a 2 px grey frame."""
    k = len(images)
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    h, w, _ = images[0].shape
    out = np.full((rows * h + (rows + 1) * 2, cols * w + (cols + 1) * 2, 3), GAP_GREY, np.float32)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        out[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = images[i] if i < k else 1.0
    return out


def exemplars(g: LayerUnits, unit: int, render: ExemplarRenderer, config: RunConfig) -> list[np.ndarray]:
    o = positions(config, g.patch_size)
    return [render(g.patch_ids[int(p)], int(o[q // g.n]), int(o[q % g.n]))
            for p, q in zip(g.ex_patch[unit], g.ex_pos[unit])]


THUMB = 96
"""Side in px of one exemplar in a unit's tile."""


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (side, side, 3), area-averaged down or nearest-neighbour up."""
    u8 = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    resample = Image.Resampling.BOX if image.shape[0] >= side else Image.Resampling.NEAREST
    return np.asarray(u8.resize((side, side), resample), dtype=np.float32) / 255


def unit_tile(g: LayerUnits, unit: int, render: ExemplarRenderer, config: RunConfig,
              synthetic: np.ndarray | None) -> np.ndarray:
    """One unit side by side as one image: tuning map (viridis, own scale), exemplar mosaic, synthetic image."""
    ex = mosaic([_resized(e, THUMB) for e in exemplars(g, unit, render, config)])
    side = ex.shape[0]
    t = g.tuning[unit].astype(np.float64)
    span = float(t.max() - t.min())
    tuning = matplotlib.colormaps["viridis"]((t - t.min()) / span if span > 0 else np.zeros_like(t))[..., :3]
    panels = [_resized(tuning, side), ex]
    if synthetic is not None:
        panels.append(_resized(synthetic, side))
    gap = np.ones((side, 4, 3), np.float32)
    out = [panels[0]]
    for p in panels[1:]:
        out += [gap, p]
    return np.concatenate(out, axis=1)


def unit_figure(g: LayerUnits, results: ResultsDir, record: RunRecord, synthetic: dict[int, Path]) -> Path | None:
    """The figure of one model, layer and size; None when it has no unit to show."""
    cfg = record.config
    featured = g.featured(cfg.units)
    sections = [("most position-coding", featured["position"]), ("most identity-coding", featured["identity"]),
                ("requested (--units)", featured["requested"])]
    sections = [(t, u) for t, u in sections if u]
    if not sections:
        return None
    render = ExemplarRenderer(results, cfg, g.patch_size)
    shares = g.shares()
    rows = sum(math.ceil(len(u) / TILES_PER_ROW) for _, u in sections)
    width = 3 if synthetic else 2
    fig, axes = plt.subplots(rows, TILES_PER_ROW, squeeze=False,
                             figsize=(2.0 * width * TILES_PER_ROW, 2.25 * rows + 1.0))
    for ax in axes.ravel():
        ax.axis("off")
    row = 0
    for title, units in sections:
        for i, u in enumerate(units):
            ax = axes[row + i // TILES_PER_ROW, i % TILES_PER_ROW]
            image = None
            if u in synthetic:
                image = read_image(results.root / synthetic[u], "RGB").astype(np.float32) / 255
            ax.imshow(unit_tile(g, u, render, cfg, image))
            ax.set_title(f"unit {u}: position {shares['position_share'][u]:.2f}, identity "
                         f"{shares['identity_share'][u]:.2f}, top {g.ex_value[u, 0]:.3g}", fontsize=7)
            if i % TILES_PER_ROW == 0:
                ax.text(-0.04, 0.5, title, transform=ax.transAxes, rotation=90, va="center", ha="right", fontsize=8)
        row += math.ceil(len(units) / TILES_PER_ROW)
    panels = "tuning map (mean over patches at each position, own colour scale) | top canvases" + (
        " | synthetic image (maximised)" if synthetic else "")
    fig.suptitle(f"Units of {g.model} {g.layer}, {g.patch_size}px patches ({len(g.patch_ids)} patches, stride "
                 f"{cfg.stride})\n{panels}\n{weights_note({g.weights})}", fontsize=9)
    fig.subplots_adjust(top=1 - 0.9 / fig.get_figheight())  # the title's lines, not a fixed share of a tall figure
    return save(fig, results.figures_dir / f"units_{file_key(g.model + '_' + g.layer)}_p{g.patch_size}.png")


@register_output_figures("units")
def make_all(units: UnitOutputs, results: ResultsDir, record: RunRecord) -> list[Path]:
    """Every unit figure of the run, plus the synthetic images already made (so run.json keeps listing them)."""
    index = read_synthetic(results)
    written: list[Path] = []
    for g in units.groups:
        synthetic = {i.unit: Path(i.file) for i in index.images
                     if i.kind == "maximise" and i.model == g.model and i.layer == g.layer and i.unit is not None
                     and (results.root / i.file).is_file() and i.unit in g.tuning}
        path = unit_figure(g, results, record, synthetic)
        if path is not None:
            written.append(path)
    written += [results.root / i.file for i in index.images if (results.root / i.file).is_file()]
    if synthetic_index_path(results).is_file():
        written.append(synthetic_index_path(results))
    return written


def save_png(image: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


__all__ = ["ExemplarRenderer", "SyntheticImage", "SyntheticIndex", "add_synthetic", "make_all", "mosaic",
           "read_synthetic", "save_png", "unit_figure"]
