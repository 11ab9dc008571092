"""The Python API; the CLI only wraps it.

    from shiftlens import api, config
    result = api.run(config.load("quick"))

A run is a loop over models (one forward pass per batch gives all taps), patch sizes and patches. Each finished
(model, size, patch) is saved at once as a part; the tables, the zarr store and the figures are rebuilt from the
parts at the end, so a resumed run ends with the same tables as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from shiftlens import figures, maps, paper  # (importing figures registers every figure maker)
from shiftlens.analyses import ANALYSIS_REGISTRY, Analysis, PatchContext, anchors
from shiftlens.analyses.base import PlanContext
from shiftlens.analyses.cross_part import CrossPartCompute, CrossPartState, uncounted
from shiftlens.analyses import intervals
from shiftlens.analyses.folds import check_positions
from shiftlens.analyses.base import required_arrays
from shiftlens.canvases import grid, load_images, parse_background
from shiftlens.config import RunConfig, with_out
from shiftlens.errors import ShiftlensError
from shiftlens.executors import Executor, ModelJob, Progress, WorkItem, closing, make_executor
from shiftlens.models import LayerSpec, ModelSpec, build_with_weights, parse_spec, split_specs
from shiftlens.models.weights import check_fits, load_checkpoint
from shiftlens.patches import Patch, load_patches
from shiftlens.patches.debian import PACKAGES, package_counts
from shiftlens.progress import ProgressArg, Silent, make_progress
from shiftlens.store import (SCHEMA_VERSION, DeviceRecord, ModelRecord, PartMeta, PatchRecord, ResultsDir, RunRecord,
                             Timing, WeightsRecord, atomic_path, digest_bytes, file_key)
from shiftlens.stream import (FeatureExtractor, resolve_batch_size, resolve_compile, resolve_device, resolve_precision,
                              stream, stream_order)


_Silent = Silent  # the name shiftlens.api.arithmetic imports


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
    record: RunRecord


def parse_models(models: list[str]) -> list[ModelSpec]:
    """The `--models` specs, each model and each of its layers once: a repeat would be computed and counted twice."""
    specs = [parse_spec(s) for s in split_specs(models)]
    names = [s.key for s in specs]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ShiftlensError(f"model {twice!r} is given twice: list its layers in one spec (e.g. alexnet:fc6,fc7), or "
                             "give each copy its own weights (alexnet@random alexnet@PATH)")
    for spec in specs:
        again = [layer for i, layer in enumerate(spec.layers) if layer in spec.layers[:i]]
        if again:
            raise ShiftlensError(f"model {spec.key!r}: layer {again[0]!r} is given twice: give each layer once")
    return specs


def plan(cfg: RunConfig, dry_run: bool = False) -> Plan:
    """Validate everything that can be checked before any work: config, models, layers, patches, device.

    A dry run of a COCO preset without COCO paths plans the nominal patch count (categories x per_category) and
    times the warm-up on a bundled patch, so a user learns whether the paper protocol fits before getting COCO.
    """
    cfg.validate()  # its analyses are config.ANALYSES, every one registered (tests/test_analyses.py)
    specs = parse_models(cfg.models)
    nominal, coco_note = 0, None
    if cfg.patches == "coco":
        if not dry_run:
            raise ShiftlensError("this preset needs COCO: pass --patches coco:ANNOTATIONS.json:IMAGES_DIR "
                                 "(e.g. coco:annotations/instances_train2017.json:train2017)")
        nominal = len(cfg.coco_categories) * cfg.per_category
        cfg = dataclasses.replace(cfg, patches="sample", max_patches=1)
        coco_note = (f"no COCO given: planned for the nominal {nominal} patches ({len(cfg.coco_categories)} categories "
                     f"x {cfg.per_category}), timed on a bundled patch; a run needs --patches "
                     "coco:ANNOTATIONS.json:IMAGES_DIR")
    # crop: the large images a window slides over; paste: the object patches
    patches = load_images(cfg.patches, cfg.canvas, cfg.max_patches) if cfg.protocol == "crop" else load_patches(cfg)
    parse_background(cfg.background, cfg.canvas)  # an unknown texture or unreadable image fails here, before any work
    notes = [coco_note] if coco_note else []
    if cfg.patches.partition(":")[0] in PACKAGES and cfg.protocol == "paste":
        notes.append(package_counts(patches))
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    positions = {s: len(grid(cfg.canvas, s, cfg.stride, cfg.protocol, cfg.shift)[0]) for s in cfg.sizes}
    context = PlanContext(cfg, specs, patches, positions)
    for name in cfg.analyses:  # each analysis's own checks and notes (a note two analyses give is said once)
        notes += [n for n in ANALYSIS_REGISTRY[name].check(context) if n not in notes]
    check_positions(cfg.analyses, positions, cfg.stride)
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


def _streaming(cfg: RunConfig) -> list[type[Analysis]]:
    return [ANALYSIS_REGISTRY[a] for a in cfg.analyses if ANALYSIS_REGISTRY[a].streams]


def cross_parts(cfg: RunConfig) -> dict[str, type[CrossPartState]]:
    """The cross-part states the selected analyses declare, by analysis name."""
    return {a: kind for a in cfg.analyses if (kind := ANALYSIS_REGISTRY[a].cross_part) is not None}


def tapped_layers(spec: ModelSpec, cfg: RunConfig) -> list[LayerSpec]:
    """The user's layers, then those the selected analyses add (e.g. the logits layer)."""
    extra = {l for cls in _streaming(cfg) for l in cls.extra_layers(spec.entry.logits_layer)}
    return [spec.entry.layer(l) for l in spec.layers] + [spec.entry.layer(l) for l in sorted(extra) if l not in spec.layers]


