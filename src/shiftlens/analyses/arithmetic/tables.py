"""tables/arithmetic_per_problem.csv (one row per model, layer, problem) and tables/arithmetic.csv (per model, layer,
weights and problem kind: top-1 retrieval accuracy, median pixel error, mean cosines and the gain, with 95% intervals
of the top-1 accuracy and the gain over problems) and tables/arithmetic_layers.csv (each later layer of a model against
its first, paired over the same problems, so "pool keeps more position than fc" is a difference with an interval
rather than two overlapping intervals)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shiftlens.analyses.intervals import METHOD, percentile_interval

IDENTITY = ["model", "layer", "weights", "patch_size"]


def per_problem(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    first = IDENTITY + ["kind", "problem"]
    return df[first + [c for c in df.columns if c not in first]]


def summary(per: pd.DataFrame) -> pd.DataFrame:
    """Aggregates per (model, layer, weights, patch_size, kind), in the per-problem table's order: `n_problems`
    counts each problem once (an expression probed at several objects has a row per probe; the means are over rows)."""
    keys = IDENTITY + ["kind"]
    g = per.groupby(keys, sort=False)
    out = g.agg(n_problems=("problem", "nunique"), top1_accuracy=("top1", "mean"),
                median_pixel_error=("pixel_error", "median"), mean_rank=("rank", "mean"),
                mean_cos_result=("cos_result", "mean"), mean_cos_best_operand=("cos_best_operand", "mean"),
                mean_cos_gain=("cos_gain", "mean"), n_candidates=("n_candidates", "max"))
    return with_intervals(out.reset_index(), per, keys)


INTERVAL_OF = {"top1_accuracy": "top1", "mean_cos_gain": "cos_gain"}
"""Summary column -> per-problem column whose mean over problems gets a percentile bootstrap interval."""


def with_intervals(out: pd.DataFrame, per: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """COLUMN_ci_low / COLUMN_ci_high for each of INTERVAL_OF: the problems are the resampled units (an expression
    probed at several objects counts once, with the mean of its probes), the bootstrap of analyses/intervals.py
    (`ci_method` names it); empty with fewer than two problems."""
    cols = list(INTERVAL_OF.values())
    per_problem_means = per.groupby(keys + ["problem"], sort=False)[cols].mean().reset_index()
    lows = {c: [] for c in INTERVAL_OF}
    highs = {c: [] for c in INTERVAL_OF}
    by_key = {k: g for k, g in per_problem_means.groupby(keys, sort=False)}
    for _, row in out.iterrows():
        g = by_key.get(tuple(row[k] for k in keys))
        values = None if g is None else g[cols].to_numpy(np.float64)
        ok = values is not None and len(values) >= 2 and np.isfinite(values).all()
        low, high = percentile_interval(values) if ok else (np.full(len(cols), np.nan),) * 2
        for i, c in enumerate(INTERVAL_OF):
            lows[c].append(float(low[i]))
            highs[c].append(float(high[i]))
    for c in INTERVAL_OF:
        at = out.columns.get_loc(c) + 1
        out.insert(at, f"{c}_ci_low", lows[c])
        out.insert(at + 1, f"{c}_ci_high", highs[c])
    out["ci_method"] = f"{METHOD}, over problems"
    return out


PAIRED = {"top1": "top1_diff", "rank": "rank_diff", "cos_gain": "cos_gain_diff"}
"""Per-problem column -> arithmetic_layers.csv column: mean over problems of (first layer − other layer)."""


def layer_differences(per: pd.DataFrame) -> pd.DataFrame:
    """Per (model, weights, patch_size, kind) and each layer after the model's first: the mean over problems of the
    first layer's value minus that layer's, with a 95% percentile bootstrap interval whose unit is the problem (both
    layers see the same problems, so the pairing removes the problems' own difficulty). Only problems both layers
    have count; an expression probed at several objects counts once, with the mean of its probes. Positive
    `top1_diff` and `cos_gain_diff`, negative `rank_diff`, favour the first layer."""
    keys = ["model", "weights", "patch_size", "kind"]
    cols = list(PAIRED)
    columns = keys + ["layer_a", "layer_b", "n_problems"] + [
        c for v in PAIRED.values() for c in (v, f"{v}_ci_low", f"{v}_ci_high")] + ["ci_method"]
    if per.empty:
        return pd.DataFrame(columns=columns)
    means = per.groupby(keys + ["layer", "problem"], sort=False)[cols].mean().reset_index()
    rows = []
    for key, g in means.groupby(keys, sort=False):
        layers = list(dict.fromkeys(g["layer"]))
        first = g[g["layer"] == layers[0]].set_index("problem")[cols]
        for other in layers[1:]:
            b = g[g["layer"] == other].set_index("problem")[cols]
            shared = [p for p in first.index if p in b.index]
            d = (first.loc[shared].to_numpy(np.float64) - b.loc[shared].to_numpy(np.float64))
            ok = len(d) >= 2 and np.isfinite(d).all()
            low, high = percentile_interval(d) if ok else (np.full(len(cols), np.nan),) * 2
            row = dict(zip(keys, key)) | dict(layer_a=layers[0], layer_b=other, n_problems=len(shared))
            for i, (c, name) in enumerate(PAIRED.items()):
                mean = float(d[:, i].mean()) if len(d) else float("nan")
                row |= {name: mean, f"{name}_ci_low": float(low[i]), f"{name}_ci_high": float(high[i])}
            rows.append(row | dict(ci_method=f"{METHOD}, paired over problems"))
    return pd.DataFrame(rows, columns=columns)
