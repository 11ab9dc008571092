"""The expressions' images (`--inverter`): per model and layer, each operand's feature f(S_i) and the result vector
r turned back into an image, as the paper's Fig. 6 does with DeePSiM.

One model's images are one file, parts/arithmetic/MODEL.inversions.npz (uint8 images and feature losses per layer,
plus `InversionMeta` as JSON), written atomically and reused while its key matches: the numbers' fingerprint, the
weights' and patches' digests, and each layer's inverter with its settings. Changing only the inverter recomputes
only the images.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from shiftlens.analyses.arithmetic.expressions import Expression
from shiftlens.analyses.arithmetic.features import cosine, result_vector, scene_features
from shiftlens.inversion.inverters import Inverter
from shiftlens.scenes import BLANK, Scene, SceneRenderer
from shiftlens.analyses.arithmetic.record import InversionRecord
from shiftlens.store import ResultsDir, atomic_write_bytes, file_key
from shiftlens.stream import FeatureExtractor


def target_names(expressions: Sequence[Expression]) -> list[str]:
    """What is inverted, in figure order: `scene:NAME` for every operand scene (once), `result:EXPR` per expression."""
    out: dict[str, None] = {}
    for e in expressions:
        out.update(dict.fromkeys(f"scene:{s}" for _, s in e.terms))
        out[f"result:{e.name}"] = None
    return list(out)


class InversionMeta(BaseModel):
    """What an inversions file holds: its key, the targets (rows of every layer's arrays) and each operand's cosine
    to its expression's expected scene (shown under the operand's panel)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    key: str
    targets: list[str]
    layers: list[str]
    records: list[InversionRecord]
    operand_cos: dict[str, dict[str, list[float]]]
    """layer -> expression -> cos(f(S_i), f(E)) per operand, in the expression's order."""


@dataclass
class Inversions:
    meta: InversionMeta
    images: dict[str, np.ndarray]
    """layer -> (K, H, W, 3) uint8, rows in `meta.targets` order."""
    feature_loss: dict[str, np.ndarray]

    def image(self, layer: str, target: str) -> tuple[np.ndarray, float]:
        i = self.meta.targets.index(target)
        return self.images[layer][i], float(self.feature_loss[layer][i])


def path_for(results: ResultsDir, model: str) -> Path:
    return results.root / "parts" / "arithmetic" / f"{file_key(model)}.inversions.npz"


def key_for(numbers_key: str, inverters: dict[str, Inverter]) -> str:
    described = {layer: [inv.name, inv.describe()] for layer, inv in inverters.items()}
    text = json.dumps([numbers_key, described], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read(path: Path) -> Inversions | None:
    """The stored images, or None when the file is missing, cut short or of another layout."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            meta = InversionMeta.model_validate_json(bytes(z["__meta__"]).decode())
            images = {layer: z[f"{layer}/images"] for layer in meta.layers}
            loss = {layer: z[f"{layer}/feature_loss"] for layer in meta.layers}
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, ValidationError):
        return None
    return Inversions(meta, images, loss)


def write(path: Path, inv: Inversions) -> None:
    buf = io.BytesIO()
    arrays = {f"{layer}/images": inv.images[layer] for layer in inv.meta.layers}
    arrays |= {f"{layer}/feature_loss": inv.feature_loss[layer] for layer in inv.meta.layers}
    np.savez_compressed(buf, __meta__=np.frombuffer(inv.meta.model_dump_json().encode(), dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def expression_features(extractor: FeatureExtractor, renderer: SceneRenderer, expressions: Sequence[Expression],
                        scenes: dict[str, Scene], batch_size: int) -> tuple[dict[str, np.ndarray], dict[Scene, int]]:
    """Features of the blank canvas, every operand scene and every expected scene, {layer: (n, D)}, and each
    scene's row."""
    needed: dict[Scene, None] = {BLANK: None}
    for e in expressions:
        needed.update(dict.fromkeys(scenes[s] for _, s in e.terms))
        needed[e.expected(scenes)] = None
    order = list(needed)
    return scene_features(extractor, renderer, order, batch_size), {s: i for i, s in enumerate(order)}


def targets_and_cosines(feats: np.ndarray, rows: dict[Scene, int], expressions: Sequence[Expression],
                        scenes: dict[str, Scene]) -> tuple[np.ndarray, dict[str, list[float]]]:
    """One layer: the target vectors (K, D) in `target_names` order and each operand's cosine to its E."""
    vectors: dict[str, np.ndarray] = {}
    cos: dict[str, list[float]] = {}
    blank = feats[rows[BLANK]]
    for e in expressions:
        ops = feats[[rows[scenes[s]] for _, s in e.terms]]
        expected = feats[rows[e.expected(scenes)]]
        for _, s in e.terms:
            vectors[f"scene:{s}"] = feats[rows[scenes[s]]]
        vectors[f"result:{e.name}"] = result_vector([c for c, _ in e.terms], ops, blank)
        cos[e.name] = [float(c) for c in np.atleast_1d(cosine(ops, expected))]
    names = target_names(expressions)
    return np.stack([vectors[n] for n in names]), cos


def invert_layers(model: str, key: str, feats: dict[str, np.ndarray], rows: dict[Scene, int],
                  expressions: Sequence[Expression], scenes: dict[str, Scene], inverters: dict[str, Inverter],
                  progress_start: Callable[[str, int], None], progress_advance: Callable[[int], None],
                  progress_stop: Callable[[], None]) -> Inversions:
    """Invert every target of every layer with that layer's inverter."""
    names = target_names(expressions)
    images, losses, records, operand_cos = {}, {}, [], {}
    for layer, inverter in inverters.items():
        targets, operand_cos[layer] = targets_and_cosines(feats[layer], rows, expressions, scenes)
        progress_start(f"{model}:{layer} inverting ({inverter.name})", inverter.work(len(targets)))
        try:
            out = inverter.invert(torch.from_numpy(targets).float(), progress_advance)
        finally:
            progress_stop()
        images[layer] = out.to_uint8()
        losses[layer] = out.feature_loss
        records.append(InversionRecord(model=model, layer=layer, inverter=inverter.name, settings=inverter.describe(),
                                       key=key, images=len(targets), seconds=round(out.seconds, 3),
                                       median_feature_loss=float(np.median(out.feature_loss))))
    meta = InversionMeta(model=model, key=key, targets=names, layers=list(inverters), records=records,
                         operand_cos=operand_cos)
    return Inversions(meta, images, losses)


def loss_rows(inv: Inversions, weights_label: str) -> list[dict]:
    """Rows of tables/arithmetic_inversions.csv for one model."""
    by_layer = {r.layer: r.inverter for r in inv.meta.records}
    return [dict(model=inv.meta.model, layer=layer, weights=weights_label, inverter=by_layer[layer], target=t,
                 feature_loss=float(inv.feature_loss[layer][i]))
            for layer in inv.meta.layers for i, t in enumerate(inv.meta.targets)]
