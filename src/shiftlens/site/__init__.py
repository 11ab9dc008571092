"""The results website: `build(results_dir)` writes `results_dir/site/`, a static site that works from file://.

Layout of the site folder:

    index.html, app.js, canvas.js,    hand-written assets (no CDN, no build step); canvas.js draws a canvas under
    style.css, units.*, arithmetic.*  the run's protocol for both the Maps and Units pages
    data/index.js                     window.SL_INDEX: run summary, protocol, shift, background, groups, patches,
                                      tables, figures, colour maps, the top-1 classes' names and colours
    data/maps/gN/all.js               mean map over all patches of group N (model, layer, size, kind)
    data/maps/gN/catK.js              mean map over the patches of category K
    data/maps/gN/pJ.js                the maps of patch J
    data/img/pSIZE/J.js               patch J's PNG at SIZE as a data URL (composited in the browser; for the crop
                                      protocol the resized large image the window slides over)
    data/img/background.js            the run's background.png as a data URL, when the background is an image
    data/tables/NAME.js               a table's CSV text
    patches/pSIZE/ID.png              thumbnails (the exact resized patches of the run)
    tables/NAME.csv, figures/NAME.png copies for download and display

Every data file is a script that calls `SL.loaded(key, payload)`, so it loads from file:// (where fetch() of a
local file is blocked) as well as from any static host; the page adds a <script> tag when a view needs it.

Maps (`encode_map`) are quantised on a grid of step = max(2 * MAX_ERROR, (max - min) / 65535) from the file's
minimum, so a value read back is within MAX_ERROR of the stored float32 (5e-4 for similarity and probability, 5e-3
px for location error, unless a map's range needs a coarser step to fit 16 bits: then half that step); top-1 class
maps are stored exactly (lo 0, step 1; per patch only). The quantised values go through a prediction from their
neighbours (LOCO-I's median edge detector) and deflate, then base64; app.js inflates them with the browser's
DecompressionStream. A patch's own maps with more than SITE_CELLS positions per side (the paper's stride 1) keep
every second (or k-th) position, and the corners and centre; each position shows its nearest kept one's value, and
the hover says so. The means keep every position. docs/performance.md has the sizes and the values this changes,
measured by benchmarks/site_size.py.

The patch picker narrows its list by category and by a search over ids and categories (URL: filter_cat, search).

The page keeps its whole view in the URL's query string (the hash stays free for section links), so a copied link
reopens the same view; see `KINDS` for the map kinds and `COLORMAPS` for the colour maps.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shiftlens.analyses.base import ANCHORS
from shiftlens.canvases import FLAT, axis_positions, parse_background
from shiftlens.errors import ShiftlensError
from shiftlens.store import PatchRecord, ResultsDir, RunRecord, atomic_dir, copy_file, file_key
from shiftlens.site import units as units_page

ASSETS = Path(__file__).parent / "assets"

@dataclass(frozen=True)
class MapKind:
    """A per-position map the site can show: where it lives in a part and how it is coloured."""

    analysis: str
    array: str
    label: str
    anchored: bool = False
    scale: str = "unit"
    """`unit`: coloured from the floor up to 1 (similarity, probability); `data`: up to the map's maximum
    (location error in px); `classes`: one colour per class index, with a legend (no floor, no colour map)."""


# The kinds, in the order of the map selector; the key is the kind's name in the URL and in data/index.js.
KINDS: dict[str, MapKind] = {
    "similarity": MapKind("similarity", "maps", "cosine similarity to the anchor", anchored=True),
    "class": MapKind("class", "prob", "class probability"),
    "location": MapKind("location", "err_shuffled", "location error (px), shuffled folds", scale="data"),
    "location_paper": MapKind("location", "err_paper", "location error (px), paper's folds", scale="data"),
    "top1": MapKind("consistency", "top1", "top-1 class", scale="classes"),
}
COLORMAPS = ("hot", "YlOrRd", "viridis", "magma", "gray", "cividis", "coolwarm")
QMAX = 65535
MAX_ERROR = {"unit": 5e-4, "data": 5e-3}
"""The largest difference between a stored map value and the float32 it stands for, by the kind's scale: unit
(cosine similarity, probability) and data (location error in px); see encode_map and docs/performance.md."""
SITE_CELLS = 76
"""A patch's own maps with more positions per side than this are thinned on the site to every k-th position,
k = ceil(n / SITE_CELLS) (the paper's stride 1: 150 and 100 per side, k = 2), so the paper preset's site is a
fraction of its size; the means over patches, the tables and maps.zarr keep every position. `build(max_cells=0)`
(`shiftlens report --every-position`) keeps them all. docs/performance.md measures the values this changes."""


@dataclass
class _Group:
    gid: str
    kind: str
    model: str
    layer: str
    size: int
    n: int
    thin: int = 1
    """A patch's own maps keep every `thin`-th position per side (thin_index); the means keep every position."""
    patches: list[int] = field(default_factory=list)
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # selection key -> float64 sum
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # selection key ("all", "cat:NAME", "pJ") -> data file


def patch_origin(p: PatchRecord) -> str:
    """Where a patch comes from, in one line for the site: the package and its version (a Debian source), the
    licence, and the file."""
    prov = p.provenance
    package = " ".join(str(prov[k]) for k in ("package", "version") if prov.get(k))
    return ", ".join(part for part in (package or p.source, f"licence {p.licence}", str(prov.get("file", ""))) if part)


def quantise(arr: np.ndarray) -> tuple[str, float, float]:
    """float array -> (base64 of little-endian uint16, lo, hi); v = lo + q * (hi - lo) / 65535."""
    a = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi > lo:
        q = np.rint((a - lo) / (hi - lo) * QMAX)
    else:
        q = np.zeros_like(a)
    q = np.clip(q, 0, QMAX).astype("<u2")
    return base64.b64encode(q.tobytes()).decode("ascii"), lo, hi


def dequantise(b64: str, lo: float, hi: float, shape: tuple[int, ...]) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(b64), dtype="<u2").astype(np.float64)
    return (lo + q * (hi - lo) / QMAX).reshape(shape)


