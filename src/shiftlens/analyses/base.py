"""What every analysis shares: the per-patch context, the streaming interface and the registry.

An analysis sees one patch's features batch by batch (`update`), returns named arrays for that patch (`finish`,
saved atomically as the patch's part), and turns all parts into tables (`tables`). Analyses that need every
position's feature at once (separability, location) set `needs_features` and get them in `finish`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from shiftlens.config import RunConfig


@dataclass
class PatchContext:
    """One unit of work: a model, a patch size and a patch, with its position grid."""

    model: str
    weights: str
    layers: list[str]
    patch_id: str
    category: str
    patch_size: int
    ys: np.ndarray
    xs: np.ndarray
    n: int
    anchors: dict[str, int]
    config: RunConfig
    device: torch.device
    logits_layer: str | None = None
    extra: dict = field(default_factory=dict)


PART_COLUMNS = ["model", "layer", "weights", "patch_size", "patch", "category"]
"""The identity columns that open every per-patch table, in this order."""


@dataclass
class Part:
    """A finished unit loaded back from the store: its identity and arrays keyed `analysis/layer/name`."""

    model: str
    weights: str
    patch_size: int
    patch_id: str
    category: str
    n: int
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def row(self, layer: str, **values) -> dict:
        """A per-patch table row: the part's identity (PART_COLUMNS) followed by `values`."""
        return dict(model=self.model, layer=layer, weights=self.weights, patch_size=self.patch_size,
                    patch=self.patch_id, category=self.category, **values)

    def get(self, analysis: str, layer: str, name: str) -> np.ndarray | None:
        return self.arrays.get(f"{analysis}/{layer}/{name}")

    def layers(self, analysis: str) -> list[str]:
        seen = []
        for key in self.arrays:
            a, layer, _ = key.split("/", 2)
            if a == analysis and layer not in seen:
                seen.append(layer)
        return seen


class Analysis:
    name: ClassVar[str] = ""
    needs_features: ClassVar[bool] = False
    """True when `finish` needs the (n*n, D) features of every layer."""
    streams: ClassVar[bool] = True
    """False for analyses computed from other analyses' parts only (no forward pass of their own)."""

    def __init__(self, ctx: PatchContext) -> None:
        self.ctx = ctx

    @classmethod
    def extra_layers(cls, logits_layer: str | None) -> list[str]:
        """Layers this analysis needs beyond the user's (e.g. logits for shift consistency)."""
        return []

    def update(self, idx: torch.Tensor, feats: dict[str, torch.Tensor]) -> None:
        """A batch: `idx` are flat position indices, `feats` maps layer -> (B, D) float32."""

    def finish(self, features: dict[str, torch.Tensor] | None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def tables(cls, parts: list[Part], config: RunConfig) -> dict[str, pd.DataFrame]:
        """Tables named by their file stem, e.g. {'similarity': ..., 'similarity_per_patch': ...}."""
        return {}


ANALYSIS_REGISTRY: dict[str, type[Analysis]] = {}


def register_analysis(cls: type[Analysis]) -> type[Analysis]:
    ANALYSIS_REGISTRY[cls.name] = cls
    return cls


def anchors(n: int) -> dict[str, int]:
    """The five anchors as flat row-major indices into the n x n grid (docs/protocol.md, Experiment 1).

    TL (0, 0), TR (0, n-1), C (floor((n-1)/2), floor((n-1)/2)), BL (n-1, 0), BR (n-1, n-1).
    """
    c = (n - 1) // 2
    rc = {"TL": (0, 0), "TR": (0, n - 1), "C": (c, c), "BL": (n - 1, 0), "BR": (n - 1, n - 1)}
    return {name: r * n + col for name, (r, col) in rc.items()}


ANCHORS = ("TL", "TR", "C", "BL", "BR")
