"""The arithmetic API that `shiftlens arithmetic` wraps: config, plan (every check before any work), run.

    from shiftlens.api.arithmetic import ArithmeticConfig, run
    result = run(ArithmeticConfig(problems=6, out="results/arith"))
    result.tables["arithmetic"]
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from shiftlens.api import Progress, _Silent, check_weights, device_name, parse_models, versions, weights_record
from shiftlens.analyses.arithmetic import inversions as inv_mod
from shiftlens.analyses.arithmetic import tables
from shiftlens.analyses.arithmetic.benchmark import measure, scenes_needed
from shiftlens.analyses.arithmetic.config import (DEMO_EXPRESSIONS, DEMO_PATCH, DEMO_SCENES,  # noqa: F401 (the API's names)
                                        ArithmeticConfig)
from shiftlens.analyses.arithmetic.expressions import Expression, parse_expression
from shiftlens.figures.arithmetic import make_figures
from shiftlens.analyses.arithmetic.problems import Problem, expression_problems, random_problems
from shiftlens.config import DEVICES, PRECISIONS, RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.inversion.inverters import Inverter, check_inverter, check_name, make_inverter
from shiftlens.inversion.optimise import InversionSettings
from shiftlens.models import ModelSpec, build_with_weights
from shiftlens.patches import Patch, load_patches
from shiftlens.scenes import Scene, SceneObject, SceneRenderer, parse_scene, scene_from_toml, validate_scene
from shiftlens.analyses.arithmetic.record import ArithmeticRecord
from shiftlens.store import (SCHEMA_VERSION, DeviceRecord, ModelRecord, PatchRecord, ResultsDir, Timing,
                             atomic_write_text, digest_bytes, file_key)
from shiftlens.stream import FeatureExtractor, resolve_batch_size, resolve_device, resolve_precision

_KEYS = {f.name for f in dataclasses.fields(ArithmeticConfig)}


def load_toml(path: Path, base: ArithmeticConfig | None = None) -> ArithmeticConfig:
    """A TOML file: `[[scenes.NAME.objects]]` (patch, size, y, x) or `scenes.NAME = "compact"`, `[expressions]`
    NAME = "A - B", and any other config key. Its scenes and expressions replace the demo's."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ShiftlensError(f"arithmetic file {path} does not exist: give a TOML file with [scenes] and [expressions]") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise ShiftlensError(f"arithmetic file {path} is not valid TOML ({exc}): fix it") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ShiftlensError(f"arithmetic file {path}: unknown key {unknown[0]!r}: use {', '.join(sorted(_KEYS - {'out'}))}, out")
    cfg = base or ArithmeticConfig()
    size = data.get("size", cfg.size)
    if not isinstance(size, int) or isinstance(size, bool):
        raise ShiftlensError(f"arithmetic file {path}: size should be an integer, got {size!r}")
    scenes = data.pop("scenes", {})
    exprs = data.pop("expressions", {})
    if not isinstance(scenes, dict) or not isinstance(exprs, dict) or not all(isinstance(v, str) for v in exprs.values()):
        raise ShiftlensError(f"arithmetic file {path}: give [scenes.NAME] tables and an [expressions] table of strings")
    compact = {name: str(scene_from_toml(name, value, size)) for name, value in scenes.items()}
    for key, value in data.items():
        _check_type(key, value, "" if key == "out" else getattr(cfg, key), f"arithmetic file {path}")
    cfg = dataclasses.replace(cfg, **data)
    if scenes or exprs:
        cfg = dataclasses.replace(cfg, scenes=compact, expressions=dict(exprs))
    return cfg


def _check_type(key: str, value: Any, default: Any, source: str) -> None:
    """A TOML value must have its default's type (lists: of the same element type), else one line."""
    kind = type(default)
    ok = type(value) is kind
    if ok and isinstance(default, list) and default:
        ok = all(type(v) is type(default[0]) for v in value)
    if not ok:
        want = f"a list of {type(default[0]).__name__}" if isinstance(default, list) and default else kind.__name__
        raise ShiftlensError(f"{source}: {key} should be {want}, got {value!r}")