def _med(q: np.ndarray) -> np.ndarray:
    """The median edge detector of LOCO-I (JPEG-LS) on each (n, n) slice: left, above, or left + above - above-left,
    whichever the neighbours' order picks; the first row predicts from the left, the first column from above.
    app.js's `unpredict` inverts it cell by cell."""
    a = np.zeros_like(q)
    b = np.zeros_like(q)
    c = np.zeros_like(q)
    a[..., :, 1:] = q[..., :, :-1]
    b[..., 1:, :] = q[..., :-1, :]
    c[..., 1:, 1:] = q[..., :-1, :-1]
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    p = np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))
    p[..., 0, 1:] = q[..., 0, :-1]
    p[..., 1:, 0] = q[..., :-1, 0]
    p[..., 0, 0] = 0
    return p


def thin_every(n: int, max_cells: int) -> int:
    """The thinning factor of an n x n map: 1 (every position) up to `max_cells` per side, else ceil(n / max_cells);
    `max_cells` 0 keeps every position."""
    return 1 if max_cells <= 0 or n <= max_cells else math.ceil(n / max_cells)


def thin_index(n: int, every: int) -> np.ndarray:
    """The positions kept along one axis: every `every`-th from the first, plus the centre and the last, so the
    five anchors' cells (corners and centre) always keep their own values. app.js's `thinIndex` is the same rule."""
    return np.array(sorted(set(range(0, n, max(every, 1))) | {(n - 1) // 2, n - 1}), dtype=np.int64)


def nearest_kept(n: int, keep: np.ndarray) -> np.ndarray:
    """For each of the n positions, the index into `keep` of the nearest kept position (the lower one on a tie):
    how a thinned map is read back at full size (app.js's `expandThin`)."""
    i = np.arange(n)
    j = np.clip(np.searchsorted(keep, i), 1, len(keep) - 1) if len(keep) > 1 else np.zeros(n, np.int64)
    if len(keep) == 1:
        return j
    lower = j - 1
    return np.where(np.abs(i - keep[lower]) <= np.abs(keep[j] - i), lower, j)


def encode_map(arr: np.ndarray, max_error: float | None, every: int = 1) -> dict[str, Any]:
    """A map as the site stores it: {lo, step, shape, z[, thin]}; value = lo + q * step.

    `every` > 1 keeps only the positions `thin_index` picks along both axes (the payload's `thin` is [n, every]);
    `decode_map` and the browser give each of the n x n positions its nearest kept one's value.

    q is quantised on a grid of `step` = max(2 * max_error, (max - min) / 65535), so the value read back is within
    step / 2 of the float32; `max_error` None stores integer maps (top-1 classes) exactly (lo 0, step 1). The MED
    prediction residuals of q, modulo 2**16 and zigzagged, go as a low-byte plane then a high-byte plane through
    zlib (deflate), then base64: smooth maps leave small residuals, so both planes compress."""
    a = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0)
    thin = None
    if every > 1 and a.ndim >= 2 and a.shape[-1] == a.shape[-2]:
        n = a.shape[-1]
        keep = thin_index(n, every)
        if len(keep) < n:
            a = a[..., keep, :][..., keep]
            thin = [n, every]
    shape = list(a.shape)
    a = a.reshape((-1,) + a.shape[-2:]) if a.ndim >= 2 else a.reshape(1, 1, -1)
    if max_error is None:
        lo, step = 0.0, 1.0
        q = np.clip(np.rint(a), 0, QMAX).astype(np.int64)
    else:
        lo, hi = float(a.min()), float(a.max())
        step = max(2.0 * max_error, (hi - lo) / QMAX)
        q = np.clip(np.rint((a - lo) / step), 0, QMAX).astype(np.int64)
    r = ((q - _med(q)) & 0xFFFF).astype(np.uint16).view(np.int16).astype(np.int32)
    z = ((r << 1) ^ (r >> 31)).astype(np.uint16).ravel()
    planes = np.concatenate([(z & 0xFF).astype(np.uint8), (z >> 8).astype(np.uint8)])
    out = {"lo": lo, "step": step, "shape": shape, "z": base64.b64encode(zlib.compress(planes.tobytes(), 9)).decode("ascii")}
    if thin is not None:
        out["thin"] = thin
    return out


def decode_map(payload: dict[str, Any]) -> np.ndarray:
    """encode_map's inverse (what app.js does in the browser), for tests and the size benchmark."""
    shape = payload["shape"]
    planes = np.frombuffer(zlib.decompress(base64.b64decode(payload["z"])), np.uint8)
    half = planes.size // 2
    z = planes[:half].astype(np.int64) | (planes[half:].astype(np.int64) << 8)
    r = (z >> 1) ^ -(z & 1)
    n0, n1 = (shape[-2], shape[-1]) if len(shape) >= 2 else (1, shape[-1] if shape else 1)
    r = r.reshape(-1, n0, n1)
    q = np.zeros_like(r)
    for i in range(n0):  # row by row: each row's prediction needs the row above, decoded
        for j in range(n1):
            if i == 0 and j == 0:
                p = np.zeros(r.shape[0], np.int64)
            elif i == 0:
                p = q[:, 0, j - 1]
            elif j == 0:
                p = q[:, i - 1, 0]
            else:
                a, b, c = q[:, i, j - 1], q[:, i - 1, j], q[:, i - 1, j - 1]
                hi, lo = np.maximum(a, b), np.minimum(a, b)
                p = np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))
            q[:, i, j] = (p + r[:, i, j]) & 0xFFFF
    values = (payload["lo"] + q * payload["step"]).reshape(shape)
    if "thin" in payload:
        n, every = payload["thin"]
        near = nearest_kept(n, thin_index(n, every))
        values = values[..., near, :][..., near]
    return values


