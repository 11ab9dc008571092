"""Experiment 1: cosine similarity of every position's feature to the five anchors, computed while streaming.

Tables 1 and 2: per patch, the mean of each anchor's map over all positions (anchor included); then the mean and
the std (ddof=0) of those per-patch means across patches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses.base import ANCHORS, Analysis, register_analysis
from shiftlens.store import PART_COLUMNS, Part


def cosine(feats: torch.Tensor, anchor_feats: torch.Tensor) -> torch.Tensor:
    """(B, D) x (A, D) -> (B, A) cosine similarity in float32.

    Identical vectors give exactly 1, two zero vectors 1, one zero vector 0: no NaN, and a feature that cannot
    depend on position gives a map of exactly 1.
    """
    f = feats.float()
    a = anchor_feats.float()
    fn = torch.linalg.vector_norm(f, dim=1, keepdim=True)
    an = torch.linalg.vector_norm(a, dim=1, keepdim=True)
    sim = (f / fn.clamp_min(1e-30)) @ (a / an.clamp_min(1e-30)).T
    sim = sim.clamp(-1.0, 1.0)
    f_zero, a_zero = fn == 0, (an == 0).T
    sim = torch.where(f_zero | a_zero, (f_zero & a_zero).float(), sim)
    equal = torch.stack([(f == a[j]).all(dim=1) for j in range(a.shape[0])], dim=1)
    return torch.where(equal, torch.ones_like(sim), sim)


@register_analysis
class Similarity(Analysis):
    name = "similarity"
    in_maps = True

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        n = ctx.n
        self.anchor_idx = torch.tensor([ctx.anchors[a] for a in ANCHORS], device=ctx.device)
        self.anchor_feats: dict[str, torch.Tensor] = {}
        self.maps = {layer: torch.full((len(ANCHORS), n * n), float("nan"), device=ctx.device) for layer in ctx.layers}

    def update(self, idx: torch.Tensor, feats: dict[str, torch.Tensor]) -> None:
        if not self.anchor_feats:
            # The stream puts the anchors first, so their features come from this very batch.
            pos = {int(i): k for k, i in enumerate(idx.tolist())}
            rows = [pos[int(a)] for a in self.anchor_idx.tolist()]
            self.anchor_feats = {layer: feats[layer][rows] for layer in self.ctx.layers}
        for layer in self.ctx.layers:
            self.maps[layer][:, idx] = cosine(feats[layer], self.anchor_feats[layer]).T

    def finish(self, features=None) -> dict[str, np.ndarray]:
        n = self.ctx.n
        out = {}
        for layer, m in self.maps.items():
            arr = m.view(len(ANCHORS), n, n).cpu().numpy()
            if np.isnan(arr).any():
                raise RuntimeError("similarity map incomplete: the stream missed positions")
            out[f"similarity/{layer}/maps"] = arr.astype(np.float32)
        return out

    @classmethod
    def per_patch(cls, parts: list[Part]) -> pd.DataFrame:
        rows = []
        for part in parts:
            for layer in part.layers("similarity"):
                maps = part.get("similarity", layer, "maps")
                for a, name in enumerate(ANCHORS):
                    rows.append(part.row(layer, anchor=name, mean=float(maps[a].astype(np.float64).mean())))
        return pd.DataFrame(rows, columns=PART_COLUMNS + ["anchor", "mean"])

    @classmethod
    def tables(cls, parts, config) -> dict[str, pd.DataFrame]:
        per_patch = cls.per_patch(parts)
        keys = ["model", "layer", "weights", "patch_size", "anchor"]
        summary = (
            per_patch.groupby(keys, sort=False)["mean"]
            .agg(mean="mean", std=lambda s: float(np.std(s.to_numpy(), ddof=0)), n_patches="count")
            .reset_index()
        )
        return {"similarity": summary, "similarity_per_patch": per_patch}
