"""Location probe (after Razavian et al.): how well does a linear map recover the patch centre from the features?

Ridge regression from the features (standardised on the training folds) to the patch centre (x, y) in pixels,
cross-validated with the separability protocols (`paper`: contiguous folds, `shuffled`: seeded shuffled folds).
Features whose training std is below STD_FLOOR x the median std are scaled as if at that floor (plain
standardisation turns a feature that is nearly constant on the training rows into huge values at a test row that
moves it). The ridge penalty is chosen per fold from ALPHAS by exact leave-one-out error on the training rows (as RidgeCV does,
one alpha for both coordinates), solved in closed form through one eigendecomposition per fold. R^2 is computed on
the pooled out-of-fold predictions of all positions (a contiguous test fold alone has almost no spread in y).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from shiftlens.analyses.cross_object import cross_object_table
from shiftlens.analyses.position_scores import position_scores
from shiftlens.analyses.base import Analysis, register_analysis
from shiftlens.store import PART_COLUMNS, Part
from shiftlens.analyses.folds import PROTOCOLS, regression_masks
from shiftlens.analyses.svm import train_scales

ALPHAS = tuple(10.0 ** np.arange(-3, 6.5, 0.5))
STD_FLOOR = 0.01


def ridge_cv_predict(X: torch.Tensor, Y: torch.Tensor, test: np.ndarray) -> torch.Tensor:
    """Out-of-fold ridge predictions (N, 2) for targets Y (N, 2), test masks (K, N)."""
    X = X.to(torch.float64)
    Y = Y.to(X)
    pred = torch.empty_like(Y)
    alphas = torch.tensor(ALPHAS, dtype=X.dtype, device=X.device)
    for mask in torch.as_tensor(test, device=X.device):
        tr = ~mask
        Xtr = X[tr]
        mean = Xtr.mean(0)
        std = 1.0 / train_scales(X, tr.unsqueeze(0))[0]
        # A feature almost constant on the training rows would be blown up at a test row that moves it:
        # floor the std at STD_FLOOR x the median std.
        scale = 1.0 / std.clamp_min(STD_FLOOR * std.median())
        Xs = (Xtr - mean) * scale
        ym = Y[tr].mean(0)
        yc = Y[tr] - ym
        n_tr, d = Xs.shape
        if n_tr <= d:
            lam, U = torch.linalg.eigh(Xs @ Xs.T)  # H = U diag(lam/(lam+a)) U'
            lam = lam.clamp_min(0)
            Uy = U.T @ yc
            shrink = lam.unsqueeze(0) / (lam.unsqueeze(0) + alphas.unsqueeze(1))  # (A, r)
            fitted = torch.einsum("nr,ar,rt->ant", U, shrink, Uy)
            hdiag = torch.einsum("nr,ar->an", U * U, shrink)
        else:
            lam, V = torch.linalg.eigh(Xs.T @ Xs)
            lam = lam.clamp_min(0)
            XV = Xs @ V
            XVy = XV.T @ yc
            inv = 1.0 / (lam.unsqueeze(0) + alphas.unsqueeze(1))
            fitted = torch.einsum("nr,ar,rt->ant", XV, inv, XVy)
            hdiag = torch.einsum("nr,ar->an", XV * XV, inv)
        hdiag = hdiag + 1.0 / n_tr  # the intercept
        loo = ((yc.unsqueeze(0) - fitted) / (1 - hdiag).clamp_min(1e-12).unsqueeze(2)) ** 2
        best = int(loo.sum((1, 2)).argmin())
        a = float(ALPHAS[best])
        Xte = (X[mask] - mean) * scale
        if n_tr <= d:
            coef = U @ ((Uy / (lam + a).unsqueeze(1)))  # dual coefficients
            pred[mask] = Xte @ (Xs.T @ coef) + ym
        else:
            w = V @ (XVy / (lam + a).unsqueeze(1))
            pred[mask] = Xte @ w + ym
    return pred


def centres(ctx) -> np.ndarray:
    """(N, 2) patch centres (x, y) in canvas pixels, row-major."""
    half = ctx.patch_size / 2
    return np.stack([ctx.xs + half, ctx.ys + half], axis=1).astype(np.float64)


CROSS_POSITIONS = 16
"""Positions per part whose features are kept for the cross-object protocol (analyses/cross_object.py)."""


def cross_positions(n_positions: int, seed: int, patch_id: str) -> np.ndarray:
    """The sorted flat indices of the positions a part keeps for the cross-object protocol: drawn from the run's
    seed and the patch id, so each object is seen at its own positions (the probe is tested on positions and objects
    it did not train on) and a recomputed part keeps the same ones."""
    key = int.from_bytes(hashlib.sha256(patch_id.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, key])
    return np.sort(rng.choice(n_positions, size=min(CROSS_POSITIONS, n_positions), replace=False))


def compact(features: np.ndarray) -> np.ndarray:
    """float16 to keep parts small, unless a value does not fit (then float32)."""
    with np.errstate(over="ignore"):  # an overflow is what the check below catches
        half = features.astype(np.float16)
    return half if np.isfinite(half).all() else features.astype(np.float32)


@register_analysis
class Location(Analysis):
    name = "location"
    needs_features = True
    part_arrays = ("target", *(f"{a}_{p}" for p in PROTOCOLS for a in ("pred", "err")), "cross_features",
                   "cross_centres")

    def finish(self, features) -> dict[str, np.ndarray]:
        ctx = self.ctx
        n = ctx.n
        target = centres(ctx)
        out = {}
        for layer in ctx.layers:
            X = features[layer]
            Y = torch.as_tensor(target, device=X.device)
            out[f"location/{layer}/target"] = target.T.reshape(2, n, n).astype(np.float32)
            for protocol in PROTOCOLS:
                pred = ridge_cv_predict(X, Y, regression_masks(n * n, protocol, ctx.config.seed)).cpu().numpy()
                out[f"location/{layer}/pred_{protocol}"] = pred.T.reshape(2, n, n).astype(np.float32)
                out[f"location/{layer}/err_{protocol}"] = np.linalg.norm(pred - target, axis=1).reshape(n, n).astype(np.float32)
            keep = cross_positions(n * n, ctx.config.seed, ctx.patch_id)
            out[f"location/{layer}/cross_features"] = compact(X[torch.as_tensor(keep, device=X.device)].cpu().numpy())
            out[f"location/{layer}/cross_centres"] = target[keep].astype(np.float32)  # (K, 2): x, y
        return out

    scores = staticmethod(position_scores)

    @classmethod
    def per_patch(cls, parts: list[Part]) -> pd.DataFrame:
        rows = []
        for part in parts:
            for layer in part.layers("location"):
                target = part.get("location", layer, "target")
                for protocol in PROTOCOLS:
                    pred = part.get("location", layer, f"pred_{protocol}")
                    if pred is None:
                        continue
                    rows.append(part.row(layer, protocol=protocol, **cls.scores(pred, target)))
        return pd.DataFrame(rows, columns=PART_COLUMNS + ["protocol", "r2_x", "r2_y", "mae_px", "dist_px"])

    @classmethod
    def tables(cls, parts, config) -> dict[str, pd.DataFrame]:
        per_patch = cls.per_patch(parts)
        keys = ["model", "layer", "weights", "patch_size", "protocol"]
        summary = (per_patch.groupby(keys, sort=False)
                   .agg(r2_x=("r2_x", "mean"), r2_y=("r2_y", "mean"), mae_px=("mae_px", "mean"),
                        dist_px=("dist_px", "mean"), n_patches=("r2_x", "count"))
                   .reset_index())

        return {"location": summary, "location_per_patch": per_patch,
                "location_cross_object": cross_object_table(parts)}
