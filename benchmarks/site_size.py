"""How large the results site gets and how fast its first view opens, at the stamps preset's scale and the paper's.

The site is built by `shiftlens.site.build` from a synthetic results folder: run.json from the preset's config, the
patch images (the stamps preset's Tux Paint stamps where Debian's package is installed, cycled to reach the count;
else drawn shapes), and one part per (model, size, patch) holding every map the site shows, with the shapes a run
writes: similarity (5 anchors x n x n per layer), location error (shuffled and paper's folds, per layer), top-1 class
(the logits layer) and class probability (n x n). Map values are smooth random fields; how well real maps compress
is measured separately on a real results folder (`--real`), since noise sets the compressed size.

    python -m benchmarks.site_size                          # stamps scale built whole, paper scale from a subset
    python -m benchmarks.site_size --real results/stride1   # + the encoding's ratio and error on a run's own maps

The stamps scale (200 objects x 3 networks x 2 layers x 2 sizes, stride 8) is built whole. The paper scale (200
objects, its 6 networks and taps, stride 1) is built for `--paper-patches` objects, one per category, and the files
that grow with the number of objects (per-patch maps, patch images, the index) are scaled up to 200; the means do not
grow. The former encoding (uint16 base64 of every map, format 2) is computed exactly from each map file's shape.
Writes benchmarks/site_size.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shiftlens.canvases import offsets
from shiftlens.config import RunConfig, load
from shiftlens.errors import ShiftlensError
from shiftlens.store import (SCHEMA_VERSION, DeviceRecord, ModelRecord, PartMeta, PatchRecord, ResultsDir, RunRecord,
                             WeightsRecord, atomic_write_text, file_key)

DEFAULT_OUT = Path(__file__).resolve().parent / "site_size.json"
CHROMIUM = "/usr/bin/chromium"
ANCHORS = 5
NET_STRIDE = 32


@dataclass(frozen=True)
class Scale:
    preset: str
    patches: int
    categories: int
    built: int
    """Objects actually built; the rest is extrapolated (equal to `patches`: built whole)."""
    stride: int | None = None
    """None: the preset's."""
    stamps: bool = True
    """Patch images from the stamps preset where its package is installed; False: drawn shapes (fast, for tests)."""


# -- the synthetic results folder ---------------------------------------------------------------------------------

def _smooth(rng: np.random.Generator, n: int, stride: int, sigma_px: float) -> np.ndarray:
    """A random field on the n x n grid, smooth over `sigma_px` pixels of shift, unit variance."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal((n, n)), max(sigma_px / stride, 0.5), mode="wrap")
    return f / (f.std() or 1.0)


def synthetic_maps(rng: np.random.Generator, n: int, stride: int, noise: float) -> dict[str, np.ndarray]:
    """One layer's maps: similarity to the 5 anchors (1 at the anchor, falling with distance to a floor, a ripple
    with the network's stride, a smooth field, and `noise` per cell), location errors (px) and a class probability."""
    pos = np.arange(n) * stride
    yy, xx = np.meshgrid(pos, pos, indexing="ij")
    c = (n - 1) // 2
    cells = [(0, 0), (0, n - 1), (c, c), (n - 1, 0), (n - 1, n - 1)]
    floor = rng.uniform(0.3, 0.7)
    ripple = np.cos(2 * np.pi * yy / NET_STRIDE) * np.cos(2 * np.pi * xx / NET_STRIDE)
    sims = []
    for r, col in cells:
        d2 = (yy - pos[r]) ** 2 + (xx - pos[col]) ** 2
        s = floor + (1 - floor) * np.exp(-d2 / (2 * 40.0 ** 2)) + 0.03 * ripple + 0.03 * _smooth(rng, n, stride, 12)
        s = s + noise * rng.standard_normal((n, n))
        s[r, col] = 1.0
        sims.append(np.clip(s, -1, 1))
    err = [np.abs(4 + 3 * _smooth(rng, n, stride, 20) + 40 * noise * rng.standard_normal((n, n))) for _ in range(2)]
    prob = 1 / (1 + np.exp(-(1.5 * _smooth(rng, n, stride, 30) + 10 * noise * rng.standard_normal((n, n)))))
    return {"maps": np.stack(sims).astype(np.float32), "err_shuffled": err[0].astype(np.float32),
            "err_paper": err[1].astype(np.float32), "prob": prob.astype(np.float32)}


