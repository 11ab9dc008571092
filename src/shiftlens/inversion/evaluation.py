"""`shiftlens inverter evaluate FILE --patches SOURCE`: how well a decoder file reconstructs single objects.

Seeded single-object scenes on the white canvas (sizes from the decoder's training range, positions anywhere), of
the objects of SOURCE it was never trained on (`held_out`: its own held-out objects and every object of another
source) and of those it was trained on (`training`), each encoded by the decoder's network and decoded. Per group:

- `mae`: mean absolute RGB error in [0, 1] at the canvas;
- `centroid_share`: the share of scenes whose reconstruction's object centroid (pixels whose largest channel is
  more than `threshold` from white) is within `radius_px` of the truth's; a reconstruction with no such pixel is a
  miss (its error is the canvas diagonal);
- `median_centroid_error_px`, and `centre_median_error_px`: the same median for the guess "the canvas centre", on
  the same scenes, the baseline a decoder that places anything must beat;
- `gain_over_centre_px` (and, with a probe, `gain_over_probe_px`): the median over the same scenes of the baseline's
  error minus the decoder's, with a 95% percentile bootstrap interval over objects (scenes of one object resampled
  together; `_ci_low`, `_ci_high`): > 0 with an interval clear of 0 says the decoder places objects better than the
  baseline, not just a smaller median;
- `recognised_share`: the share of scenes where the network's top-5 classes on the reconstruction hold its top-1
  class on the original (None for a model without a logits layer);
- `probe_median_error_px` (with `probe=`, as the CLI passes the location analysis's cross-object ridge): the median
  distance of the probe's predicted centroid from the truth's, the probe fitted on PROBE_SCENES other seeded scenes
  of the training objects' features: what a linear read-out of the same features places, the yardstick a decoder
  that places objects is measured against (the training group's scenes are new scenes of objects the probe saw).
  When SOURCE holds none of the decoder's training objects (another source altogether), the probe is fitted on the
  decoder's training objects read from its training source, so both read-outs learnt from the same objects;
  `probe_objects` says which were used.

Every object is rendered from its source, never from the training cache beside FILE, so a decoder's numbers are
the same with or without one.

The held-out group's scenes are those `train.evaluate` draws with the same seed, so its first three numbers agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from shiftlens.errors import ShiftlensError
from shiftlens.inversion.decoder import Decoder, decoder_file, load_decoder, read_decoder_file
from shiftlens.inversion.objects import load_sources
from shiftlens.inversion.train import (Encoder, GroupResult, centroids, measure_group, object_mask, parse_one_layer,
                                       random_scenes, split_keys)
from shiftlens.models import build_with_weights
from shiftlens.scenes import SceneRenderer
from shiftlens.stream import FeatureExtractor

GROUPS = ("held_out", "training")
PROBE_SCENES = 512
"""Seeded single-object scenes of the training objects the position probe is fitted on."""
Probe = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(features, centres, object of each row, test features) -> predicted centres: a probe fitted and applied."""


@dataclass
class GroupNumbers:
    group: str
    objects: int
    """Distinct objects of the group in the patch set (0: the group is empty, its numbers None)."""
    scenes: int
    mae: float | None = None
    centroid_share: float | None = None
    median_centroid_error_px: float | None = None
    centre_median_error_px: float | None = None
    recognised_share: float | None = None
    probe_median_error_px: float | None = None
    gain_over_centre_px: float | None = None
    """Median over scenes of (centre guess's error − decoder's error), px: > 0, the decoder places better; its
    interval (`_ci_low`, `_ci_high`) resamples objects."""
    gain_over_centre_ci_low: float | None = None
    gain_over_centre_ci_high: float | None = None
    gain_over_probe_px: float | None = None
    """Median over scenes of (probe's error − decoder's error), px, on the same scenes."""
    gain_over_probe_ci_low: float | None = None
    gain_over_probe_ci_high: float | None = None