@dataclass
class ArithmeticPlan:
    config: ArithmeticConfig
    models: list[ModelSpec]
    patches: list[Patch]
    scenes: dict[str, Scene]
    expressions: list[Expression]
    problems: list[Problem]
    device: Any
    precision: str
    notes: list[str]
    """Lines worth saying before the work: expressions whose expected scene is an operand or stacks copies, and
    where `--inverter auto` fell back to optimise."""


def demo_scenes(patch: str, size: int, canvas: int) -> dict[str, Scene]:
    """The demo's layout (after the paper's Fig. 6) with copies of `patch`: `DEMO_SCENES` itself for the bundled
    flower at 75 px on the 224 px canvas, else the same margin share with the far copies flush with the other
    margin."""
    lo = round(canvas * 20 / 224)
    hi = canvas - size - lo
    obj = lambda y, x: SceneObject(patch, size, y, x)  # noqa: E731
    return {"three": Scene((obj(lo, lo), obj(lo, hi), obj(hi, lo))), "top_two": Scene((obj(lo, lo), obj(lo, hi))),
            "lower_right": Scene((obj(hi, hi),))}


def plan(cfg: ArithmeticConfig) -> ArithmeticPlan:
    """Every check that can be made before any work: models, patches, scenes, expressions, problems."""
    if cfg.stride < 1:
        raise ShiftlensError(f"stride {cfg.stride} is invalid: use --stride 1 or more")
    if cfg.canvas < 1:
        raise ShiftlensError(f"canvas {cfg.canvas} is invalid: give the canvas side in px, 1 or more (224)")
    if cfg.size < 1 or cfg.size > cfg.canvas:
        raise ShiftlensError(f"--size {cfg.size} is invalid: give 1 to {cfg.canvas} (at most the {cfg.canvas}px "
                             "canvas)")
    if cfg.problems < 0:
        raise ShiftlensError(f"--problems {cfg.problems} is invalid: use 0 or more")
    if cfg.seed < 0:  # numpy's generators take no negative seed
        raise ShiftlensError(f"--seed {cfg.seed} is invalid: use 0 or more")
    if cfg.batch_size < 0:
        raise ShiftlensError(f"--batch-size {cfg.batch_size} is invalid: use 1 or more (0 = auto)")
    if cfg.device not in DEVICES:
        raise ShiftlensError(f"unknown device {cfg.device!r}: use one of {', '.join(DEVICES)}")
    if cfg.precision not in PRECISIONS:
        raise ShiftlensError(f"unknown precision {cfg.precision!r}: use one of {', '.join(PRECISIONS)}")
    if len(cfg.background) != 3 or not all(0 <= c <= 255 for c in cfg.background):
        raise ShiftlensError(f"background {cfg.background} is invalid: give three values 0-255, e.g. [255, 255, 255]")
    check_name(cfg.inverter)
    if cfg.inversion_steps < 1:
        raise ShiftlensError(f"--inversion-steps {cfg.inversion_steps} is invalid: use 1 or more")
    specs = parse_models(cfg.models)
    patches = load_patches(RunConfig(patches=cfg.patches))
    ids = [p.id for p in patches]
    notes = []
    if cfg.scenes == DEMO_SCENES:
        patch = DEMO_PATCH if DEMO_PATCH in ids else ids[0]
        scenes = demo_scenes(patch, cfg.size, cfg.canvas)
        if patch != DEMO_PATCH:
            notes.append(f"the demo's scenes are copies of {patch}, the first patch of {cfg.patches} (it has no "
                         f"{DEMO_PATCH}); give --scene and --expr for scenes of your own")
    else:
        scenes = {name: parse_scene(text, cfg.size) for name, text in cfg.scenes.items()}
    for name, scene in scenes.items():
        validate_scene(name, scene, ids, cfg.canvas)
    exprs = [parse_expression(text, name, scenes) for name, text in cfg.expressions.items()]
    notes += [note for e in exprs for note in e.check(scenes)]
    problems = [p for e in exprs for p in expression_problems(e, scenes)]
    problems += random_problems(ids, cfg.problems, cfg.seed, cfg.size, cfg.canvas, cfg.stride)
    if not problems:
        raise ShiftlensError("nothing to compute: give --expr (with --scene definitions) or --problems N")
    if exprs and cfg.inverter != "none":
        for spec in specs:
            for layer in spec.layers:
                note = check_inverter(cfg.inverter, spec.entry.name, layer, spec.weights_or(cfg.weights), cfg.seed)
                notes += [note] if note else []
    device = resolve_device(cfg.device)
    return ArithmeticPlan(cfg, specs, patches, scenes, exprs, problems, device, resolve_precision(cfg.precision, device),
                          notes)


