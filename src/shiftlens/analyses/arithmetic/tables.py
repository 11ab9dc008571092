"""tables/arithmetic_per_problem.csv (one row per model, layer, problem) and tables/arithmetic.csv (per model, layer,
weights and problem kind: top-1 retrieval accuracy, median pixel error, mean cosines and the gain, with 95% intervals
of the top-1 accuracy and the gain over problems)."""

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
