"""Scene features and the arithmetic result vector.

The blank canvas completes an expression's coefficients to 1: r = sum_i c_i f(S_i) + (1 - sum_i c_i) f(blank).
For a tap linear in the pixels (an affine one too), each object adds its own change to f(blank) when objects do
not overlap, so r == f(E) exactly; without the blank term a pure subtraction (coefficients summing to 0) would
lose the background and compare a background-free vector with f(E). docs/arithmetic.md has the derivation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from shiftlens.scenes import Scene, SceneRenderer
from shiftlens.stream import FeatureExtractor


def scene_features(extractor: FeatureExtractor, renderer: SceneRenderer, scenes: Sequence[Scene], batch_size: int,
                   on_batch=lambda n: None) -> dict[str, np.ndarray]:
    """{layer: (len(scenes), D) float64}, each distinct scene rendered and passed through the network once."""
    unique = list(dict.fromkeys(scenes))
    where = {s: i for i, s in enumerate(unique)}
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        feats = extractor(renderer.render(batch))
        for k, v in feats.items():
            chunks.setdefault(k, []).append(v.float().cpu())
        on_batch(len(batch))
    index = np.array([where[s] for s in scenes], dtype=np.int64)
    return {k: torch.cat(v).double().numpy()[index] for k, v in chunks.items()}


def result_vector(coefs: Sequence[int], operands: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """sum_i c_i f(S_i) + (1 - sum_i c_i) f(blank), for operands (n, D) and blank (D,)."""
    c = np.asarray(coefs, dtype=np.float64)
    return c @ operands + (1.0 - c.sum()) * blank


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of a (D,) or (n, D) against b (D,) or (m, D) rows (0 where a vector is zero)."""
    a2, b2 = np.atleast_2d(a), np.atleast_2d(b)
    na = np.linalg.norm(a2, axis=1, keepdims=True)
    nb = np.linalg.norm(b2, axis=1, keepdims=True)
    out = (a2 @ b2.T) / np.maximum(na * nb.T, np.finfo(np.float64).tiny)
    return out.squeeze()
