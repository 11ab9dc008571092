"""What every analysis shares: the per-patch context, the streaming interface and the registry.

An analysis sees one patch's features batch by batch (`update`), returns named arrays for that patch (`finish`,
saved atomically as the patch's part), and turns all parts into tables (`tables`). Analyses that need every
position's feature at once (separability, location) set `needs_features` and get them in `finish`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses.cross_part import AnalysisOutputs, CrossPartState
from shiftlens.config import ANALYSES, RunConfig
from shiftlens.patches.patch import Patch
from shiftlens.store import Part, ResultsDir

if TYPE_CHECKING:
    from shiftlens.models import ModelSpec


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
    net_stride: int | None = None
    """The network's total downsampling in pixels; None where it could not be measured."""
    patch: Patch | None = None
    """The patch itself, for analyses that need its provenance (e.g. its manifest's ImageNet classes)."""
    states: dict[str, CrossPartState] = field(default_factory=dict)
    """The cross-part states of this model and size, by analysis name (`Analysis.cross_part`)."""


class Analysis:
    name: ClassVar[str] = ""
    needs_features: ClassVar[bool] = False
    """True when `finish` needs the (n*n, D) features of every layer."""
    streams: ClassVar[bool] = True
    """False for analyses computed from other analyses' parts only (no forward pass of their own)."""
    in_maps: ClassVar[bool] = False
    """True when its part arrays are the maps of maps.zarr (maps.py writes them)."""
    cross_part: ClassVar[type[CrossPartState] | None] = None
    """State across the parts of one model and size (analyses/cross_part.py), or None: every executor creates it,
    feeds it through `ctx.states[name]`, saves and reloads it; `outputs` turns it into tables at the end."""
    part_arrays: ClassVar[tuple[str, ...]] = ()
    """Names every part holds for each analysed layer (`NAME/LAYER/ARRAY`): a stored part lacking one was written
    before the analysis wrote it, so resume recomputes it (`required_arrays`, `ResultsDir.part_state`)."""

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

    @classmethod
    def outputs(cls, results: ResultsDir, parts: list[Part], config: RunConfig) -> AnalysisOutputs | None:
        """Tables, maps.zarr groups and figure data from the parts and the cross-part state's shards; None for an
        analysis whose `tables` say everything."""
        return None

    @classmethod
    def check(cls, plan: "PlanContext") -> list[str]:
        """Before any work: raise ShiftlensError for a run this analysis cannot do, return notes for the user."""
        return []


@dataclass
class PlanContext:
    """What `api.plan` has checked so far, for each selected analysis's `check`."""

    config: RunConfig
    specs: list["ModelSpec"]
    patches: list[Patch]
    positions: dict[int, int]
    """Patch size -> positions per patch."""


ANALYSIS_REGISTRY: dict[str, type[Analysis]] = {}


def required_arrays(analyses: list[str], layers: list[str]) -> dict[str, list[str]]:
    """The array keys each selected analysis's parts must hold for these layers (its `part_arrays`)."""
    return {a: [f"{a}/{layer}/{name}" for layer in layers for name in ANALYSIS_REGISTRY[a].part_arrays]
            for a in analyses if ANALYSIS_REGISTRY[a].part_arrays}


def register_analysis(cls: type[Analysis]) -> type[Analysis]:
    """Register an analysis under its name, one of config.ANALYSES (the names a config may select, checked there
    before this package and torch are imported)."""
    if cls.name not in ANALYSES:
        raise ValueError(f"analysis {cls.name!r} is not in config.ANALYSES ({', '.join(ANALYSES)}): add it there, in "
                         "the paper's order, so that a config can select it")
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
