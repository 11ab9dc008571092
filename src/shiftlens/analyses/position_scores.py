"""How well a probe reads an object's position: one scoring rule for the within-patch and cross-object protocols."""

from __future__ import annotations

import numpy as np


def position_scores(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """R^2 per coordinate on pooled out-of-fold predictions; MAE (mean of |dx| and |dy|) and mean distance."""
    p = pred.reshape(2, -1).astype(np.float64)
    t = target.reshape(2, -1).astype(np.float64)
    sst = ((t - t.mean(1, keepdims=True)) ** 2).sum(1)
    r2 = 1 - ((p - t) ** 2).sum(1) / np.where(sst > 0, sst, np.nan)
    return dict(r2_x=float(r2[0]), r2_y=float(r2[1]), mae_px=float(np.abs(p - t).mean()),
                dist_px=float(np.sqrt(((p - t) ** 2).sum(0)).mean()))
