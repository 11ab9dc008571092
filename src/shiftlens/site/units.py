"""The site's Units page (units.html + units.js): per model, layer and size, the histogram of position share, every
unit sorted by it, and for the featured units their tuning map, their exemplars (composed in the browser from the
patch PNG and the position, as the main page's hover image) and their synthetic image when one was made.

Data, as scripts calling `SL.loaded` (works from file://):

    data/units/index.js       SL.loaded("units/index", {groups: [...]}): every unit's shares per group
    data/units/gN/uK.js       one unit's tuning map (uint16 base64, as the maps) and exemplars [[patch, y, x, value]]

Tuning maps are written for the units the figures feature (the most position- and identity-coding, `--units`), every
unit `shiftlens units visualise` drew (figures/units/synthetic.json), and the next most position-coding up to DETAIL
per group, so the site stays small at stride 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from shiftlens.analyses.units import FEATURED, open_units
from shiftlens.store import ResultsDir, RunRecord, copy_file

ASSETS = Path(__file__).parent / "assets"

DETAIL = 64
"""Units per group whose tuning map and exemplars the site carries."""


def _script(key: str, payload) -> str:
    return f"SL.loaded({json.dumps(key)},{json.dumps(payload, separators=(',', ':'))});\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _rounded(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 4) for v in a]


def _order(share: np.ndarray) -> list[int]:
    """Unit indices by descending share, silent units (NaN) last."""
    key = np.where(np.isfinite(share), -share, np.inf)
    return np.argsort(key, kind="stable").tolist()


def build(rd: ResultsDir, run: RunRecord, site: Path, patch_order: list[str],
          quantise: Callable[[np.ndarray], tuple[str, float, float]]) -> bool:
    """Write the Units page (units.html, units.js and their data) into `site`; False when the run has no units
    analysis, and then the site has no Units page. `patch_order`: patch ids in the main index's order (exemplars
    name patches by that index); `quantise`: the site's map encoding (site.quantise), so tuning maps decode like every other map."""
    if "units" not in run.config.analyses or not rd.maps_zarr.is_dir():
        return False
    pindex = {pid: j for j, pid in enumerate(patch_order)}
    groups = []
    for model, m in run.models.items():
        for layer in m.layers:
            for size in run.config.sizes:
                try:
                    ds = open_units(rd.maps_zarr, model, layer, size)
                except (FileNotFoundError, KeyError, OSError, ValueError):
                    continue
                gid = f"g{len(groups)}"
                pos, ident = ds["position_share"].values, ds["identity_share"].values
                by_pos, by_id = _order(pos), _order(ident)
                live = [u for u in by_pos if np.isfinite(pos[u])]
                synthetic = _synthetic(rd, site, model, layer, len(pos))
                shown = list(dict.fromkeys(live[:FEATURED] + [u for u in by_id if np.isfinite(ident[u])][:FEATURED]
                                           + [u for u in run.config.units if 0 <= u < len(pos)] + sorted(synthetic)))
                rest = [u for u in live if u not in set(shown)]
                detail = shown + rest[:max(0, DETAIL - len(shown))]
                tuning = ds["tuning"].isel(unit=detail).values
                ev, ep = ds["exemplar_value"].isel(unit=detail).values, ds["exemplar_patch"].isel(unit=detail).values
                ey, ex = ds["exemplar_y"].isel(unit=detail).values, ds["exemplar_x"].isel(unit=detail).values
                for i, u in enumerate(detail):
                    b64, lo, hi = quantise(tuning[i])
                    exemplars = [[pindex.get(str(p)), int(y), int(x), round(float(v), 5)]
                                 for p, y, x, v in zip(ep[i], ey[i], ex[i], ev[i])]
                    _write(site / "data" / "units" / gid / f"u{u}.js", _script(f"units/{gid}/u{u}", {
                        "unit": u, "tuning": {"lo": lo, "hi": hi, "shape": list(tuning[i].shape), "q": b64},
                        "exemplars": exemplars, "synthetic": synthetic.get(u)}))
                groups.append({"gid": gid, "model": model, "layer": layer, "size": size, "n": int(ds.sizes["y"]),
                               "offsets": ds["y"].values.tolist(), "weights": m.weights.label,
                               "untrained": m.weights.untrained, "n_patches": int(ds.attrs.get("n_patches", 0)),
                               "position_share": _rounded(pos), "identity_share": _rounded(ident),
                               "order": by_pos, "detail": detail})
    _write(site / "data" / "units" / "index.js", _script("units/index", {"groups": groups, "featured": FEATURED}))
    for name in ("units.html", "units.js"):
        copy_file(ASSETS / name, site / name)
    _link_from_index(site)
    return True


def _synthetic(rd: ResultsDir, site: Path, model: str, layer: str, n_units: int) -> dict[int, str]:
    """Synthetic images made by `shiftlens units visualise` for this layer, copied into the site: unit -> path."""
    from shiftlens.figures.units import read_synthetic

    out = {}
    for img in read_synthetic(rd).images:
        src = rd.root / img.file
        if (img.kind == "maximise" and img.model == model and img.layer == layer and img.unit is not None
                and 0 <= img.unit < n_units and rd.is_inside(src, rd.figures_dir) and src.is_file()):  # a listed path never leads out
            copy_file(src, site / img.file)
            out[img.unit] = img.file
    return out


def _link_from_index(site: Path) -> None:
    """A link to the Units page in the built index.html's navigation (only in sites whose run has units)."""
    index = site / "index.html"
    text = index.read_text(encoding="utf-8")
    start = text.find('id="site-nav"')
    end = text.find("</nav>", start)
    if start >= 0 and end >= 0 and 'href="units.html"' not in text:
        index.write_text(text[:end] + '<a href="units.html">Units</a>' + text[end:], encoding="utf-8")