def run_patch(
    extractor: FeatureExtractor,
    spec: ModelSpec,
    weights_label: str,
    patch: Patch,
    rgba: np.ndarray,
    cfg: RunConfig,
    on_batch: Callable[[int], None] = lambda n: None,
    states: dict[str, CrossPartState] | None = None,
) -> dict[str, np.ndarray]:
    """Every selected analysis for one model, size and patch; returns the part's arrays. `states`: the cross-part
    states of this model and size (`CrossPartCompute` gives them)."""
    size = rgba.shape[0]
    ys, xs = grid(cfg.canvas, size, cfg.stride, cfg.protocol, cfg.shift)
    n = int(round(np.sqrt(len(ys))))
    anc = anchors(n)
    ctx = PatchContext(model=spec.key, weights=weights_label, layers=list(spec.layers), patch_id=patch.id,
                       category=patch.category, patch_size=size, ys=ys, xs=xs, n=n, anchors=anc, config=cfg,
                       device=extractor.device, logits_layer=spec.entry.logits_layer,
                       net_stride=spec.entry.net_stride, patch=patch, states=dict(states or {}))
    classes = _streaming(cfg)
    analyses = [cls(ctx) for cls in classes]
    keep = any(cls.needs_features for cls in classes)
    features: dict[str, torch.Tensor] | None = None
    renderer = extractor.renderer(rgba, cfg.canvas, cfg.background, cfg.protocol, cfg.shift)
    order = stream_order(len(ys), list(anc.values()))
    n_anchors = len(set(anc.values()))
    for idx, feats in stream(extractor, renderer, ys, xs, order, cfg.batch_size, first=n_anchors):
        if keep:
            if features is None:  # only the analysed layers, not extra taps such as the logits
                features = {k: torch.empty((len(ys), feats[k].shape[1]), dtype=torch.float32, device=feats[k].device)
                            for k in spec.layers}
            for k in spec.layers:
                features[k][idx] = feats[k]
        for a in analyses:
            a.update(idx, feats)
        on_batch(len(idx))
    arrays: dict[str, np.ndarray] = {}
    for a in analyses:
        arrays.update(a.finish(features))
    return arrays


def check_weights(specs: list[ModelSpec], weights: str) -> None:
    """Fail on unavailable or unfitting weights before the results folder is touched: offline downloads, bad
    checkpoint files, and a checkpoint of another architecture (every model against its own weights, before any
    work). `weights` is the run's; a spec's own `@WEIGHTS` wins."""
    checkpoints: dict[str, dict] = {}
    for spec in specs:
        chosen = spec.weights_or(weights)
        if chosen == "random":
            continue
        if chosen != "imagenet":
            if chosen not in checkpoints:
                checkpoints[chosen] = load_checkpoint(Path(chosen))
            check_fits(spec.entry, checkpoints[chosen], chosen)
            continue
        if spec.entry.extra.get("given_module"):
            continue  # a module handed to models.custom(): `imagenet` means its own weights, already in memory
        if spec.entry.imagenet is None:
            raise ShiftlensError(f"model {spec.key} has no ImageNet weights here: use --weights random or --weights PATH")
        spec.entry.imagenet()  # downloads into the cache once, or raises the one-line offline error