def synthetic_top1(rng: np.random.Generator, n: int, stride: int) -> np.ndarray:
    """Top-1 classes as a network gives them: a few regions of one class each."""
    k = int(rng.integers(2, 6))
    classes = rng.choice(1000, size=k, replace=False)
    field = np.stack([_smooth(rng, n, stride, 25) for _ in range(k)])
    return classes[field.argmax(0)].astype(np.int16)


def _patch_images(cfg: RunConfig, count: int, categories: int, rng: np.random.Generator,
                  use_stamps: bool) -> list[tuple[str, str, dict]]:
    """(id, category, {size: RGBA}) for `count` objects in `categories` categories: the preset's stamps when they load,
    cycled (ids suffixed) to reach `count`; else drawn ellipses."""
    from shiftlens.patches import load_patches

    stamps = []
    if use_stamps:
        try:
            stamps = load_patches(load("stamps"))
        except ShiftlensError:
            pass
    cats = sorted({p.category for p in stamps})[:categories] if stamps else [f"category{k}" for k in range(categories)]
    by_cat = {c: [p for p in stamps if p.category == c] for c in cats}
    out = []
    for i in range(count):
        cat = cats[i % len(cats)]
        pool = by_cat.get(cat) or []
        if pool:
            p = pool[(i // len(cats)) % len(pool)]
            copy = (i // len(cats)) // len(pool)
            pid = p.id + (f"-copy{copy}" if copy else "")
            images = {s: p.resized(s, cfg.keep_aspect) for s in cfg.sizes}
        else:
            pid = f"{cat}/object{i:03d}"
            images = {}
            for s in cfg.sizes:
                yy, xx = np.mgrid[:s, :s]
                a = np.zeros((s, s, 4), np.uint8)
                a[..., :3] = rng.integers(0, 255, 3)
                a[..., 3] = np.where(((yy - s / 2) / (s / 2)) ** 2 + ((xx - s / 2) / (s / 3)) ** 2 < 1, 255, 0)
                images[s] = a
        out.append((pid, cat, images))
    return out


def make_results(root: Path, scale: Scale, noise: float, seed: int = 0) -> ResultsDir:
    """Write a synthetic results folder at `scale` (its first `scale.built` objects)."""
    rng = np.random.default_rng(seed)
    cfg = load(scale.preset)
    cfg.out = str(root)
    cfg.weights = "random"
    if scale.stride is not None:
        cfg.stride = scale.stride
    rd = ResultsDir(root)
    models = {}
    for spec in cfg.models:
        name, _, layers = spec.partition(":")
        models[name] = ModelRecord(
            layers=layers.split(",") if layers else ["fc"], description=f"{name} (synthetic maps)",
            weights=WeightsRecord(source="random", label="random (untrained)", untrained=True, digest="random:0", seed=0),
            mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], net_stride=NET_STRIDE)
    grids = {s: len(offsets(cfg.canvas, s, cfg.stride)) for s in cfg.sizes}
    objects = _patch_images(cfg, scale.built, scale.categories, rng, scale.stamps)
    fingerprint = cfg.fingerprint()
    now = datetime.now(timezone.utc).isoformat()
    record = RunRecord(schema_version=SCHEMA_VERSION, fingerprint=fingerprint, config=cfg, versions={},
                       device=DeviceRecord(type="cpu", name="synthetic"), precision="fp32", models=models,
                       patches=[PatchRecord(id=pid, category=cat, source="synthetic", licence="see the stamps package",
                                            provenance={}, file=file_key(pid)) for pid, cat, _ in objects],
                       positions={s: n * n for s, n in grids.items()}, timings={}, started=now, finished=now,
                       status="complete", notes=["synthetic maps for benchmarks/site_size.py"])
    rd.root.mkdir(parents=True, exist_ok=True)
    rd.write_run(record)
    for pid, cat, images in objects:
        for s, rgba in images.items():
            path = rd.patch_png(s, pid)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba, "RGBA").save(path, format="PNG")
        for name, m in models.items():
            for s, n in grids.items():
                arrays: dict[str, np.ndarray] = {}
                for layer in m.layers:
                    maps = synthetic_maps(rng, n, cfg.stride, noise)
                    arrays[f"similarity/{layer}/maps"] = maps["maps"]
                    arrays[f"location/{layer}/err_shuffled"] = maps["err_shuffled"]
                    arrays[f"location/{layer}/err_paper"] = maps["err_paper"]
                arrays[f"consistency/{m.layers[-1]}/top1"] = synthetic_top1(rng, n, cfg.stride)
                arrays["class/class/prob"] = maps["prob"]
                meta = PartMeta(model=name, weights=m.weights.label, untrained=True, patch_size=s, patch_id=pid,
                                category=cat, n=n, fingerprint=fingerprint, patch_digest="synthetic",
                                weights_digest="random:0", net_stride=NET_STRIDE)
                rd.save_part(meta, arrays)
    return rd


# -- measuring a site ---------------------------------------------------------------------------------------------

def _b64_len(nbytes: int) -> int:
    return 4 * math.ceil(nbytes / 3)


def _full_shape(payload: dict[str, Any]) -> list[int]:
    """The map's shape before thinning (the former encoding kept every position)."""
    if "thin" not in payload:
        return list(payload["shape"])
    n = payload["thin"][0]
    return list(payload["shape"][:-2]) + [n, n]


def _legacy_len(key: str, payload: dict[str, Any]) -> int:
    """The bytes the former encoding (format 2: uint16 base64 of every value, lo and hi) took for this map file."""
    shape = _full_shape(payload)
    values = math.prod(shape)
    hi = payload["lo"] + payload["step"] * 65535 if payload["step"] != 1.0 else 65535
    head = f"SL.loaded({json.dumps(key)},{json.dumps({'lo': payload['lo'], 'hi': hi, 'shape': shape, 'q': ''}, separators=(',', ':'))});\n"
    return len(head) + _b64_len(2 * values)


def _payload(path: Path) -> tuple[str, dict[str, Any]]:
    text = path.read_text()
    key, _, rest = text[len("SL.loaded("):].partition(",")
    return json.loads(key), json.loads(rest.rstrip().rstrip(";").rstrip(")"))


def site_sizes(site: Path) -> dict[str, Any]:
    """Bytes of the site by section, now and in the former encoding, file count and disk usage."""
    sections: dict[str, int] = defaultdict(int)
    legacy: dict[str, int] = defaultdict(int)
    files = disk = values = 0
    for f in site.rglob("*"):
        if not f.is_file():
            continue
        st = f.stat()
        files += 1
        disk += st.st_blocks * 512
        rel = f.relative_to(site).as_posix()
        if rel.startswith("data/maps/"):
            section = "maps_per_patch" if f.stem.startswith("p") else "maps_means"
            key, payload = _payload(f)
            legacy[section] += _legacy_len(key, payload)
            values += math.prod(payload["shape"])
        elif rel.startswith(("data/img/", "patches/")):
            section = "patch_images"
        elif rel == "data/index.js":
            section = "index"
        else:
            section = "other"
        sections[section] += st.st_size
    for s in sections:
        legacy.setdefault(s, sections[s])
    return {"bytes": sum(sections.values()), "legacy_bytes": sum(legacy.values()), "files": files,
            "disk_bytes": disk, "map_values": values, "sections": dict(sections), "legacy_sections": dict(legacy)}


def map_errors(rd: ResultsDir, site: Path, sample: int = 40) -> dict[str, float]:
    """Largest |stored - float32| over a sample of per-patch map files, by the kind's scale, at the positions the
    site keeps (a thinned map's other positions show a neighbour's value: `thinning_error` measures that)."""
    from shiftlens.site import KINDS, decode_map, thin_index

    index = json.loads((site / "data" / "index.js").read_text()[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    parts = {}
    out: dict[str, float] = defaultdict(float)
    checked = 0
    for g in index["groups"]:
        mk = KINDS[g["kind"]]
        for j in g["patches"][:2]:
            pid = index["patches"][j]["id"]
            key = (g["model"], g["size"], pid)
            if key not in parts:
                parts[key] = rd.load_part(rd.part_path(*key))
            want = np.asarray(parts[key].get(mk.analysis, g["layer"], mk.array), np.float64)
            _, payload = _payload(site / g["files"][f"p{j}"])
            n = int(g["n"])
            got = decode_map(payload).reshape(want.shape[:-2] + (n, n) if want.ndim >= 2 else (n, n))
            want = want.reshape(got.shape)
            keep = thin_index(n, payload["thin"][1]) if "thin" in payload else np.arange(n)
            diff = np.abs(got - want)[..., keep, :][..., keep]
            out[mk.scale] = max(out[mk.scale], float(diff.max()))
            checked += 1
        if checked >= sample:
            break
    return dict(out)


def first_view(site: Path, repeats: int = 3) -> dict[str, Any] | None:
    """Seconds from navigating to index.html (file://) to the page's ready flag, in fresh pages of headless Chromium;
    None when Playwright or Chromium is missing."""
    try:
        from playwright import sync_api
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    times, errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("pageerror", lambda e: errors.append(str(e)))
                t0 = time.perf_counter()
                page.goto((site / "index.html").resolve().as_uri())
                page.wait_for_function("document.body.dataset.ready !== undefined && document.body.dataset.ready !== ''",
                                       timeout=60_000)
                times.append(time.perf_counter() - t0)
                page.close()
        finally:
            browser.close()
    return {"seconds": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3), "errors": errors}


def thinning_error(full: np.ndarray, every: int) -> np.ndarray:
    """|value - the value the site shows| at the positions a map thinned by `every` does not keep (float64, flat):
    what a patch's own map on a thinned site loses, apart from quantisation."""
    from shiftlens.site import nearest_kept, thin_index

    n = full.shape[-1]
    keep = thin_index(n, every)
    near = keep[nearest_kept(n, keep)]
    shown = full[..., near, :][..., near]
    dropped = ~(np.isin(np.arange(n), keep)[:, None] & np.isin(np.arange(n), keep)[None, :])
    return np.abs(np.asarray(full, np.float64) - shown)[..., dropped].ravel()


def real_maps(results: Path, every: int = 2) -> dict[str, Any]:
    """The site's encoding against the former one on a run's own maps: bytes per value and largest error by scale;
    and the same maps thinned by `every` (what a paper-scale site stores per patch): bytes per position of the full
    grid and what the dropped positions lose, by kind (median, 99th percentile, largest |value - shown|)."""
    from shiftlens.site import KINDS, MAX_ERROR, _as_maps, _script, decode_map, encode_map, quantise

    rd = ResultsDir(results)
    new = old = values = thinned = 0
    err: dict[str, float] = defaultdict(float)
    lost: dict[str, list[np.ndarray]] = defaultdict(list)
    grids = set()
    for part in rd.iter_parts():
        for kind, mk in KINDS.items():
            for layer in part.layers(mk.analysis):
                arr = part.get(mk.analysis, layer, mk.array)
                maps = None if arr is None else _as_maps(arr, part.n, mk.anchored)
                if maps is None:
                    continue
                grids.add(part.n)
                exact = mk.scale == "classes"
                payload = encode_map(np.asarray(maps, np.int64) if exact else maps, None if exact else MAX_ERROR[mk.scale])
                new += len(_script("g0/p0", payload))
                thinned += len(_script("g0/p0", encode_map(np.asarray(maps, np.int64) if exact else maps,
                                                           None if exact else MAX_ERROR[mk.scale], every)))
                if exact:  # a class map loses a position when the shown class differs: the share that does
                    lost[kind].append((thinning_error(np.asarray(maps, np.float64), every) > 0).astype(np.float64))
                else:
                    lost[kind].append(thinning_error(maps, every))
                b64, lo, hi = quantise(maps)
                old += len(_script("g0/p0", {"lo": lo, "hi": hi, "shape": list(maps.shape), "q": b64}))
                values += maps.size
                err[mk.scale] = max(err[mk.scale], float(np.abs(decode_map(payload) - maps).max()))
    if not values:
        raise ShiftlensError(f"{results} holds no parts with maps the site shows: give a folder made by `shiftlens run`")
    thin = {"every": every, "bytes": thinned, "bytes_per_position": round(thinned / values, 3),
            "shrink": round(old / thinned, 2), "lost": {}}
    for label, chunks in lost.items():
        v = np.concatenate(chunks) if chunks else np.zeros(0)
        if not v.size:
            continue
        if label == "top1":
            thin["lost"][label] = {"share_of_dropped_positions_showing_another_class": round(float(v.mean()), 4)}
        else:
            thin["lost"][label] = {"median": float(np.median(v)), "p99": float(np.quantile(v, 0.99)),
                                   "max": float(v.max())}
    return {"folder": str(results), "grids": sorted(grids), "values": values, "bytes": new, "legacy_bytes": old,
            "bytes_per_value": round(new / values, 3), "legacy_bytes_per_value": round(old / values, 3),
            "shrink": round(old / new, 2), "max_error": dict(err), "thinned": thin}


def measure_scale(scale: Scale, workdir: Path, noise: float, log) -> dict[str, Any]:
    from shiftlens.site import build

    log(f"{scale.preset}: writing {scale.built} of {scale.patches} objects' synthetic parts")
    t0 = time.perf_counter()
    rd = make_results(workdir / scale.preset, scale, noise)
    parts_s = time.perf_counter() - t0
    log(f"{scale.preset}: building the site")
    t0 = time.perf_counter()
    site = build(rd.root)
    build_s = time.perf_counter() - t0
    sizes = site_sizes(site)
    factor = scale.patches / scale.built
    grow = ("maps_per_patch", "patch_images", "index")

    def total(sections: dict[str, int]) -> int:
        return int(sum(v * (factor if k in grow else 1) for k, v in sections.items()))

    out: dict[str, Any] = {
        "preset": scale.preset, "objects": scale.patches, "categories": scale.categories, "built_objects": scale.built,
        "extrapolated": scale.built != scale.patches, "grids": sorted({int(math.isqrt(v)) for v in rd.read_run().positions.values()}),
        "models": {k: m.layers for k, m in rd.read_run().models.items()},
        "built": sizes, "write_parts_s": round(parts_s, 1), "build_site_s": round(build_s, 1),
        "bytes": total(sizes["sections"]), "legacy_bytes": total(sizes["legacy_sections"]),
        "files": int(sizes["files"] + (factor - 1) * sum(1 for f in (site / "data" / "maps").rglob("p*.js"))
                     + (factor - 1) * sum(1 for f in site.rglob("*") if f.is_file() and f.relative_to(site).as_posix().startswith(("data/img/p", "patches/")))),
    }
    out["shrink"] = round(out["legacy_bytes"] / out["bytes"], 2)
    out["max_error"] = map_errors(rd, site)
    log(f"{scale.preset}: timing the first view")
    out["first_view"] = first_view(site)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.site_size", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="stamps,paper", help="comma-separated: stamps, paper")
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--categories", type=int, default=10)
    ap.add_argument("--paper-patches", type=int, default=10, help="objects built at the paper's scale (default 10)")
    ap.add_argument("--noise", type=float, default=0.002, help="per-cell noise of the synthetic similarity maps")
    ap.add_argument("--real", type=Path, action="append", default=[], help="a results folder whose maps to encode")
    ap.add_argument("--workdir", type=Path, help="keep the synthetic folders and sites here (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    from shiftlens.site import MAX_ERROR

    info: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "noise": a.noise,
                            "max_error_setting": MAX_ERROR, "scales": {}, "real": []}
    with tempfile.TemporaryDirectory(prefix="shiftlens-site-size-") as tmp:
        work = a.workdir or Path(tmp)
        for name in [s.strip() for s in a.scales.split(",") if s.strip()]:
            built = a.objects if name == "stamps" else min(a.paper_patches, a.objects)
            info["scales"][name] = measure_scale(Scale(name, a.objects, a.categories, built), work, a.noise, log)
    for folder in a.real:
        log(f"real maps: {folder}")
        info["real"].append(real_maps(folder))
    atomic_write_text(a.out, json.dumps(info, indent=2) + "\n")
    for name, s in info["scales"].items():
        fv = s["first_view"]
        print(f"{name}: {s['objects']} objects, grids {s['grids']}, {'estimated from ' + str(s['built_objects']) if s['extrapolated'] else 'built whole'}: "
              f"{s['bytes'] / 1e6:.1f} MB now, {s['legacy_bytes'] / 1e6:.1f} MB in the former encoding "
              f"(x{s['shrink']}), {s['files']} files; largest error {s['max_error']}; "
              f"first view {fv['median_s'] if fv else 'not measured'} s (median)")
    for r in info["real"]:
        print(f"real maps {r['folder']} (grids {r['grids']}): {r['bytes_per_value']} B/value now, "
              f"{r['legacy_bytes_per_value']} before (x{r['shrink']}); largest error {r['max_error']}")
        t = r["thinned"]
        print(f"  thinned to every {t['every']}: {t['bytes_per_position']} B/position (x{t['shrink']} against the "
              f"former encoding); lost at dropped positions: {t['lost']}")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
