"""`shiftlens units visualise`: the synthetic image of one unit of a finished run's tapped layer (activation
maximisation), or a caricature of one of its canvases, with the inversion's optimiser and priors
(`shiftlens.inversion`), written as a PNG in figures/units/ and listed in figures/units/synthetic.json.

The model is rebuilt with the run's own weights (their digest is checked against run.json), so the image belongs to
the same network the run measured.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shiftlens.analyses.units import positions
from shiftlens.api import build_checked
from shiftlens.errors import ShiftlensError, path_error
from shiftlens.inversion import FeatureNet, InversionSettings, MaximisationResult, caricature, maximise_unit
from shiftlens.inversion.maximise import SilentUnit
from shiftlens.models import parse_spec
from shiftlens.store import ResultsDir, RunRecord, file_key
from shiftlens.stream import resolve_device
from shiftlens.figures.units import ExemplarRenderer, SyntheticImage, add_synthetic, save_png


def _record(results: ResultsDir) -> RunRecord:
    if not results.root.is_dir():
        raise path_error(results.root, "results folder", "give a results folder made by `shiftlens run`", folder=True)
    record = results.read_run()
    if record is None:
        raise ShiftlensError(f"{results.root} holds no run.json: give a results folder made by `shiftlens run`")
    return record


def _split(model_layer: str, record: RunRecord, root: Path) -> tuple[str, str]:
    model, sep, layer = model_layer.rpartition(":")
    if not sep or not model or not layer:
        raise ShiftlensError(f"--model {model_layer!r}: give MODEL:LAYER, e.g. efficientnet_lite0:pool")
    if model not in record.models:
        raise ShiftlensError(f"model {model} is not in the run in {root}: it has {', '.join(record.models)}")
    tapped = record.models[model].layers
    if layer not in tapped:
        raise ShiftlensError(f"layer {layer} was not tapped by the run in {root} for {model}: tapped layers are "
                             f"{', '.join(tapped)}")
    return model, layer


def _net(record: RunRecord, model: str, layer: str, device: torch.device) -> FeatureNet:
    spec = next(s for s in (parse_spec(x) for x in record.config.models) if s.key == model)
    m = record.models[model]
    if m.weights.source == "given module":
        raise ShiftlensError(f"model {model} was a module handed to the API: visualise it from Python with "
                             "shiftlens.inversion.maximise_unit")
    net = build_checked(spec, spec.weights_or(record.config.weights), record.config.seed, m.weights.digest)
    return FeatureNet(net, spec.entry.layer(layer), spec.entry.normalisation, device, name=f"{model}:{layer}")


def _driving_canvas(results: ResultsDir, record: RunRecord, net: FeatureNet, unit: int,
                    size: int) -> tuple[torch.Tensor, str, tuple[int, int]]:
    """The canvas among the run's patches (first size) at the grid's corners, edge middles and centre that drives
    `unit` most, as a (1, 3, size, size) start image, with its patch and position; one line if none drives it."""
    psize = record.config.sizes[0]
    grid = positions(record.config, psize).tolist()
    spots = sorted({grid[0], grid[len(grid) // 2], grid[-1]})
    render = ExemplarRenderer(results, record.config, psize)
    keys = [(p.id, y, x) for p in record.patches for y in spots for x in spots]
    best, best_value = None, 0.0
    for i in range(0, len(keys), 32):
        batch = torch.stack([torch.from_numpy(render(*k)).permute(2, 0, 1) for k in keys[i : i + 32]])
        with torch.no_grad():
            values = net(batch.float())[:, unit].cpu()
        j = int(values.argmax())
        if float(values[j]) > best_value:
            best, best_value = (batch[j : j + 1], *keys[i + j]), float(values[j])
    if best is None:
        raise ShiftlensError(f"unit {unit} of {net.name} is 0 at every noise start and on the run's {len(keys)} "
                             f"canvases ({len(record.patches)} patches at {len(spots) ** 2} positions): nothing here "
                             "drives it, so there is nothing to maximise; pick a live unit (tables/units_per_unit.csv)")
    image, patch, y, x = best
    if image.shape[-1] != size:
        image = torch.nn.functional.interpolate(image.float(), size=(size, size), mode="bilinear", align_corners=False)
    return image.float().clamp(0, 1), patch, (y, x)


def _refuse_unused(as_caricature: bool, **given) -> None:
    """Options of the other mode would be ignored: one line instead (a caricature keeps its canvas's size and
    needs no unit; a maximised unit has no canvas)."""
    unused = ("unit", "size") if as_caricature else ("patch", "position", "patch_size")
    stray = next((name for name in unused if given[name] is not None), None)
    if stray is None:
        return
    flag = "--" + stray.replace("_", "-")
    if as_caricature:
        raise ShiftlensError(f"{flag} is not used by --caricature, which exaggerates the canvas of --patch at "
                             f"--position at the canvas's own size: leave {flag} out")
    raise ShiftlensError(f"{flag} picks the canvas of a caricature: add --caricature, or leave {flag} out to "
                         "maximise --unit")


def visualise(results_dir: Path | str, model_layer: str, unit: int | None = None, *, as_caricature: bool = False,
              patch: str | None = None, position: tuple[int, int] | None = None, patch_size: int | None = None,
              device: str = "cpu", **settings) -> tuple[SyntheticImage, MaximisationResult]:
    """Maximise `unit` of MODEL:LAYER (or, `as_caricature`, caricature the canvas of `patch` at `position` (y, x)
    px); `settings`: InversionSettings fields (steps, tv_weight, size, seed, ...)."""
    dev = resolve_device(device)  # an unknown device, or CUDA where there is none: one line before any work
    _refuse_unused(as_caricature, unit=unit, patch=patch, position=position, patch_size=patch_size,
                   size=settings.get("size"))
    results = ResultsDir(results_dir)
    record = _record(results)
    model, layer = _split(model_layer, record, results.root)
    s = InversionSettings.with_overrides(None, **{k: v for k, v in settings.items() if v is not None})
    if as_caricature:
        size = patch_size or record.config.sizes[0]
        if patch is None or position is None:
            raise ShiftlensError("--caricature needs the canvas: --patch ID --position Y,X (the patch's top-left, px)")
        if patch not in {p.id for p in record.patches}:
            raise ShiftlensError(f"patch {patch!r} is not in the run: it has {', '.join(p.id for p in record.patches[:5])}"
                                 f"{', ...' if len(record.patches) > 5 else ''}")
        grid = positions(record.config, size).tolist()
        if position[0] not in grid or position[1] not in grid:
            raise ShiftlensError(f"position {position[0]},{position[1]} is not on the run's grid for {size}px: offsets "
                                 f"are {grid[0]}, {grid[1]}, ... {grid[-1]}")
        image = ExemplarRenderer(results, record.config, size)(patch, *position)
        canvas = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        res = caricature(_net(record, model, layer, dev), None, canvas, settings=s)
        name = f"{file_key(model + '_' + layer)}-caricature-{file_key(patch)}-p{size}-{position[0]}-{position[1]}.png"
    else:
        if unit is None:
            raise ShiftlensError("give --unit N (or --caricature with --patch and --position)")
        if unit < 0:
            raise ShiftlensError(f"unit {unit} is out of range: unit indices start at 0")
        net = _net(record, model, layer, dev)
        try:
            res = maximise_unit(net, None, unit, settings=s)
        except SilentUnit:  # a rectified unit the noise starts leave at 0: climb from the run's canvas that drives it
            start, patch, position = _driving_canvas(results, record, net, unit, s.size)
            res = maximise_unit(net, None, unit, settings=s, start=start)
        name = f"{file_key(model + '_' + layer)}-u{unit}.png"
    path = results.figures_dir / "units" / name
    with results.lock():
        results.refuse_links()  # figures/units reached through a link would be written outside the folder
        save_png(res.to_uint8()[0], path)
        entry = SyntheticImage(
            model=model, layer=layer, kind="caricature" if as_caricature else "maximise",
            unit=None if as_caricature else unit, file=str(path.relative_to(results.root)),
            value=float(res.value[0]), start_value=float(res.start_value[0]), gain=float(res.gain[0]),
            patch=patch, position=position,
            steps=res.settings.steps, tv_weight=res.settings.tv_weight, seed=res.settings.seed,
            seconds=round(res.seconds, 2),
            untrained=record.models[model].weights.untrained)
        add_synthetic(results, entry)
        listed = set(record.figures)
        for f in (entry.file, "figures/units/synthetic.json"):
            if f not in listed:
                record.figures.append(f)
        results.write_run(record)
    return entry, res


__all__ = ["visualise"]