@dataclass
class Report:
    file: str
    spec: str
    weights: str
    steps: int
    patches: str
    n: int
    seed: int
    radius_px: float
    threshold: float
    groups: list[GroupNumbers]
    training_sources: list[dict] = field(default_factory=list)
    note: str = ""
    probe_objects: str = ""
    """What the probe was fitted on: the training objects of SOURCE, or those of the decoder's training source."""
    outputs: dict[str, str] = field(default_factory=dict)
    untrained: bool = False
    """The encoder's weights are random: every output says so (table title, figure)."""

    def group(self, name: str) -> GroupNumbers:
        return next(g for g in self.groups if g.group == name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _check_model(meta_spec: str, model: str | None, path: Path) -> None:
    if model is not None and model != meta_spec:
        raise ShiftlensError(f"decoder file {path} was made for {meta_spec}, not {model}: give a decoder trained "
                             f"for {model} (shiftlens inverter train --model {model}) or leave --model out")


def evaluate_file(path: Path | str, patches: str, n: int = 48, seed: int = 123, out: Path | str | None = None,
                  model: str | None = None, weights: str | None = None, per_category: int = 20,
                  figure_n: int = 8, radius_px: float = 10.0, threshold: float = 0.2,
                  log=None, probe: Probe | None = None) -> Report:
    """The numbers of the module docstring for the decoder `path` on `patches` (one source or several joined by
    `+`); with `out`, also evaluation.json, evaluation.csv and evaluation.png (truth above reconstruction for the
    first `figure_n` scenes of each group) there. Bad input is one `ShiftlensError` line, before any work."""
    log = log or (lambda s: None)
    path = decoder_file(path)
    if n < 1:
        raise ShiftlensError(f"--n {n}: give 1 or more scenes per group")
    if figure_n < 0:
        raise ShiftlensError(f"--figure {figure_n}: give 0 or more scenes")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ShiftlensError(f"--out {out} is a file: give a folder for evaluation.json, .csv and .png")
    meta, _ = read_decoder_file(path)
    _check_model(meta.spec, model, path)
    parsed = parse_one_layer(meta.spec)  # a model this shiftlens does not know is one line
    entry = parsed.entry
    weights = weights or meta.settings.weights
    decoder = load_decoder(path, meta.model, meta.layer, weights=weights, seed=meta.settings.seed)
    # objects as their sources give them, never from the training cache beside the file (objects resized once to
    # the largest training size render slightly differently): the numbers must not depend on whether one lies there
    sources = load_sources(patches, per_category)
    flat = [p for src in sources for p in src.patches]
    by_key, held, trained = split_keys(meta, flat)
    log(f"{len(held)} objects of {patches} {meta.spec}'s decoder was not trained on, {len(trained)} it was")

    model_, prov = build_with_weights(entry, weights, meta.settings.seed)
    layers = [entry.layer(meta.layer)]
    logits = entry.logits_layer
    if logits and logits != meta.layer:
        layers.append(entry.layer(logits))
    extractor = FeatureExtractor(model_, layers, entry.normalisation, torch.device("cpu"), "fp32")
    renderer = SceneRenderer(by_key, meta.canvas, normalisation=entry.normalisation)
    encoder = Encoder(extractor, None, renderer, meta.layer, str(prov.get("label", weights)),  # type: ignore[arg-type]
                      bool(prov.get("untrained")))
    note = "" if logits else f"{entry.name} has no logits layer: recognised_share is not measured"
    if logits and prov.get("untrained"):
        note = ("untrained (random) weights: their classes mean nothing, and an untrained network gives most inputs "
                "the same top classes, so recognised_share says nothing about the reconstructions")

    rng = np.random.default_rng([seed, 7])  # train.evaluate's draw: the held-out group's scenes are the same
    results: dict[str, GroupResult] = {}
    numbers = []
    for name, keys in (("held_out", held), ("training", trained)):
        if not keys:
            numbers.append(GroupNumbers(name, 0, 0))
            continue
        g = measure_group(decoder, encoder, renderer, keys, n, rng, threshold)
        results[name] = g
        rec = None
        if logits:
            truth_logits = encoder.encode(g.truth, layer=logits)
            recon_logits = encoder.encode(g.recon, layer=logits)
            top1 = truth_logits.argmax(1, keepdim=True)
            top5 = recon_logits.topk(min(5, recon_logits.shape[1]), dim=1).indices
            rec = float((top5 == top1).any(1).float().mean())
        gain = paired_gain(g.centre_error.numpy(), g.centroid_error.numpy(), seed, scene_objects(g))
        numbers.append(GroupNumbers(name, len(keys), n, g.mae, g.share_within(radius_px),
                                    float(g.centroid_error.median()), float(g.centre_error.median()), rec,
                                    gain_over_centre_px=gain[0], gain_over_centre_ci_low=gain[1],
                                    gain_over_centre_ci_high=gain[2]))
    probe_keys, probe_renderer, probe_objects = trained, renderer, f"{len(trained)} training objects of {patches}"
    if probe is not None and not trained and results:
        probe_keys, probe_renderer, probe_objects = _own_training_objects(meta, entry.normalisation, log)
    if probe is not None and probe_keys and results:
        log(f"fitting the position probe on {PROBE_SCENES} scenes of {probe_objects}")
        for g_num, err in zip((g for g in numbers if g.group in results),
                              probe_errors(probe, encoder, probe_renderer, probe_keys, meta, results, seed, threshold)):
            g = results[g_num.group]
            g_num.probe_median_error_px = float(torch.as_tensor(err).median())  # torch's (lower middle), as the others
            gain = paired_gain(err, g.centroid_error.numpy(), seed, scene_objects(g))
            g_num.gain_over_probe_px, g_num.gain_over_probe_ci_low, g_num.gain_over_probe_ci_high = gain
    else:
        probe_objects = ""
    extractor.close()
    report = Report(str(path), meta.spec, weights, meta.steps_done,
                    patches, n, seed, radius_px, threshold, numbers,
                    [s.model_dump() for s in meta.training_sources], note, probe_objects=probe_objects,
                    untrained=encoder.untrained)
    if out is not None:
        report.outputs = write_outputs(report, results, Path(out), figure_n)
    return report


def _own_training_objects(meta, normalisation, log) -> tuple[list[str], SceneRenderer | None, str]:
    """The decoder's training objects read from its training source (a shipped decoder has no cache beside it, and
    the numbers must not depend on one), a renderer for them and a description; nothing when the source cannot be
    read here (the probe is then not fitted)."""
    try:
        sources = load_sources(meta.settings.patches, meta.settings.per_category)
    except ShiftlensError as exc:
        log(f"the decoder's training objects ({meta.settings.patches}) cannot be read ({exc}): "
            "the position probe is not fitted")
        return [], None, ""
    flat = [p for src in sources for p in src.patches]
    by_key, _, trained = split_keys(meta, flat)
    if not trained:
        log(f"none of the decoder's training objects is in {meta.settings.patches} here: the probe is not fitted")
        return [], None, ""
    return trained, SceneRenderer(by_key, meta.canvas, normalisation=normalisation), (
        f"{len(trained)} training objects of {meta.settings.patches}, its training source")


CSV_COLUMNS = ("group", "objects", "scenes", "mae", "centroid_share", "median_centroid_error_px",
               "centre_median_error_px", "probe_median_error_px", "recognised_share",
               "gain_over_centre_px", "gain_over_centre_ci_low", "gain_over_centre_ci_high",
               "gain_over_probe_px", "gain_over_probe_ci_low", "gain_over_probe_ci_high")
RESAMPLES = 2000


def paired_gain(baseline: np.ndarray, decoder: np.ndarray, seed: int,
                objects: np.ndarray | None = None) -> tuple[float, float | None, float | None]:
    """The median over scenes of `baseline` − `decoder` (px; > 0: the decoder places better) and its 95% percentile
    bootstrap interval, resampling `objects` (each scene's object; None: every scene its own), so that scenes of one
    object count as one draw: a new object, not a new scene of a known one, is what the interval is about (None
    below 2 objects). Paired on the same scenes, so a scene that is hard for both counts once."""
    d = np.asarray(baseline, np.float64) - np.asarray(decoder, np.float64)
    groups = np.arange(len(d)) if objects is None else np.asarray(objects)
    ok = np.isfinite(d)  # a scene whose truth has no object pixel has no error to compare
    d, groups = d[ok], groups[ok]
    if not len(d):
        return float("nan"), None, None
    med = float(np.median(d))
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(inverse.max() + 1)]
    if len(members) < 2:
        return med, None, None
    rng = np.random.default_rng([seed, 13])
    draws = rng.integers(0, len(members), (RESAMPLES, len(members)))
    medians = np.array([np.median(d[np.concatenate([members[i] for i in row])]) for row in draws])
    low, high = np.quantile(medians, [0.025, 0.975])
    return med, float(low), float(high)


