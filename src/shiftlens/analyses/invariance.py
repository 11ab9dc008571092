"""Numbers for what the paper reads off its similarity heatmaps: global and local invariance, grid pattern, anisotropy.

Computed from the similarity analysis' stored maps (no forward pass of its own), per model, layer, patch size,
patch and anchor; the table averages each number over patches. Definitions (S = one n x n map, s = stride in px):

- frac_ge_T: share of positions with S >= T (global invariance), for T in TAUS.
- local_dx, local_dy: mean |S[i, j+1] - S[i, j]| and mean |S[i+1, j] - S[i, j]| (neighbours one stride apart).
- grid_share: share of the detrended map's energy in the component periodic with the network's total stride
  (its `net_stride` in pixels, which includes the harmonics at half and a quarter of it): see `grid_share`. Left
  out (NaN) for a network whose stride could not be measured, and where the grid cannot see the period
  (`grid_share_blocker`: e.g. --stride 32 samples a 32 px net stride once per period).
- drop_h, drop_v: mean similarity lost per pixel of shift along the anchor's row / column,
  mean over j != c of (S[a] - S[r, j]) / (|j - c| s); anisotropy = drop_h / drop_v.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shiftlens.analyses.base import ANCHORS, Analysis, PlanContext, register_analysis
from shiftlens.store import Part
from shiftlens.errors import ShiftlensError

TAUS = (0.80, 0.90, 0.95, 0.99)
def tau_column(tau: float) -> str:
    return f"frac_ge_{tau:.2f}"


def _moving_average(m: np.ndarray, period: int, axis: int) -> np.ndarray:
    """Centred 2 x `period` moving average (weights 1/2, 1, ..., 1, 1/2 over period + 1 samples), valid part only:
    it removes any component with exactly that period and keeps smooth trends."""
    k = np.ones(period + 1) / period
    k[0] = k[-1] = 0.5 / period
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), axis, m)


def grid_share_blocker(n: int, stride: int, period_px: int | None) -> str | None:
    """Why `grid_share` cannot be measured on an n x n map sampled every `stride` px, or None when it can.

    A pattern with a period of `period_px` px is seen only when the grid samples each period at 2+ phases (the
    stride divides the period into P >= 2 samples) and the map's valid region after the 2 x P detrending holds
    2+ periods (n >= 3P). Sampled once per period (stride = period), every position sits at the same phase of
    the network's downsampling grid, so the grid pattern folds into the constant and is invisible, not absent.
    """
    if period_px is None:
        return "the network's total stride is unknown"
    if period_px % stride or period_px // stride < 2:
        finer = max(d for d in range(1, period_px // 2 + 1) if period_px % d == 0)
        how = "once per period" if stride == period_px else ("less than twice per period" if stride > period_px // 2
                                                             else "at a step that does not divide it")
        return (f"stride {stride} px samples the network's {period_px} px stride {how}, so its grid pattern cannot "
                f"be seen: use --stride {finer} or another divisor of {period_px} that is at most {period_px // 2}")
    P = period_px // stride
    if n < 3 * P:
        return (f"the {n} x {n} map holds fewer than 3 periods of the {period_px} px net stride ({P} positions each, "
                f"{3 * P} needed per axis): use a larger canvas, smaller patches or a finer stride")
    return None


def grid_share(m: np.ndarray, stride: int, period_px: int | None) -> float:
    """Share of the detrended map's energy explained by a pattern periodic in x and y with `period_px` pixels.

    With P = period_px / stride samples: trend = 2xP moving average along both axes; r = map - trend (valid region);
    grid(i, j) = gx[j mod P] + gy[i mod P], the means of r per column phase and per row phase (each minus mean r);
    grid_share = sum grid^2 / sum (r - mean r)^2. NaN when the period is not a whole number of >= 2 samples or the
    valid region holds fewer than two periods.
    """
    if grid_share_blocker(m.shape[0], stride, period_px) is not None:
        return float("nan")
    P = period_px // stride
    trend = _moving_average(_moving_average(m.astype(np.float64), P, 0), P, 1)
    h = P // 2
    r = m[h : h + trend.shape[0], h : h + trend.shape[1]] - trend
    r = r - r.mean()
    idx = np.arange(r.shape[0]) + h
    phase = idx % P
    gx = np.array([r[:, phase == c].mean() for c in range(P)])
    gy = np.array([r[phase == c, :].mean() for c in range(P)])
    grid = gx[phase][None, :] + gy[phase][:, None]
    total = float((r**2).sum())
    return float((grid**2).sum() / total) if total > 0 else 0.0


def falloff(m: np.ndarray, anchor_rc: tuple[int, int], stride: int) -> tuple[float, float]:
    """Mean similarity lost per pixel of shift along the anchor's row (horizontal) and column (vertical)."""
    r, c = anchor_rc
    n = m.shape[0]
    d = np.abs(np.arange(n) - c) * stride
    keep = d > 0
    drop_h = float(((m[r, c] - m[r, keep]) / d[keep]).mean())
    d = np.abs(np.arange(n) - r) * stride
    keep = d > 0
    drop_v = float(((m[r, c] - m[keep, c]) / d[keep]).mean())
    return drop_h, drop_v