def _script(key: str, payload: Any) -> str:
    return f"SL.loaded({json.dumps(key)},{json.dumps(payload, separators=(',', ':'))});\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _as_maps(arr: np.ndarray, n: int, anchored: bool) -> np.ndarray | None:
    """(A, n, n) float32 for an anchored kind, (1, n, n) otherwise; None when the shape does not fit."""
    a = np.asarray(arr, dtype=np.float32)
    if anchored:
        if a.ndim == 3 and a.shape[1:] == (n, n):
            return a
        if a.ndim == 2 and a.shape[1] == n * n:
            return a.reshape(a.shape[0], n, n)
        return None
    if a.size == n * n:
        return a.reshape(1, n, n)
    return None


def _colormaps() -> dict[str, str]:
    import matplotlib

    out = {}
    for name in COLORMAPS:
        cmap = matplotlib.colormaps[name]
        rgb = (np.asarray(cmap(np.linspace(0, 1, 256)))[:, :3] * 255).round().astype(np.uint8)
        out[name] = base64.b64encode(rgb.tobytes()).decode("ascii")
    return out


def _summary(run: RunRecord) -> dict[str, Any]:
    models = [{"model": key, "layers": m.layers, "description": m.description, "weights": m.weights.label,
               "untrained": m.weights.untrained, "source": m.weights.source, "sha256": m.weights.sha256}
              for key, m in run.models.items()]
    return {
        "models": models,
        "untrained": run.untrained,
        "device": run.device.model_dump(),
        "precision": run.precision,
        "timings": [{"unit": k, **v.model_dump()} for k, v in run.timings.items()],
        "versions": run.versions,
        "status": run.status,
        "started": run.started,
        "finished": run.finished,
        "fingerprint": run.fingerprint,
        "config": {k: getattr(run.config, k) for k in ("protocol", "shift", "patches", "sizes", "stride", "canvas",
                                                        "background", "keep_aspect", "weights", "analyses", "seed",
                                                        "max_patches")},
    }