class ModelPart(BaseModel):
    """One model's finished rows: what a rerun of the same command reuses while the config, the patches' pixels and
    the weights are unchanged (the same rule as `shiftlens run`'s parts)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")
    model: str
    fingerprint: str
    weights_digest: str
    patches_digest: str
    images: int
    seconds: float
    rows: list[dict[str, Any]]


def part_path(results: ResultsDir, model: str) -> Path:
    return results.root / "parts" / "arithmetic" / f"{file_key(model)}.json"


def read_part(path: Path) -> ModelPart | None:
    try:
        return ModelPart.model_validate_json(path.read_text())
    except (OSError, ValueError, ValidationError):
        return None


@dataclass
class ArithmeticResult:
    out: Path
    tables: dict[str, pd.DataFrame]
    record: ArithmeticRecord
    computed: int
    """Models computed in this call."""
    resumed: int
    """Models whose finished rows were reused."""


def run(cfg: ArithmeticConfig, force: bool = False, progress: Progress | None = None,
        log: Callable[[str], None] = lambda s: None) -> ArithmeticResult:
    progress = progress or _Silent()
    cfg = cfg.with_out()
    p = plan(cfg)
    check_weights(p.models, cfg.weights)
    results = ResultsDir(cfg.out)
    with results.lock():
        results.prepare(cfg, force, ArithmeticRecord)
        record = ArithmeticRecord(
            schema_version=SCHEMA_VERSION, kind="arithmetic", fingerprint=cfg.fingerprint(),
            config=cfg, versions=versions(),
            device=DeviceRecord(type=p.device.type, name=device_name(p.device)), precision=p.precision, models={},
            patches=[PatchRecord(id=x.id, category=x.category, source=x.source, licence=x.licence,
                                 provenance=x.provenance, file=file_key(x.id)) for x in p.patches],
            scenes={k: str(v) for k, v in p.scenes.items()}, expressions={e.name: e.text for e in p.expressions},
            problems=cfg.problems, timings={}, started=datetime.now(timezone.utc).isoformat(), status="running",
            notes=[])
        results.write_run(record)
        patches = {x.id: x for x in p.patches}
        n_scenes = len(scenes_needed(p.problems, cfg.canvas, cfg.stride))
        patches_digest = digest_bytes(*(f"{x.id}:{x.digest()}".encode() for x in p.patches))
        computed = resumed = 0
        rows: list[dict] = []
        inv_rows: list[dict] = []
        inverted: dict[str, inv_mod.Inversions] = {}
        record.notes += p.notes
        for note in p.notes:
            log(note)
        for spec in p.models:
            model, prov = build_with_weights(spec.entry, spec.weights_or(cfg.weights), cfg.seed)
            weights = weights_record(prov, model)
            record.models[spec.key] = ModelRecord(layers=spec.layers, description=spec.entry.description,
                                                  weights=weights, mean=list(spec.entry.normalisation.mean),
                                                  std=list(spec.entry.normalisation.std),
                                                  net_stride=spec.entry.net_stride)
            path = part_path(results, spec.key)
            part = read_part(path) if path.is_file() else None
            batch = resolve_batch_size(cfg.batch_size, p.device, spec.entry.auto_batch)
            renderer = SceneRenderer(patches, cfg.canvas, cfg.background, spec.entry.normalisation, p.device,
                                     cfg.keep_aspect)
            layers = [spec.entry.layer(name) for name in spec.layers]
            if part is not None and (part.fingerprint, part.weights_digest, part.patches_digest) == (
                    record.fingerprint, weights.digest, patches_digest):
                log(f"{spec.key}: already done, reused")
                record.timings[spec.key] = Timing(seconds=part.seconds, images=part.images,
                                                  images_per_s=round(part.images / max(part.seconds, 1e-9), 2))
                rows += part.rows
                resumed += 1
            else:
                if part is not None:
                    log(f"{spec.key}: finished rows are recomputed: the weights or the patches changed")
                progress.start(f"{spec.key} scenes", n_scenes)
                t0 = time.perf_counter()
                with FeatureExtractor(model, layers, spec.entry.normalisation, p.device, p.precision) as extractor:
                    model_rows = measure(p.problems, extractor, renderer, spec.layers, cfg.canvas, cfg.stride, batch,
                                         progress.advance)
                seconds = time.perf_counter() - t0
                progress.stop()
                record.timings[spec.key] = Timing(seconds=round(seconds, 3), images=n_scenes,
                                                  images_per_s=round(n_scenes / seconds, 2))
                model_rows = [dict(model=spec.key, weights=weights.label) | r for r in model_rows]
                part = ModelPart(model=spec.key, fingerprint=record.fingerprint, weights_digest=weights.digest,
                                 patches_digest=patches_digest, images=n_scenes, seconds=round(seconds, 3),
                                 rows=model_rows)
                atomic_write_text(path, part.model_dump_json())
                rows += model_rows
                computed += 1
                results.write_run(record)
            if p.expressions and cfg.inverter != "none":
                numbers_key = f"{record.fingerprint}:{weights.digest}:{patches_digest}"
                inv = _inversions(p, spec, model, layers, renderer, batch, numbers_key, results, progress, log)
                inverted[spec.key] = inv
                inv_rows += inv_mod.loss_rows(inv, weights.label)
                record.inversions += inv.meta.records
                results.write_run(record)
            del model
        per = tables.per_problem(rows)
        out = {"arithmetic": tables.summary(per), "arithmetic_per_problem": per}
        layer_diff = tables.layer_differences(per[per["kind"] != "expression"])
        if len(layer_diff):
            out["arithmetic_layers"] = layer_diff
        if inv_rows:
            out["arithmetic_inversions"] = pd.DataFrame(inv_rows)
        for name, df in out.items():
            results.write_table(name, df)
        record.tables = sorted(out)
        record.table_sha256 = results.table_digests(record.tables)
        record.figures = [str(f.relative_to(results.root)) for f in make_figures(
            results.figures_dir, record, out["arithmetic"], per, inverted, p.scenes, p.expressions, patches, cfg.canvas,
            cfg.background, cfg.keep_aspect)]
        record.status = "complete"
        record.finished = datetime.now(timezone.utc).isoformat()
        results.write_run(record)
    return ArithmeticResult(results.root, out, record, computed, resumed)


def _inversions(p: ArithmeticPlan, spec: ModelSpec, model: Any, layers: list, renderer: SceneRenderer, batch: int,
                numbers_key: str, results: ResultsDir, progress: Progress,
                log: Callable[[str], None]) -> inv_mod.Inversions:
    """One model's expression images: reused from its file while the key matches, else computed and saved."""
    cfg, key, norm = p.config, spec.key, spec.entry.normalisation
    settings = InversionSettings(steps=cfg.inversion_steps, seed=cfg.seed, size=cfg.canvas)
    inverters: dict[str, Inverter] = {}
    for layer in layers:
        inverter = make_inverter(cfg.inverter, model, layer, norm, model_name=spec.entry.name,
                                 weights=spec.weights_or(cfg.weights), seed=cfg.seed, device=p.device,
                                 settings=settings)
        assert inverter is not None  # `none` never gets here
        inverters[layer.name] = inverter
    ikey = inv_mod.key_for(numbers_key, inverters)
    path = inv_mod.path_for(results, key)
    stored = inv_mod.read(path)
    if stored is not None and stored.meta.key == ikey:
        log(f"{key}: images already made, reused")
        return stored
    with FeatureExtractor(model, layers, norm, p.device, p.precision) as extractor:
        feats, rows = inv_mod.expression_features(extractor, renderer, p.expressions, p.scenes, batch)
    inv = inv_mod.invert_layers(key, ikey, feats, rows, p.expressions, p.scenes, inverters, progress.start,
                                progress.advance, progress.stop)
    inv_mod.write(path, inv)
    return inv