def weights_record(prov: dict[str, Any], model: torch.nn.Module) -> WeightsRecord:
    """The typed provenance, with the digest a part's reuse is checked against."""
    if prov.get("sha256"):
        digest = prov["sha256"]
    elif prov["source"] == "random":
        digest = f"random:{prov['seed']}"
    else:  # a given module, or library weights without a file of their own: hash the tensors themselves
        digest = digest_bytes(*(t.detach().cpu().contiguous().numpy().tobytes() for t in model.state_dict().values()))
    return WeightsRecord(digest=digest, **prov)


def build_outputs(results: ResultsDir, record: RunRecord, order: list[tuple[str, int, str]] | None) -> tuple[dict[str, pd.DataFrame], list[Path]]:
    """Tables, zarr store and figures, from the parts alone."""
    cfg = record.config
    parts = results.parts(order)
    tables: dict[str, pd.DataFrame] = {}
    for name in cfg.analyses:
        tables.update(ANALYSIS_REGISTRY[name].tables(parts, cfg))
    outputs = {name: out for name in cfg.analyses  # from the parts and the cross-part states' shards
               if (out := ANALYSIS_REGISTRY[name].outputs(results, parts, cfg)) is not None}
    for out in outputs.values():
        tables.update(out.tables())
    published = paper.comparison(tables)
    if published is not None:
        tables["paper_comparison"] = published
    bounds = intervals.table(tables)  # 95% intervals over objects, from the per-patch tables above
    if bounds is not None:
        tables["intervals"] = bounds
    for name, df in tables.items():
        results.write_table(name, df)
    if parts and (any(ANALYSIS_REGISTRY[a].in_maps for a in cfg.analyses) or outputs):
        def extra(store: Path) -> None:
            for out in outputs.values():
                out.write_zarr(store)

        maps.write(parts, results.maps_zarr, cfg.canvas, cfg.stride, cfg.protocol, cfg.shift,
                   extra=extra if outputs else None)
    written = figures.make_all(parts, results.figures_dir, record) if parts else []
    for name, out in outputs.items():
        maker = figures.OUTPUT_FIGURES.get(name)
        if maker is not None:
            written += maker(out, results, record)
    return tables, written


def _write_patch_pngs(results: ResultsDir, p: Plan) -> dict[tuple[int, str], str]:
    """The exact resized patches (the site composes its images from them) and, unless it is a flat colour, the
    canvas-sized background.png; returns each patch's pixel digest (with the background's pixels when they are an
    image, so an edited image:PATH recomputes its parts)."""
    digests = {}
    background = parse_background(p.config.background, p.config.canvas)
    extra = b"" if background.flat else background.image.tobytes()
    if not background.flat:
        with atomic_path(results.background_png) as tmp:
            Image.fromarray(background.image, "RGB").save(tmp, format="PNG")
    for patch in p.patches:
        for size in p.config.sizes:
            rgba = patch.resized(size, p.config.keep_aspect)
            digests[(size, patch.id)] = digest_bytes(str(rgba.shape).encode(), rgba.tobytes(), extra)
            with atomic_path(results.patch_png(size, patch.id)) as tmp:
                Image.fromarray(rgba, "RGBA").save(tmp, format="PNG")
    return digests


def run(cfg: RunConfig, force: bool = False, progress: ProgressArg = None,
        log: Callable[[str], None] = lambda s: None, executor: Executor | None = None) -> RunResult:
    """`progress`: True draws the command line's bars (images/s, time left) on stderr, `fn(label, done, total)` is
    called after every batch, a `Progress` object is used as it is; None (default): silent. `log` gets the notes
    the command line prints. `executor`: where the parts are computed; None makes the config's (`cfg.executor`)
    and closes it at the end."""
    progress = make_progress(progress)
    cfg = with_out(cfg)  # a config that names no folder gets its own (config.default_out)
    p = plan(cfg)
    check_weights(p.models, cfg.weights)
    results = ResultsDir(cfg.out)
    with results.lock():
        if executor is not None:
            return _run_locked(p, results, force, progress, log, executor)
        with closing(make_executor(cfg, p.device, log)) as made:
            return _run_locked(p, results, force, progress, log, made)