@dataclass(frozen=True)
class CanvasView:
    """What the hover needs to rebuild the image at a position: protocol, shift and background of the run."""

    protocol: str  # paste: the patch on the background; crop: a canvas-sized window of the resized large image
    shift: str  # move: the content moves on a fixed background; circular: the canvas rolls with wrap-around
    label: str  # the background as the run gives it ("white", "#808080", "texture:brick")
    colour: tuple[int, int, int] | None  # a flat background's colour; None when it is an image
    image: Path | None  # the run's canvas-sized background.png, when the background is not a flat colour


def canvas_view(run: RunRecord, rd: ResultsDir) -> CanvasView:
    """The run's protocol, shift and background (runs recorded before these settings pasted, moved, on white)."""
    cfg = run.config
    background = cfg.background
    spec = background if isinstance(background, str) else None
    # image:PATH and texture:NAME are not read again here: the run left the canvas it used as background.png
    colour = None if spec is not None and ":" in spec else parse_background(background, cfg.canvas).rgb
    label = spec if spec is not None else ("white" if colour == FLAT["white"] else "rgb(%d, %d, %d)" % tuple(colour))
    image = rd.background_png
    return CanvasView(protocol=cfg.protocol, shift=cfg.shift, label=label, colour=colour,
                      image=image if colour is None and image.is_file() else None)


def paper_rank(stem: str) -> tuple:
    """Where a table or figure comes on the page: in the paper's order of analyses (config.ANALYSES: similarity,
    separability, location, ...), within one analysis its summary before its per-patch table and sizes in numeric
    order (p75 before p125); after them the intervals over objects of all of them, the comparison with the
    published tables, then anything else."""
    import re

    from shiftlens.config import ANALYSES

    after = ("intervals", "paper_comparison")
    rank = next((i for i, a in enumerate(ANALYSES) if stem == a or stem.startswith(a + "_")),
                len(ANALYSES) + (after.index(stem) if stem in after else len(after)))
    return (rank, *[(int(t), "") if t.isdigit() else (-1, t) for t in re.split(r"(\d+)", stem) if t])


