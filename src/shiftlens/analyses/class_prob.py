"""Class probability: at every position, the softmax probability of the patch's own ImageNet classes.

A scalar per position, read from the model's logits tap (the same forward pass as every other analysis): the part
stores the (n, n) map (`class/class/prob`) and the class set (`class/class/classes`), the table `class_prob` its
mean, min and max per patch. A patch whose category has no ImageNet class set (none in the tables, or a source's
`none = "why"`, docs/patches.md) gets no map, an empty set, and a row that says so instead of a forced set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses.base import Analysis, PlanContext, register_analysis
from shiftlens.errors import ShiftlensError
from shiftlens.models.imagenet_classes import class_indices
from shiftlens.store import Part

NAME = "class"
ARRAY_KEY = f"{NAME}/{NAME}/prob"
CLASSES_KEY = f"{NAME}/{NAME}/classes"
N_CLASSES = 1000
NO_SET = "none: the category has no ImageNet class set"


def patch_classes(ctx) -> list[int] | None:
    """The ImageNet class indices of the context's patch (its provenance, else its category), or None."""
    provenance = ctx.patch.provenance if ctx.patch is not None else None
    return class_indices(ctx.category, provenance, f"patch {ctx.patch_id}") or None


def check_logits(plan: PlanContext, name: str) -> None:
    """Every model must have a logits layer for an analysis of ImageNet class scores."""
    lacking = [s.key for s in plan.specs if s.entry.logits_layer is None]
    if lacking:
        raise ShiftlensError(f"model {lacking[0]} has no logits layer: the {name} analysis needs ImageNet class "
                             f"scores; drop {name} from --analyses or give a model with a logits layer")


def class_set_notes(plan: PlanContext, unmapped_note: bool) -> list[str]:
    """A bad manifest entry fails here, before any work; a source's `none = "why"` (docs/patches.md) is said, and
    with `unmapped_note` the patches without any mapping are counted."""
    lacking_set = [p for p in plan.patches if not class_indices(p.category, p.provenance, f"patch {p.id}")]
    said = {p.category: p.provenance["imagenet_classes_none"] for p in lacking_set
            if "imagenet_classes_none" in p.provenance}
    notes = [f"{cat}: no ImageNet class set ({why}); its class and consistency rows say so" for cat, why in said.items()]
    unmapped = [p.id for p in lacking_set if p.category not in said]
    if unmapped and unmapped_note:
        notes.append(f"class analysis: {len(unmapped)} patch(es) have no ImageNet class mapping, so they get no class "
                     f"map ({', '.join(unmapped[:5])}{', ...' if len(unmapped) > 5 else ''}); add "
                     "\"imagenet_classes\" to their manifest.json entries to include them (docs/patches.md)")
    return notes


@register_analysis
class ClassProb(Analysis):
    name = NAME

    @classmethod
    def check(cls, plan: PlanContext) -> list[str]:
        check_logits(plan, NAME)
        return class_set_notes(plan, unmapped_note=True)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        if ctx.logits_layer is None:
            raise ShiftlensError(f"model {ctx.model} has no logits layer: the class analysis needs ImageNet class scores; "
                                 "drop class from --analyses for this model")
        indices = patch_classes(ctx)
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
            return {CLASSES_KEY: np.zeros(0, np.int16)}
        arr = self.map.view(self.ctx.n, self.ctx.n).cpu().numpy().astype(np.float32)
        if np.isnan(arr).any():
            raise RuntimeError("class probability map incomplete: the stream missed positions")
        return {ARRAY_KEY: arr, CLASSES_KEY: self.indices.cpu().numpy().astype(np.int16)}

    @classmethod
    def tables(cls, parts: list[Part], config) -> dict[str, pd.DataFrame]:
        rows = []
        for p in parts:
            m, classes = p.arrays.get(ARRAY_KEY), p.arrays.get(CLASSES_KEY)
            if m is not None:
                rows.append(p.row(NAME, mean_prob=float(m.mean()), min_prob=float(m.min()), max_prob=float(m.max()),
                                  n_classes=len(classes) if classes is not None else np.nan, classes=""))
            elif classes is not None:  # an empty set: said, not forced
                rows.append(p.row(NAME, mean_prob=np.nan, min_prob=np.nan, max_prob=np.nan, n_classes=0, classes=NO_SET))
        return {"class_prob": pd.DataFrame(rows)} if rows else {}
