"""Experiment 2: can a linear SVM tell left from right and top from bottom in one patch's features? (Tables 3/4)

Per patch, layer, protocol and task the five fold accuracies are stored in the part; the tables average over patches
the per-patch mean and the per-patch std (ddof=0) of the fold accuracies, as the paper's tables do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses import svm
from shiftlens.analyses.base import PART_COLUMNS, Analysis, Part, register_analysis
from shiftlens.analyses.folds import PROTOCOLS, TASKS, task_labels, fold_masks


# `--svm auto`: the solver measured faster on each device. On the 2-core CPU (EfficientNet-Lite0 features, 2 tasks x 5
# folds, identical accuracies) the batched solver took 0.012 s vs libsvm's 0.015 s at 100 positions, 0.04 vs 0.04-0.06 s
# at 361, 0.11 vs 0.33 s at 1,444, 0.30-0.37 vs 3.7-4.3 s at 5,625 and ~1.2 s vs ~27 s at 22,500 (stride 1; see
# `shiftlens bench`): it is the faster one at every size, on both protocols.
# The batched solver fits all folds and tasks of a patch in one set of kernels, which is what a GPU wants.
AUTO_TORCH_MIN_POSITIONS = {"cpu": 0, "cuda": 0}


def auto_solver(device: torch.device, n_positions: int) -> str:
    least = AUTO_TORCH_MIN_POSITIONS.get(device.type)
    return "torch" if least is not None and n_positions >= least else "sklearn"


def cv_accuracies(X: torch.Tensor, n: int, protocol: str, seed: int, solver: str) -> np.ndarray:
    """(T, K) fold accuracies of both tasks for one protocol."""
    labels = task_labels(n)
    masks = fold_masks(labels, protocol, seed)
    standardize = protocol == "shuffled"
    if solver == "auto":
        solver = auto_solver(X.device, X.shape[0])
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