def _copy_assets(site: Path) -> None:
    for f in ASSETS.iterdir():
        # the Units page comes with the units data (site/units.py); the Arithmetic page is its own site (arithmetic.py)
        if f.is_file() and not f.name.startswith(("arithmetic.", "units.")):
            copy_file(f, site / f.name)


def _is_arithmetic(rd: ResultsDir) -> bool:
    """Whether the folder was written by `shiftlens arithmetic` (its site is the Arithmetic page)."""
    try:
        return json.loads(rd.run_json.read_text()).get("kind") == "arithmetic"
    except (OSError, ValueError, AttributeError):
        return False  # read_run below gives the one-line reason


def build(results_dir: Path | str, max_cells: int = SITE_CELLS) -> Path:
    """Write `results_dir/site/` from the run's parts, patches, tables and figures (for a `shiftlens arithmetic`
    folder: the Arithmetic page, site/arithmetic.py); returns the site folder. A patch's own maps are thinned to
    at most about `max_cells` positions per side (`SITE_CELLS`; 0 keeps every position)."""
    if max_cells < 0:
        raise ShiftlensError(f"max_cells {max_cells}: give 0 (every position) or a positive number of cells per side")
    rd = ResultsDir(results_dir)
    if _is_arithmetic(rd):
        from shiftlens.site.arithmetic import build as build_arithmetic

        return build_arithmetic(results_dir)
    run = rd.read_run()
    if run is None:
        raise ShiftlensError(f"{rd.root} holds no run.json: give a results folder made by `shiftlens run`")
    with rd.lock():
        rd.refuse_links()  # nothing from outside the folder is published through a link
        with atomic_dir(rd.site_dir, prefix=".site.") as tmp:
            _build_into(rd, run, tmp, max_cells)
    return rd.site_dir


