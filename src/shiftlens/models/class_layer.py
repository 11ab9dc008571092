"""The `class` layer: per position, the softmax probability of the patch's ImageNet class set.

It is a scalar per position, so it is stored as an (n, n) probability map (part array `class/class/prob`)
instead of going through the feature analyses, and summarised in `tables/class_prob.csv`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses.base import Part
from shiftlens.errors import ShiftlensError

CLASS_LAYER = "class"
ARRAY_KEY = "class/class/prob"


class ClassProbMap:
    """Fills the (n*n,) map batch by batch from the `class` tap's (B, 1000) softmax."""

    def __init__(self, n: int, indices: list[int], device: torch.device) -> None:
        self.n = n
        self.indices = torch.as_tensor(indices, device=device)
        self.map = torch.full((n * n,), float("nan"), device=device)

    def update(self, idx: torch.Tensor, probs: torch.Tensor) -> None:
        if probs.shape[1] != 1000:
            raise ShiftlensError(f"the class layer needs 1000 ImageNet class scores, this model gives {probs.shape[1]}: "
                                 "drop the class layer for this model")
        self.map[idx] = probs[:, self.indices].sum(dim=1)

    def finish(self) -> dict[str, np.ndarray]:
        arr = self.map.view(self.n, self.n).cpu().numpy().astype(np.float32)
        if np.isnan(arr).any():
            raise RuntimeError("class probability map incomplete: the stream missed positions")
        return {ARRAY_KEY: arr}


def class_prob_table(parts: list[Part]) -> pd.DataFrame | None:
    """One row per (model, size, patch) that has a class map; None when no part has one."""
    rows = []
    for p in parts:
        m = p.arrays.get(ARRAY_KEY)
        if m is None:
            continue
        rows.append(p.row(CLASS_LAYER, mean_prob=float(m.mean()), min_prob=float(m.min()), max_prob=float(m.max())))
    return pd.DataFrame(rows) if rows else None