def build_checked(spec: ModelSpec, weights: str, seed: int, digest: str) -> torch.nn.Module:
    """The model with its weights, refused when they differ from the driver's (a worker on another machine that
    finds another file under the same checkpoint path)."""
    model, prov = build_with_weights(spec.entry, weights, seed)
    found = weights_record(prov, model).digest
    if found != digest:
        raise ShiftlensError(f"{spec.key}: the weights {weights} found here have digest {found[:12]}, the driver's "
                             f"{digest[:12]}: give every node the same file")
    return model


def _run_locked(p: Plan, results: ResultsDir, force: bool, progress: Progress,
                log: Callable[[str], None], executor: Executor) -> RunResult:
    cfg = p.config
    previous = results.prepare(cfg, force)
    fingerprint = cfg.fingerprint()
    record = RunRecord(
        schema_version=SCHEMA_VERSION, fingerprint=fingerprint, config=cfg, versions=versions(),
        device=DeviceRecord(type=p.device.type, name=device_name(p.device)), precision=p.precision, models={},
        patches=[PatchRecord(id=x.id, category=x.category, source=x.source, licence=x.licence,
                             provenance=x.provenance, file=file_key(x.id)) for x in p.patches],
        positions=p.positions, timings=previous.timings if previous else {},
        started=previous.started if previous else datetime.now(timezone.utc).isoformat(),
        status="running", notes=list(p.notes),
    )
    if executor.name != "local":  # run.json's device is the driver's: say who computed the parts
        record.notes.append(f"parts computed by {executor.describe()}")
    for note in p.notes:
        log(note)
    results.write_run(record)
    digests = _write_patch_pngs(results, p)
    computed = skipped = 0
    order: list[tuple[str, int, str]] = []
    for spec in p.models:
        model, prov = build_with_weights(spec.entry, spec.weights_or(cfg.weights), cfg.seed)
        weights = weights_record(prov, model)
        record.models[spec.key] = ModelRecord(layers=spec.layers, description=spec.entry.description, weights=weights,
                                              mean=list(spec.entry.normalisation.mean),
                                              std=list(spec.entry.normalisation.std), net_stride=spec.entry.net_stride)
        todo: list[tuple[int, Patch, PartMeta]] = []
        done: list[tuple[int, Patch, PartMeta]] = []
        stale: dict[str, int] = {}
        required = required_arrays(list(cfg.analyses), list(spec.layers))
        for size in cfg.sizes:
            for patch in p.patches:
                meta = PartMeta(model=spec.key, weights=weights.label, untrained=weights.untrained, patch_size=size,
                                patch_id=patch.id, category=patch.category, n=int(round(np.sqrt(p.positions[size]))),
                                fingerprint=fingerprint, patch_digest=digests[(size, patch.id)],
                                weights_digest=weights.digest, net_stride=spec.entry.net_stride)
                order.append((spec.key, size, patch.id))
                reason = results.part_state(meta, required)
                if reason is None:
                    skipped += 1
                    done.append((size, patch, meta))
                    continue
                todo.append((size, patch, meta))
                if reason != "new":
                    stale[reason] = stale.get(reason, 0) + 1
        kinds = cross_parts(cfg)
        if kinds:  # a finished part whose cross-part contribution is in no saved shard is redone
            for size, patch, meta, reason in uncounted(list(kinds.values()), results, spec.key, done, todo):
                todo.append((size, patch, meta))
                skipped -= 1
                stale[reason] = stale.get(reason, 0) + 1
        for reason, count in stale.items():
            log(f"{spec.key}: {count} finished part(s) are recomputed: {reason}")
        results.write_run(record)
        if not todo:
            log(f"{spec.key}: all {len(cfg.sizes) * len(p.patches)} parts already done, skipped")
            continue
        model_images = sum(p.positions[size] for size, _, _ in todo)
        compiled = resolve_compile(cfg.compile, p.device, model_images)
        mcfg = dataclasses.replace(cfg, batch_size=p.batch_for(spec))
        record.models[spec.key].batch_size = mcfg.batch_size
        if compiled:
            log(f"{spec.key}: compiling the forward pass (torch.compile) for {model_images:,} images; the first batch "
                "waits for it (2-20 s per model on an idle 2-core CPU, longer on a cold cache or a busy machine)")
        root = str(results.root.resolve())
        compute = CrossPartCompute(run_patch, root, kinds) if kinds else run_patch
        job = ModelJob(spec=spec, weights_label=weights.label, cfg=mcfg, layers=tapped_layers(spec, cfg),
                       device=p.device, precision=p.precision, compile=compiled,
                       results_root=root, compute=compute, model=model,
                       build=functools.partial(build_checked, spec, spec.weights_or(cfg.weights), cfg.seed,
                                               weights.digest))
        with executor.session(job) as session:
            waits = " · compiling the forward pass" if compiled else ""  # shown until the first batch is done
            for size in cfg.sizes:
                items = [WorkItem(size, patch, meta, p.positions[size]) for s, patch, meta in todo if s == size]
                if not items:
                    continue
                images = p.positions[size] * len(items)
                progress.start(f"{spec.key} {size}px{waits}", images)
                waits = ""
                t0 = time.perf_counter()
                session.run(items, progress)  # every process that computed writes its cross-part shards
                computed += len(items)
                progress.stop()
                computed += _recount(session, kinds, results, spec.key, size, done + todo, progress, log)
                seconds = time.perf_counter() - t0
                record.timings[f"{spec.key}/p{size}"] = Timing(seconds=round(seconds, 3), images=images,
                                                               images_per_s=round(images / seconds, 2))
                results.write_run(record)
            record.models[spec.key].compiled = session.compiled
            if session.compile_error:
                note = f"{spec.key}: torch.compile failed, ran eager instead ({session.compile_error})"
                record.notes.append(note)
                log(note)
        results.write_run(record)
        del model
    tables, written = build_outputs(results, record, order)
    record.status = "complete"
    record.finished = datetime.now(timezone.utc).isoformat()
    record.tables = sorted(tables)
    record.table_sha256 = results.table_digests(record.tables)
    record.figures = [str(w.relative_to(results.root)) for w in written]
    results.write_run(record)
    return RunResult(results.root, tables, written, computed, skipped, record)