def _build_into(rd: ResultsDir, run: RunRecord, site: Path, max_cells: int = SITE_CELLS) -> None:
    cfg = run.config
    canvas, stride = cfg.canvas, cfg.stride
    data = site / "data"
    _copy_assets(site)

    # Patches in the run's order; parts may add patches run.json does not list.
    patches: list[dict[str, Any]] = []
    pindex: dict[str, int] = {}

    def patch_no(pid: str, category: str, origin: str = "") -> int:
        if pid not in pindex:
            pindex[pid] = len(patches)
            patches.append({"id": pid, "category": category, "file": file_key(pid), "sizes": [], "origin": origin})
        return pindex[pid]

    for p in run.patches:
        patch_no(p.id, p.category, patch_origin(p))

    groups: dict[tuple[str, str, str, int], _Group] = {}
    part_files = sorted((rd.root / "parts").glob("*/p*/*.npz"))
    by_unit: dict[tuple[str, str], list[Path]] = {}
    for path in part_files:
        by_unit.setdefault((path.parent.parent.name, path.parent.name), []).append(path)
    model_order = list(run.models)

    def unit_key(k: tuple[str, str]) -> tuple:
        names = [file_key(m) for m in model_order]
        return (names.index(k[0]) if k[0] in names else len(names), k[0], int(k[1][1:]) if k[1][1:].isdigit() else 0)

    sizes: set[int] = set()
    class_counts: dict[int, int] = {}
    for unit in sorted(by_unit, key=unit_key):
        unit_groups: list[_Group] = []
        for path in by_unit[unit]:
            part = rd.load_part(path)
            rd.check_part(part, run, path)
            j = patch_no(part.patch_id, part.category)
            size, n = int(part.patch_size), int(part.n)
            sizes.add(size)
            if size not in patches[j]["sizes"]:
                patches[j]["sizes"].append(size)
            for kind, mk in KINDS.items():
                for layer in part.layers(mk.analysis):
                    arr = part.get(mk.analysis, layer, mk.array)
                    if arr is None:
                        continue
                    maps = _as_maps(arr, n, mk.anchored)
                    if maps is None:
                        continue
                    key = (kind, part.model, layer, size)
                    g = groups.get(key)
                    if g is None:
                        g = groups[key] = _Group(f"g{len(groups)}", kind, part.model, layer, size, n,
                                                 thin=thin_every(n, max_cells))
                        unit_groups.append(g)
                    g.patches.append(j)
                    fname = f"data/maps/{g.gid}/p{j}.js"
                    g.files[f"p{j}"] = fname
                    if mk.scale == "classes":  # class indices stored exactly (lo 0, step 1); a mean means nothing
                        labels = np.asarray(maps, np.int64)
                        ids, counts = np.unique(labels, return_counts=True)
                        for c, k in zip(ids.tolist(), counts.tolist()):
                            class_counts[c] = class_counts.get(c, 0) + k
                        _write(site / fname, _script(f"{g.gid}/p{j}", encode_map(labels, None, g.thin)))
                        continue
                    _write(site / fname, _script(f"{g.gid}/p{j}", encode_map(maps, MAX_ERROR[mk.scale], g.thin)))
                    for sel in ("all", f"cat:{part.category}"):
                        if sel in g.sums:
                            g.sums[sel] += maps
                        else:
                            g.sums[sel] = maps.astype(np.float64)
                        g.counts[sel] = g.counts.get(sel, 0) + 1
        for g in unit_groups:  # means of this (model, size) are complete
            if g.sums:
                _write_means(g, site)

    # Patch images: thumbnails and data URLs for compositing.
    for j, p in enumerate(patches):
        for size in sorted(p["sizes"]):
            src = rd.patch_png(size, p["id"])
            if not src.is_file():
                continue
            copy_file(src, site / "patches" / f"p{size}" / f"{p['file']}.png")
            url = "data:image/png;base64," + base64.b64encode(src.read_bytes()).decode("ascii")
            _write(data / "img" / f"p{size}" / f"{j}.js", _script(f"img/{size}/{j}", url))
        p["sizes"].sort()

    view = canvas_view(run, rd)
    if view.image is not None:
        url = "data:image/png;base64," + base64.b64encode(view.image.read_bytes()).decode("ascii")
        _write(data / "img" / "background.js", _script("img/background", url))
        copy_file(view.image, site / "background.png")

    tables = []
    for i, name in enumerate(sorted(run.tables, key=paper_rank)):  # the run's own tables, each checked against its digest
        text = rd.checked_table(run, name)
        _write(site / "tables" / f"{name}.csv", text)
        js = f"data/tables/t{i}.js"
        _write(site / js, _script(f"table/{name}", text))
        tables.append({"name": name, "file": f"tables/{name}.csv", "js": js,
                       "rows": max(0, text.count("\n") - 1), "bytes": len(text.encode())})
    figures = []
    if rd.figures_dir.is_dir():
        for png in sorted(rd.figures_dir.glob("*.png"), key=lambda p: paper_rank(p.stem)):
            (site / "figures").mkdir(exist_ok=True)
            copy_file(png, site / "figures" / png.name)
            figures.append({"name": png.stem, "file": f"figures/{png.name}"})

    categories = list(dict.fromkeys(p["category"] for p in patches))
    index = {
        "format": 3,
        "title": f"shiftlens results: {rd.root.resolve().name}",
        "summary": _summary(run),
        "canvas": canvas,
        "stride": stride,
        "protocol": view.protocol,
        "shift": view.shift,
        "background": {"label": view.label, "colour": list(view.colour) if view.colour else None,
                       "image": "data/img/background.js" if view.image is not None else None},
        "anchors": list(ANCHORS),
        "sizes": sorted(sizes),
        "offsets": {str(s): _offsets(view, canvas, s, stride) for s in sorted(sizes)},
        "models": [m for m in model_order if any(g.model == m for g in groups.values())]
        + sorted({g.model for g in groups.values()} - set(model_order)),
        "kinds": {k: {"label": v.label, "anchored": v.anchored, "scale": v.scale} for k, v in KINDS.items()
                  if any(g.kind == k for g in groups.values())},
        "classes": _class_legend(class_counts),
        "categories": categories,
        "patches": patches,
        "groups": [
            {"gid": g.gid, "kind": g.kind, "model": g.model, "layer": g.layer, "size": g.size, "n": g.n,
             "thin": g.thin, "patches": g.patches, "files": g.files,
             "counts": {k: v for k, v in g.counts.items()}}
            for g in groups.values()
        ],
        "tables": tables,
        "figures": figures,
        "colormaps": _colormaps(),
        "qmax": QMAX,
    }
    _write(data / "index.js", "window.SL_INDEX = " + json.dumps(index, separators=(",", ":")) + ";\n")
    units_page.build(rd, run, site, [p["id"] for p in patches], quantise)  # units.html's data, if the run has units


