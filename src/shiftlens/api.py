"""The Python API; the CLI only wraps it.

    from shiftlens import api, config
    result = api.run(config.load("quick"))

A run is a loop over models (one forward pass per batch gives all taps), patch sizes and patches. Each finished
(model, size, patch) is saved at once as a part; the tables, the zarr store and the figures are rebuilt from the
parts at the end, so a resumed run ends with the same tables as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd
import torch

from shiftlens import figures, maps
from shiftlens.analyses import ANALYSIS_REGISTRY, PatchContext, anchors
from shiftlens.analyses.folds import N_FOLDS
from shiftlens.canvases import grid
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.models import ModelSpec, build_with_weights, parse_spec, split_specs
from shiftlens.models.class_layer import CLASS_LAYER, ClassProbMap, class_prob_table
from shiftlens.models.imagenet_classes import class_indices
from shiftlens.models.registry import resolve_device
from shiftlens.models.weights import load_checkpoint
from shiftlens.patches import Patch, load_patches
from shiftlens.store import ResultsDir
from shiftlens.stream import (FeatureExtractor, resolve_batch_size, resolve_compile, resolve_precision, stream,
                              stream_order)


class Progress(Protocol):
    def start(self, label: str, total_images: int) -> None: ...
    def advance(self, images: int) -> None: ...
    def stop(self) -> None: ...


class _Silent:
    def start(self, label: str, total_images: int) -> None: ...
    def advance(self, images: int) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Plan:
    config: RunConfig
    models: list[ModelSpec]
    patches: list[Patch]
    device: torch.device
    precision: str
    positions: dict[int, int]  # patch size -> positions per patch
    n_patches: int = 0  # the patches a run would use (nominal COCO count in a dry run without COCO at hand)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.n_patches = self.n_patches or len(self.patches)

    def batch_for(self, spec: ModelSpec) -> int:
        """Images per forward pass for this model: the config's, or for 0 (auto) the one measured fastest here."""
        return resolve_batch_size(self.config.batch_size, self.device, spec.entry.auto_batch)

    @property
    def images_per_model(self) -> int:
        return sum(self.positions.values()) * self.n_patches

    @property
    def total_images(self) -> int:
        return self.images_per_model * len(self.models)


@dataclass
class RunResult:
    out: Path
    tables: dict[str, pd.DataFrame]
    figures: list[Path]
    computed: int
    skipped: int
    info: dict[str, Any] = field(default_factory=dict)


