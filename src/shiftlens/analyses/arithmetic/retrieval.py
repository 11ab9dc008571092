"""Position retrieval: is the expected scene the candidate closest to the result vector?

The candidates are the expected scene E with one object (the probe: the moved or added one) at every grid position
at a stride, plus its true position when that is off the grid. Ties (a tap that ignores position gives identical
candidates) count as a uniformly random pick among the tied best, so a constant tap scores exactly chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shiftlens.canvases import offsets
from shiftlens.scenes import Scene

TIE = 1e-7
"""Cosines within this of each other are one tie: float32 features of identical scenes can differ by rounding."""


@dataclass(frozen=True)
class Retrieval:
    rank: float
    """E's rank among the candidates by cosine to r (1 = best; ties give the mean rank of the tied)."""
    top1: float
    """1 when E alone is closest; 1/k when E is one of k tied closest; else 0."""
    pixel_error: float
    """Distance in px between the probe's true top-left and the best candidate's (mean over tied best)."""
    n_candidates: int


def candidates(expected: Scene, probe: int, canvas: int, stride: int) -> tuple[list[Scene], np.ndarray, int]:
    """(candidate scenes, their probe top-lefts (n, 2), index of E itself)."""
    obj = expected.objects[probe]
    o = offsets(canvas, obj.size, stride)
    pos = [(int(y), int(x)) for y in o for x in o]
    if (obj.y, obj.x) not in pos:
        pos.append((obj.y, obj.x))
    truth = pos.index((obj.y, obj.x))
    scenes = [expected.replaced(probe, obj.at(y, x)) for y, x in pos]
    return scenes, np.asarray(pos, dtype=np.float64), truth


def retrieve(cos: np.ndarray, positions: np.ndarray, truth: int) -> Retrieval:
    """E's rank, top-1 and the best candidate's pixel error from the candidates' cosines to r."""
    cos = np.asarray(cos, dtype=np.float64)
    best = cos.max()
    tied = np.flatnonzero(cos >= best - TIE)
    higher = int((cos > cos[truth] + TIE).sum())
    equal = int((np.abs(cos - cos[truth]) <= TIE).sum()) - 1
    top1 = 1.0 / len(tied) if truth in tied else 0.0
    err = float(np.linalg.norm(positions[tied] - positions[truth], axis=1).mean())
    return Retrieval(rank=1 + higher + equal / 2, top1=top1, pixel_error=err, n_candidates=len(cos))
