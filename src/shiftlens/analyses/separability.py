"""Experiment 2: can a linear SVM tell left from right and top from bottom in one patch's features? (Tables 3/4)

Per patch, layer, protocol and task the five fold accuracies are stored in the part; the tables average over patches
the per-patch mean and the per-patch std (ddof=0) of the fold accuracies, as the paper's tables do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses import svm
from shiftlens.analyses.base import Analysis, register_analysis
from shiftlens.store import PART_COLUMNS, Part
from shiftlens.analyses.folds import PROTOCOLS, TASKS, task_labels, fold_masks


def cv_accuracies(X: torch.Tensor, n: int, protocol: str, seed: int, solver: str) -> np.ndarray:
    """(T, K) fold accuracies of both tasks for one protocol.

    `solver`: "auto" and "torch" are the batched solver (`svm.fit_predict_cv`: every task and fold of the patch in
    one batch, on the features' device); "sklearn" is the reference, `SVC(kernel='linear')` one problem at a time.
    Both minimise the same objective; their speeds are compared in docs/performance.md.
    """
    labels = task_labels(n)
    masks = fold_masks(labels, protocol, seed)
    standardize = protocol == "shuffled"
    if solver == "sklearn":
        return svm.sklearn_cv(X.cpu().numpy(), labels, masks, C=1.0, standardize=standardize)
    acc = svm.fit_predict_cv(X, torch.as_tensor(labels, device=X.device), torch.as_tensor(masks, device=X.device),
                             C=1.0, standardize=standardize)
    return acc.cpu().numpy()


@register_analysis
class Separability(Analysis):
    name = "separability"
    needs_features = True

    def finish(self, features) -> dict[str, np.ndarray]:
        ctx = self.ctx
        out = {}
        for layer in ctx.layers:
            for protocol in PROTOCOLS:
                acc = cv_accuracies(features[layer], ctx.n, protocol, ctx.config.seed, ctx.config.svm)
                out[f"separability/{layer}/acc_{protocol}"] = acc.astype(np.float32)
        return out

    @classmethod
    def per_patch(cls, parts: list[Part]) -> pd.DataFrame:
        rows = []
        for part in parts:
            for layer in part.layers("separability"):
                for protocol in PROTOCOLS:
                    acc = part.get("separability", layer, f"acc_{protocol}")
                    if acc is None:
                        continue
                    for t, task in enumerate(TASKS):
                        folds = acc[t].astype(np.float64)
                        rows.append(part.row(layer, protocol=protocol, task=task, acc_mean=float(folds.mean()),
                                             acc_std=float(folds.std(ddof=0))))
        return pd.DataFrame(rows, columns=PART_COLUMNS + ["protocol", "task", "acc_mean", "acc_std"])

    @classmethod
    def tables(cls, parts, config) -> dict[str, pd.DataFrame]:
        per_patch = cls.per_patch(parts)
        keys = ["model", "layer", "weights", "patch_size", "protocol", "task"]
        summary = (per_patch.groupby(keys, sort=False)
                   .agg(acc_mean=("acc_mean", "mean"), acc_std=("acc_std", "mean"), n_patches=("acc_mean", "count"))
                   .reset_index())
        return {"separability": summary, "separability_per_patch": per_patch}