def plan(cfg: RunConfig, dry_run: bool = False) -> Plan:
    """Validate everything that can be checked before any work: config, models, layers, patches, device.

    A dry run of a COCO preset without COCO paths plans the nominal patch count (categories x per_category) and
    times the warm-up on a bundled patch, so a user learns whether the paper protocol fits before getting COCO.
    """
    cfg.validate()
    missing = [a for a in cfg.analyses if a not in ANALYSIS_REGISTRY]
    if missing:
        raise ShiftlensError(f"analysis {missing[0]!r} is not available in this version: choose from {', '.join(ANALYSIS_REGISTRY)}")
    specs = [parse_spec(s) for s in split_specs(cfg.models)]
    names = [s.key for s in specs]
    if len(set(names)) != len(names):
        raise ShiftlensError(f"model {names[0]!r} is given twice: list its layers in one spec, e.g. alexnet:fc6,fc7")
    nominal = 0
    if cfg.patches == "coco":
        if not dry_run:
            raise ShiftlensError("this preset needs COCO: pass --patches coco:ANNOTATIONS.json:IMAGES_DIR "
                                 "(e.g. coco:annotations/instances_train2017.json:train2017)")
        nominal = len(cfg.coco_categories) * cfg.per_category
        cfg = dataclasses.replace(cfg, patches="sample", max_patches=1)
    patches = load_patches(cfg)
    notes = []
    if any(CLASS_LAYER in s.layers for s in specs):
        unmapped = [p.id for p in patches if not class_indices(p.category, p.provenance, f"patch {p.id}")]
        if unmapped:
            notes.append(f"class layer: {len(unmapped)} patch(es) have no ImageNet class mapping, so they get no class "
                         f"map ({', '.join(unmapped[:5])}{', ...' if len(unmapped) > 5 else ''}); add "
                         "\"imagenet_classes\" to their manifest.json entries to include them")
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    positions = {s: len(grid(cfg.canvas, s, cfg.stride)[0]) for s in cfg.sizes}
    cross_validated = [a for a in cfg.analyses if a in ("separability", "location")]
    if cross_validated:
        size, fewest = min(positions.items(), key=lambda kv: kv[1])
        if fewest < 2 * N_FOLDS:
            raise ShiftlensError(
                f"{cross_validated[0]} needs at least {2 * N_FOLDS} positions per patch for {N_FOLDS}-fold "
                f"cross-validation, but {size}px patches at stride {cfg.stride} give {fewest}: use a smaller --stride "
                f"or leave out --analyses {','.join(cross_validated)}"
            )
    return Plan(cfg, specs, patches, device, precision, positions, nominal, notes)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("shiftlens", "torch", "torchvision", "numpy", "scikit-learn", "zarr", "xarray", "timm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _analyses_for(cfg: RunConfig):
    return [ANALYSIS_REGISTRY[a] for a in cfg.analyses if ANALYSIS_REGISTRY[a].streams]


def run_patch(
    extractor: FeatureExtractor,
    spec: ModelSpec,
    weights_label: str,
    patch: Patch,
    rgba: np.ndarray,
    cfg: RunConfig,
    on_batch: Callable[[int], None] = lambda n: None,
) -> dict[str, np.ndarray]:
    """Every selected analysis for one model, size and patch; returns the part's arrays."""
    size = rgba.shape[0]
    ys, xs = grid(cfg.canvas, size, cfg.stride)
    n = int(round(np.sqrt(len(ys))))
    anc = anchors(n)
    # `class` is a per-position probability, stored as a map, not a feature for the analyses.
    indices = class_indices(patch.category, patch.provenance, f"patch {patch.id}") if CLASS_LAYER in spec.layers else None
    class_map = ClassProbMap(n, indices, extractor.device) if indices else None  # unmapped: noted by plan()
    feature_layers = [l for l in spec.layers if l != CLASS_LAYER]
    ctx = PatchContext(model=spec.key, weights=weights_label, layers=feature_layers, patch_id=patch.id,
                       category=patch.category, patch_size=size, ys=ys, xs=xs, n=n, anchors=anc, config=cfg,
                       device=extractor.device, logits_layer=spec.entry.logits_layer, extra={"patch": patch})
    classes = _analyses_for(cfg)
    analyses = [cls(ctx) for cls in classes]
    keep = any(cls.needs_features for cls in classes)
    features: dict[str, torch.Tensor] | None = None
    renderer = extractor.renderer(rgba, cfg.canvas, cfg.background)
    order = stream_order(len(ys), list(anc.values()))
    n_anchors = len(set(anc.values()))
    for idx, feats in stream(extractor, renderer, ys, xs, order, cfg.batch_size, first=n_anchors):
        if keep:
            if features is None:  # only the analysed layers: not `class` nor extra taps such as logits
                features = {k: torch.empty((len(ys), feats[k].shape[1]), dtype=torch.float32, device=feats[k].device)
                            for k in feature_layers}
            for k in feature_layers:
                features[k][idx] = feats[k]
        for a in analyses:
            a.update(idx, feats)
        if class_map is not None:
            class_map.update(idx, feats[CLASS_LAYER])
        on_batch(len(idx))
    arrays: dict[str, np.ndarray] = class_map.finish() if class_map is not None else {}
    for a in analyses:
        arrays.update(a.finish(features))
    return arrays


def check_weights(specs: list[ModelSpec], weights: str) -> None:
    """Fail on unavailable weights before the results folder is touched (offline downloads, bad checkpoint files)."""
    if weights == "random":
        return
    if weights != "imagenet":
        load_checkpoint(Path(weights))
        return
    for spec in specs:
        if spec.entry.extra.get("given_module"):
            continue  # a module handed to models.custom(): `imagenet` means its own weights, already in memory
        if spec.entry.imagenet is None:
            raise ShiftlensError(f"model {spec.key} has no ImageNet weights here: use --weights random or --weights PATH")
        spec.entry.imagenet()  # downloads into the cache once, or raises the one-line offline error


def build_outputs(results: ResultsDir, cfg: RunConfig, order: list[tuple[str, int, str]] | None, run_info: dict) -> tuple[dict[str, pd.DataFrame], list[Path]]:
    """Tables, zarr store and figures, from the parts alone."""
    parts = results.parts(order)
    tables: dict[str, pd.DataFrame] = {}
    for name in cfg.analyses:
        tables.update(ANALYSIS_REGISTRY[name].tables(parts, cfg))
    class_prob = class_prob_table(parts)
    if class_prob is not None:
        tables["class_prob"] = class_prob
    for name, df in tables.items():
        results.write_table(name, df)
    if "similarity" in cfg.analyses and parts:
        maps.write(parts, results.maps_zarr, cfg.canvas, cfg.stride)
    written = figures.make_all(parts, results.figures_dir, run_info) if parts else []
    return tables, written


def run(cfg: RunConfig, force: bool = False, progress: Progress | None = None,
        log: Callable[[str], None] = lambda s: None) -> RunResult:
    progress = progress or _Silent()
    p = plan(cfg)
    check_weights(p.models, cfg.weights)
    results = ResultsDir(cfg.out)
    previous = results.prepare(cfg, force)
    info: dict[str, Any] = {
        "shiftlens_run": 1,
        "fingerprint": cfg.fingerprint(),
        "config": cfg.to_dict(),
        "versions": versions(),
        "device": {"type": p.device.type, "name": device_name(p.device)},
        "precision": p.precision,
        "models": {},
        "patches": [
            {"id": x.id, "category": x.category, "source": x.source, "licence": x.licence, "provenance": x.provenance}
            for x in p.patches
        ],
        "positions": {str(k): v for k, v in p.positions.items()},
        "timings": (previous or {}).get("timings", {}),
        "started": (previous or {}).get("started", datetime.now(timezone.utc).isoformat()),
        "status": "running",
        "notes": p.notes,
    }
    for note in p.notes:
        log(note)
    results.write_run(info)
    for patch in p.patches:
        for size in cfg.sizes:
            png = results.patch_png(size, patch.id)
            if not png.is_file():
                png.parent.mkdir(parents=True, exist_ok=True)
                tmp = png.with_name(f".{png.name}.tmp.png")
                patch.to_png(tmp, size, cfg.keep_aspect)
                tmp.replace(png)
    computed = skipped = 0
    order: list[tuple[str, int, str]] = []
    for spec in p.models:
        todo = [(size, patch) for size in cfg.sizes for patch in p.patches
                if not results.has_part(spec.key, size, patch.id)]
        order += [(spec.key, size, patch.id) for size in cfg.sizes for patch in p.patches]
        skipped += len(cfg.sizes) * len(p.patches) - len(todo)
        model, prov = build_with_weights(spec.entry, cfg.weights, cfg.seed)
        info["models"][spec.key] = {"layers": spec.layers, "description": spec.entry.description, "weights": prov,
                                    "normalisation": {"mean": spec.entry.normalisation.mean, "std": spec.entry.normalisation.std}}
        results.write_run(info)
        if not todo:
            log(f"{spec.key}: all {skipped} parts already done, skipped")
            continue
        layer_specs = [spec.entry.layer(l) for l in spec.layers]
        extra = {l for cls in _analyses_for(cfg) for l in cls.extra_layers(spec.entry.logits_layer)}
        layer_specs += [spec.entry.layer(l) for l in sorted(extra) if l not in spec.layers]
        model_images = sum(p.positions[size] for size, _ in todo)
        compiled = resolve_compile(cfg.compile, p.device, model_images)
        mcfg = dataclasses.replace(cfg, batch_size=p.batch_for(spec))
        info["models"][spec.key]["batch_size"] = mcfg.batch_size
        extractor = FeatureExtractor(model, layer_specs, spec.entry.normalisation, p.device, p.precision,
                                     compile=compiled, pad_to=mcfg.batch_size)
        if compiled:
            log(f"{spec.key}: compiling the forward pass (torch.compile) for {model_images:,} images")
        for size in cfg.sizes:
            size_todo = [patch for s, patch in todo if s == size]
            if not size_todo:
                continue
            images = p.positions[size] * len(size_todo)
            progress.start(f"{spec.key} {size}px", images)
            t0 = time.perf_counter()
            for patch in size_todo:
                arrays = run_patch(extractor, spec, prov["label"], patch, patch.resized(size, cfg.keep_aspect), mcfg,
                                   progress.advance)
                meta = {"model": spec.key, "weights": prov["label"], "untrained": prov["untrained"], "patch_size": size,
                        "patch_id": patch.id, "category": patch.category, "n": int(round(np.sqrt(p.positions[size]))),
                        "fingerprint": cfg.fingerprint()}
                results.save_part(spec.key, size, patch.id, arrays, meta)
                computed += 1
            seconds = time.perf_counter() - t0
            progress.stop()
            info["timings"][f"{spec.key}/p{size}"] = {"seconds": round(seconds, 3), "images": images,
                                                     "images_per_s": round(images / seconds, 2)}
            results.write_run(info)
        info["models"][spec.key]["compiled"] = extractor.compiled
        if extractor.compile_error:
            note = f"{spec.key}: torch.compile failed, ran eager instead ({extractor.compile_error})"
            info["notes"].append(note)
            log(note)
        results.write_run(info)
        extractor.taps.close()
        if extractor.compiled:
            torch._dynamo.reset()  # drop the compiled graph and its frozen copy of the weights
        del extractor, model
    tables, written = build_outputs(results, cfg, order, info)
    info["status"] = "complete"
    info["finished"] = datetime.now(timezone.utc).isoformat()
    info["tables"] = sorted(tables)
    info["figures"] = [str(w.relative_to(results.root)) for w in written]
    results.write_run(info)
    return RunResult(results.root, tables, written, computed, skipped, info)


def estimate(p: Plan, warmup_batches: int = 2) -> dict[str, float]:
    """Images per second of each model measured on a short warm-up on this device, and the projected hours."""
    out: dict[str, float] = {}
    patch = p.patches[0]
    for spec in p.models:
        model, prov = build_with_weights(spec.entry, "random", 0)
        extractor = FeatureExtractor(model, [spec.entry.layer(l) for l in spec.layers], spec.entry.normalisation,
                                     p.device, p.precision)
        size = p.config.sizes[0]
        renderer = extractor.renderer(patch.resized(size), p.config.canvas, p.config.background)
        ys, xs = grid(p.config.canvas, size, p.config.stride)
        bs = min(p.batch_for(spec), len(ys))
        sel = np.arange(bs) % len(ys)
        extractor(renderer.render(ys[sel], xs[sel]))  # warm-up
        t0 = time.perf_counter()
        for _ in range(warmup_batches):
            extractor(renderer.render(ys[sel], xs[sel]))
        ips = warmup_batches * bs / (time.perf_counter() - t0)
        extractor.taps.close()
        out[spec.key] = ips
    return out