RECOUNTS = 3
"""Rounds of recomputing, within one run, the parts whose cross-part contribution was lost (a Ray worker killed
after saving parts it had not yet written into a shard), before the run stops and asks for a rerun."""


def _recount(session: Any, kinds: dict[str, type[CrossPartState]], results: ResultsDir, model: str, size: int,
             parts: list[tuple[int, Patch, PartMeta]], progress: Progress, log: Callable[[str], None]) -> int:
    """Recompute this size's `parts` (every one, finished before or in this run) that are on disk but in no valid
    shard of a cross-part state; returns how many."""
    if not kinds:
        return 0
    mine = list({m.patch_id: (s, patch, m) for s, patch, m in parts if s == size}.values())
    redone = 0
    for _ in range(RECOUNTS):
        redo = uncounted(list(kinds.values()), results, model, mine, [])
        if not redo:
            return redone
        log(f"{model} {size}px: {len(redo)} part(s) are recomputed: {redo[0][3]}")
        items = [WorkItem(size, patch, meta, meta.n * meta.n) for _, patch, meta, _ in redo]
        progress.start(f"{model} {size}px (again)", sum(i.images for i in items))
        session.run(items, progress)
        progress.stop()
        redone += len(items)
    raise ShiftlensError(f"{model} {size}px: the cross-part state of some parts was lost {RECOUNTS} times in a row: "
                         "the finished parts are saved; run the same command again to complete it")


def estimate(p: Plan, warmup_batches: int = 2) -> dict[str, float]:
    """Images per second of each model measured on a short warm-up on this device, and the projected hours."""
    out: dict[str, float] = {}
    patch = p.patches[0]
    for spec in p.models:
        model, prov = build_with_weights(spec.entry, "random", 0)
        with FeatureExtractor(model, [spec.entry.layer(l) for l in spec.layers], spec.entry.normalisation,
                              p.device, p.precision) as extractor:
            size = p.config.sizes[0]
            c = p.config
            renderer = extractor.renderer(patch.resized(size), c.canvas, c.background, c.protocol, c.shift)
            ys, xs = grid(c.canvas, size, c.stride, c.protocol, c.shift)
            bs = min(p.batch_for(spec), len(ys))
            sel = np.arange(bs) % len(ys)
            extractor(renderer.render(ys[sel], xs[sel]))  # warm-up
            t0 = time.perf_counter()
            for _ in range(warmup_batches):
                extractor(renderer.render(ys[sel], xs[sel]))
            out[spec.key] = warmup_batches * bs / (time.perf_counter() - t0)
    return out
