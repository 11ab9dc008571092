"""Shift consistency (after Zhang 2019): how often does the top-1 ImageNet class survive a shift of the patch?

Per patch the (n, n) map of top-1 classes (argmax of the model's logits tap) is stored; the table gives the
probability that two positions agree, for neighbours one stride apart (horizontal, vertical, pooled) and for random
pairs of distinct positions (all pairs when there are at most RANDOM_PAIRS, else RANDOM_PAIRS seeded draws), and
how often the top-1 class is one of the patch's ImageNet classes (`p_top1_in_classes`; NaN, with a note, for a
category without a class set).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses.base import Analysis, PlanContext, register_analysis
from shiftlens.analyses.class_prob import NO_SET, check_logits, class_set_notes, patch_classes
from shiftlens.store import PART_COLUMNS, Part
from shiftlens.errors import ShiftlensError

RANDOM_PAIRS = 10_000


@register_analysis
class Consistency(Analysis):
    name = "consistency"

    @classmethod
    def check(cls, plan: PlanContext) -> list[str]:
        check_logits(plan, cls.name)
        return class_set_notes(plan, unmapped_note=False)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        if ctx.logits_layer is None:
            raise ShiftlensError(f"model {ctx.model} has no logits layer: shift consistency needs ImageNet class scores; "
                                 "drop consistency from --analyses for this model")
        self.top1 = torch.full((ctx.n * ctx.n,), -1, dtype=torch.int64, device=ctx.device)
        self.classes = np.asarray(patch_classes(ctx) or [], np.int16)

    @classmethod
    def extra_layers(cls, logits_layer: str | None) -> list[str]:
        return [logits_layer] if logits_layer else []

    def update(self, idx: torch.Tensor, feats: dict[str, torch.Tensor]) -> None:
        self.top1[idx] = feats[self.ctx.logits_layer].argmax(1)

    def finish(self, features=None) -> dict[str, np.ndarray]:
        top1 = self.top1.view(self.ctx.n, self.ctx.n).cpu().numpy()
        if (top1 < 0).any():
            raise RuntimeError("top-1 map incomplete: the stream missed positions")
        layer = self.ctx.logits_layer
        return {f"consistency/{layer}/top1": top1.astype(np.int16), f"consistency/{layer}/classes": self.classes}

    @staticmethod
    def agreement(top1: np.ndarray, seed: int, patch_id: str) -> dict[str, float]:
        h = top1[:, 1:] == top1[:, :-1]
        v = top1[1:, :] == top1[:-1, :]
        flat = top1.ravel()
        n = flat.size
        if n * (n - 1) // 2 <= RANDOM_PAIRS:
            i, j = np.triu_indices(n, k=1)
        else:
            rng = np.random.default_rng([seed, zlib.crc32(patch_id.encode())])
            i = rng.integers(0, n, RANDOM_PAIRS)
            j = (i + rng.integers(1, n, RANDOM_PAIRS)) % n  # a distinct second position
        _, counts = np.unique(flat, return_counts=True)
        return dict(p_neighbour_h=float(h.mean()), p_neighbour_v=float(v.mean()),
                    p_neighbour=float((h.sum() + v.sum()) / (h.size + v.size)), p_random=float((flat[i] == flat[j]).mean()),
                    n_classes=int(counts.size), mode_share=float(counts.max() / n))

    @classmethod
    def per_patch(cls, parts: list[Part], seed: int) -> pd.DataFrame:
        rows = []
        for part in parts:
            for layer in part.layers("consistency"):
                top1, classes = part.get("consistency", layer, "top1"), part.get("consistency", layer, "classes")
                in_classes = float(np.isin(top1, classes).mean()) if classes is not None and classes.size else np.nan
                note = NO_SET if classes is not None and not classes.size else ""
                rows.append(part.row(layer, **cls.agreement(top1, seed, part.patch_id), p_top1_in_classes=in_classes,
                                     classes=note))
        cols = PART_COLUMNS + ["p_neighbour_h", "p_neighbour_v", "p_neighbour", "p_random", "n_classes", "mode_share",
                               "p_top1_in_classes", "classes"]
        return pd.DataFrame(rows, columns=cols)

    @classmethod
    def tables(cls, parts, config) -> dict[str, pd.DataFrame]:
        per_patch = cls.per_patch(parts, config.seed)
        keys = ["model", "layer", "weights", "patch_size"]
        values = ["p_neighbour_h", "p_neighbour_v", "p_neighbour", "p_random", "n_classes", "mode_share",
                  "p_top1_in_classes"]
        summary = per_patch.groupby(keys, sort=False)[values].mean().reset_index()  # the mean of the patches with a set
        summary["n_patches"] = per_patch.groupby(keys, sort=False).size().to_numpy()
        summary["n_patches_with_classes"] = per_patch.groupby(keys, sort=False).p_top1_in_classes.count().to_numpy()
        return {"consistency": summary, "consistency_per_patch": per_patch}
