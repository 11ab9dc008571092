"""tables/arithmetic_per_problem.csv (one row per model, layer, problem) and tables/arithmetic.csv (per model, layer,
weights and problem kind: top-1 retrieval accuracy, median pixel error, mean cosines and the gain)."""

from __future__ import annotations

import pandas as pd

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
    return out.reset_index()