def map_numbers(m: np.ndarray, anchor_rc: tuple[int, int], stride: int, net_stride: int | None) -> dict[str, float]:
    m = m.astype(np.float64)
    out = {tau_column(t): float((m >= t).mean()) for t in TAUS}
    out["local_dx"] = float(np.abs(np.diff(m, axis=1)).mean())
    out["local_dy"] = float(np.abs(np.diff(m, axis=0)).mean())
    out["grid_share"] = grid_share(m, stride, net_stride)
    drop_h, drop_v = falloff(m, anchor_rc, stride)
    out["drop_h"], out["drop_v"] = drop_h, drop_v
    out["anisotropy"] = drop_h / drop_v if drop_v != 0 else float("nan")
    return out


def anchor_rc(n: int) -> dict[str, tuple[int, int]]:
    c = (n - 1) // 2
    return {"TL": (0, 0), "TR": (0, n - 1), "C": (c, c), "BL": (n - 1, 0), "BR": (n - 1, n - 1)}


@register_analysis
class Invariance(Analysis):
    name = "invariance"
    streams = False

    @classmethod
    def check(cls, plan: PlanContext) -> list[str]:
        return [f"{s.key}: grid share left out, its total stride is unknown ({s.entry.net_stride_note})"
                for s in plan.specs if s.entry.net_stride is None]

    @classmethod
    def per_patch(cls, parts: list[Part], stride: int) -> pd.DataFrame:
        rows = []
        for part in parts:
            for layer in part.layers("similarity"):
                maps = part.get("similarity", layer, "maps")
                rc = anchor_rc(maps.shape[-1])
                for a, name in enumerate(ANCHORS):
                    rows.append(part.row(layer, anchor=name, **map_numbers(maps[a], rc[name], stride, part.net_stride)))
        return pd.DataFrame(rows)

    @classmethod
    def tables(cls, parts, config) -> dict[str, pd.DataFrame]:
        if "similarity" not in config.analyses:
            raise ShiftlensError("invariance is computed from the similarity maps: add similarity to --analyses")
        per_patch = cls.per_patch(parts, config.stride)
        if per_patch.empty:
            return {"invariance": per_patch, "invariance_per_patch": per_patch}
        keys = ["model", "layer", "weights", "patch_size", "anchor"]
        values = [c for c in per_patch.columns if c not in keys + ["patch", "category"]]
        summary = per_patch.groupby(keys, sort=False)[values].mean().reset_index()
        summary["n_patches"] = per_patch.groupby(keys, sort=False).size().to_numpy()
        return {"invariance": summary, "invariance_per_patch": per_patch}