def scene_objects(g: GroupResult) -> np.ndarray:
    """The object of each single-object scene of `g`: the unit the gains' intervals resample."""
    return np.array([sc.objects[0].patch for sc in g.scenes])


def probe_errors(probe: Probe, encoder: Encoder, renderer: SceneRenderer, trained: list[str], meta,
                 results: dict[str, GroupResult], seed: int, threshold: float) -> list[np.ndarray]:
    """Per group of `results` (in order), per scene the px between `probe`'s predicted object centroid and the
    truth's, the probe fitted on PROBE_SCENES seeded single-object scenes of the `trained` objects."""
    rng = np.random.default_rng([seed, 11])
    scenes = random_scenes(rng, trained, PROBE_SCENES, tuple(meta.settings.sizes), 1, meta.canvas)
    feats, ys = [], []
    for i in range(0, len(scenes), 128):  # images of a chunk at a time: 512 canvases would be 300 MB
        f, truth = encoder.features(scenes[i : i + 128], renderer=renderer)
        feats.append(f)
        ys.append(centroids(object_mask(truth, threshold)))
    feats, y = torch.cat(feats), torch.cat(ys).numpy()
    objects = np.array([s.objects[0].patch for s in scenes])
    ok = np.isfinite(y).all(1)
    groups = list(results.values())
    pred = probe(feats.numpy()[ok], y[ok], objects[ok], torch.cat([g.features for g in groups]).numpy())  # one fit
    out = []
    for g, p in zip(groups, np.split(pred, np.cumsum([len(g.features) for g in groups])[:-1])):
        true_c = centroids(object_mask(g.truth, threshold)).numpy()
        out.append(np.linalg.norm(p - true_c, axis=1))
    return out