def _offsets(view: CanvasView, canvas: int, size: int, stride: int) -> list[int]:
    """Offsets along one axis: where the patch's corner lands (paste), how far the canvas rolls (circular) or where
    the window's corner sits on the resized image (crop)."""
    return axis_positions(canvas, size, stride, view.protocol, view.shift).tolist()


def _class_legend(counts: dict[int, int]) -> dict[str, dict[str, Any]]:
    """Class index -> name and colour, for the top-1 class maps: the most frequent classes get tab20's colours, the
    rest golden-angle hues, so one class has one colour in every panel."""
    if not counts:
        return {}
    import colorsys

    import matplotlib

    from shiftlens.models.imagenet_classes import class_names

    names = class_names()
    tab = (np.asarray(matplotlib.colormaps["tab20"].colors)[:, :3] * 255).round().astype(int).tolist()
    order = sorted(counts, key=lambda c: (-counts[c], c))
    out = {}
    for rank, c in enumerate(order):
        if rank < len(tab):
            rgb = tab[rank]
        else:
            rgb = [round(255 * v) for v in colorsys.hsv_to_rgb((rank * 0.618034) % 1.0, 0.65, 0.85)]
        out[str(c)] = {"name": names[c] if 0 <= c < len(names) else f"class {c}", "colour": rgb, "count": counts[c]}
    return out


def _write_means(g: _Group, site: Path) -> None:
    cats = [k for k in g.sums if k.startswith("cat:")]
    keys = ["all"] + (cats if len(cats) > 1 else [])
    for i, sel in enumerate(keys):
        mean = (g.sums[sel] / g.counts[sel]).astype(np.float32)
        stem = "all" if sel == "all" else f"cat{i}"
        fname = f"data/maps/{g.gid}/{stem}.js"
        _write(site / fname, _script(f"{g.gid}/{stem}", encode_map(mean, MAX_ERROR[KINDS[g.kind].scale])))
        g.files[sel] = fname
    g.sums.clear()


def make_server(site_dir: Path | str, port: int = 8000, host: str = "127.0.0.1"):
    """An HTTP server for `site_dir` on `host` (127.0.0.1 by default: only this machine can reach it).

    Port 0 picks a free port; `server.server_address` says which. Call `serve_forever()` to serve.
    """
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site_dir = Path(site_dir)
    if not (site_dir / "index.html").is_file():
        raise ShiftlensError(f"{site_dir} holds no site: build it with `shiftlens report RESULTS_DIR`")

    if not 0 <= port <= 65535:
        raise ShiftlensError(f"port {port} is invalid: use 0-65535 (0 picks a free one)")

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # quiet: one line per request is noise here
            pass

        def send_head(self):
            try:
                return super().send_head()
            except ValueError:  # a path no file can have (a NUL byte, e.g. /%00): a bad request, not a crash
                self.send_error(400, "Bad request path")
                return None

    handler = functools.partial(Handler, directory=str(site_dir))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise ShiftlensError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): choose another --port") from None
