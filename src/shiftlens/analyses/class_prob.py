"""Class probability: at every position, the softmax probability of the patch's own ImageNet classes.

A scalar per position, read from the model's logits tap (the same forward pass as every other analysis): the part
stores the (n, n) map (`class/class/prob`), the table `class_prob` its mean, min and max per patch. Patches whose
category has no ImageNet mapping get no map (the run says which, before any work).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses.base import Analysis, register_analysis
from shiftlens.errors import ShiftlensError
from shiftlens.models.imagenet_classes import class_indices
from shiftlens.store import Part

NAME = "class"
ARRAY_KEY = f"{NAME}/{NAME}/prob"
N_CLASSES = 1000


@register_analysis
class ClassProb(Analysis):
    name = NAME

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        if ctx.logits_layer is None:
            raise ShiftlensError(f"model {ctx.model} has no logits layer: the class analysis needs ImageNet class scores; "
                                 "drop class from --analyses for this model")
        provenance = ctx.patch.provenance if ctx.patch is not None else None
        indices = class_indices(ctx.category, provenance, f"patch {ctx.patch_id}")
        self.indices = torch.as_tensor(indices, device=ctx.device) if indices else None
        self.map = torch.full((ctx.n * ctx.n,), float("nan"), device=ctx.device)

    @classmethod
    def extra_layers(cls, logits_layer: str | None) -> list[str]:
        return [logits_layer] if logits_layer else []

    def update(self, idx: torch.Tensor, feats: dict[str, torch.Tensor]) -> None:
        if self.indices is None:
            return
        logits = feats[self.ctx.logits_layer]
        if logits.shape[1] != N_CLASSES:
            raise ShiftlensError(f"the class analysis needs {N_CLASSES} ImageNet class scores, model {self.ctx.model} "
                                 f"gives {logits.shape[1]}: drop class from --analyses for this model")
        self.map[idx] = torch.softmax(logits.float(), dim=1)[:, self.indices].sum(dim=1)

    def finish(self, features=None) -> dict[str, np.ndarray]:
        if self.indices is None:
            return {}
        arr = self.map.view(self.ctx.n, self.ctx.n).cpu().numpy().astype(np.float32)
        if np.isnan(arr).any():
            raise RuntimeError("class probability map incomplete: the stream missed positions")
        return {ARRAY_KEY: arr}

    @classmethod
    def tables(cls, parts: list[Part], config) -> dict[str, pd.DataFrame]:
        rows = [p.row(NAME, mean_prob=float(m.mean()), min_prob=float(m.min()), max_prob=float(m.max()))
                for p in parts if (m := p.arrays.get(ARRAY_KEY)) is not None]
        return {"class_prob": pd.DataFrame(rows)} if rows else {}