def write_outputs(report: Report, results: dict[str, GroupResult], out: Path, figure_n: int) -> dict[str, str]:
    from shiftlens.store import atomic_path, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    lines = [",".join(CSV_COLUMNS)]
    for g in report.groups:
        row = asdict(g)
        lines.append(",".join("" if row[c] is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]))
                              for c in CSV_COLUMNS))
    files = {"json": str(out / "evaluation.json"), "csv": str(out / "evaluation.csv")}
    atomic_write_text(out / "evaluation.csv", "\n".join(lines) + "\n")
    if figure_n and results:
        image = figure(results, figure_n, untrained=report.untrained)
        with atomic_path(out / "evaluation.png") as tmp:
            image.save(tmp, format="PNG")
        files["figure"] = str(out / "evaluation.png")
    report.outputs = files
    atomic_write_text(out / "evaluation.json", report.to_json() + "\n")
    return files


def figure(results: dict[str, GroupResult], k: int, cell: int = 112, untrained: bool = False):
    """Per group two rows, truth above reconstruction, the group's first `k` scenes, `cell` px each; each group's
    label says when the encoder's weights are untrained."""
    from PIL import Image, ImageDraw

    label_h, gap = 14, 6
    groups = [g for g in GROUPS if g in results]
    cols = max(min(k, len(results[g].scenes)) for g in groups)
    height = sum(label_h + 2 * cell + gap for _ in groups)
    sheet = Image.new("RGB", (cols * cell, height), (200, 200, 200))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for name in groups:
        r = results[name]
        m = min(k, len(r.scenes))
        dist = r.centroid_error
        draw.text((2, y + 1), ("UNTRAINED (random) weights - " if untrained else "")
                  + f"{name.replace('_', '-')}: truth (top), reconstruction (bottom, centroid error px)",
                  fill=(0, 0, 0))
        y += label_h
        for i in range(m):
            for row, img in enumerate((r.truth[i], r.recon[i])):
                arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                tile = Image.fromarray(arr).resize((cell, cell), Image.BILINEAR)
                sheet.paste(tile, (i * cell, y + row * cell))
            err = float(dist[i])
            draw.text((i * cell + 3, y + 2 * cell - 12), f"{err:.0f}" if math.isfinite(err) else "-", fill=(200, 0, 0))
        y += 2 * cell + gap
    return sheet
