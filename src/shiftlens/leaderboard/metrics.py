"""The leaderboard's numbers, read from each model's own run tables (never recomputed from features).

One row per model, tapped layer and weights. Each metric is the mean of the matching rows of one table of that
model's results folder (over patch sizes, and anchors or tasks where the table has them), so every number traces
back to a CSV in `models/KEY/tables/`. Definitions and directions: docs/leaderboard.md; `METRICS` holds them for
the table, the site's column titles and the ranks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from shiftlens.analyses.invariance import grid_share_blocker, tau_column
from shiftlens.analyses.arithmetic.record import ArithmeticRecord
from shiftlens.errors import ShiftlensError
from shiftlens.store import ResultsDir, RunRecord

GLOBAL_TAU = 0.90
CROSS_OBJECT = "location_cross_object"
"""The table of the location analysis's cross-object protocol; `cross_object_location_error_px` is its linear
(ridge) probe's median error, the yardstick a decoder is held to (NaN for a run of one object: no other object to
test on)."""

Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Literal["higher", "lower", "neither"]
    """Which way is more shift-invariant: ranks give rank 1 to that end (`neither`: not a measure of invariance,
    shown beside the others, never ranked)."""
    definition: str
    value: Callable[[Tables, Tables, "RowKey"], float]
    ranked: bool = True


@dataclass(frozen=True)
class RowKey:
    model: str
    layer: str
    weights: str
    logits_layer: str | None


def _rows(tables: Tables, name: str, key: RowKey, layer: str | None = None, **where: str) -> pd.DataFrame:
    df = tables.get(name)
    if df is None or df.empty:
        return pd.DataFrame()
    keep = (df["model"] == key.model) & (df["layer"].astype(str) == (layer or key.layer)) & (df["weights"] == key.weights)
    for col, val in where.items():
        keep &= df[col] == val
    return df[keep]


def _mean(df: pd.DataFrame, *cols: str) -> float:
    if df.empty:
        return float("nan")
    return float(df[list(cols)].to_numpy(np.float64).mean())


def _measured_mean(df: pd.DataFrame, col: str) -> float:
    """The mean over the rows that have a number (NaN when none has): the grid share over the patch sizes where
    it can be measured (`grid_share_note` names the others)."""
    if df.empty or df[col].isna().all():
        return float("nan")
    return float(np.nanmean(df[col].to_numpy(np.float64)))


def _consistency(tables: Tables, key: RowKey) -> float:
    if key.logits_layer is None:
        return float("nan")
    return _mean(_rows(tables, "consistency", key, layer=key.logits_layer), "p_random")


METRICS: list[Metric] = [
    Metric("global_invariance", "higher",
           f"share of positions whose feature keeps cosine similarity >= {GLOBAL_TAU:.2f} to the anchor's (similarity "
           f"maps; invariance table, {tau_column(GLOBAL_TAU)}, mean over anchors and patch sizes)",
           lambda mv, ci, k: _mean(_rows(mv, "invariance", k), tau_column(GLOBAL_TAU))),
    Metric("local_change", "lower",
           "mean |change| of the similarity between neighbouring positions one stride apart (invariance table, "
           "mean of local_dx and local_dy): small = smooth maps",
           lambda mv, ci, k: _mean(_rows(mv, "invariance", k), "local_dx", "local_dy")),
    Metric("grid_share", "lower",
           "share of the detrended similarity map's energy periodic with the network's measured total stride "
           "(aliasing; invariance table, mean over the patch sizes where it can be measured); empty where it "
           "cannot be: the net stride is unknown, or the run's --stride does not sample each period at 2+ phases "
           "(e.g. stride 32 on a 32 px net stride) or the map holds under 3 periods: grid_share_note says which",
           lambda mv, ci, k: _measured_mean(_rows(mv, "invariance", k), "grid_share")),
    Metric("location_r2", "lower",
           "R^2 of a ridge probe from the features to the patch centre, shuffled folds (location table, mean of "
           "r2_x and r2_y): 1 = position fully decodable",
           lambda mv, ci, k: _mean(_rows(mv, "location", k, protocol="shuffled"), "r2_x", "r2_y")),
    Metric("location_error_px", "higher",
           "mean distance in px between the probe's predicted and the true patch centre, shuffled folds (location "
           "table, dist_px)",
           lambda mv, ci, k: _mean(_rows(mv, "location", k, protocol="shuffled"), "dist_px")),
    Metric("cross_object_location_error_px", "higher",
           "median location error in px of a linear (ridge) probe trained on other objects and tested on unseen "
           f"ones ({CROSS_OBJECT} table, mean over sizes of median_dist_px): how much position a layer keeps "
           "whatever the object is",
           lambda mv, ci, k: _mean(_rows(mv, CROSS_OBJECT, k, probe="ridge"), "median_dist_px")),
    Metric("separability", "lower",
           "linear SVM accuracy telling left from right and top from bottom within one patch's positions, shuffled "
           "folds (separability table, mean acc_mean of both tasks): 0.5 = chance",
           lambda mv, ci, k: _mean(_rows(mv, "separability", k, protocol="shuffled"), "acc_mean")),
    Metric("canvas_consistency", "higher",
           "probability that two random positions of the patch on the canvas get the same top-1 ImageNet class "
           "(consistency table, p_random, of the model's logits layer)",
           lambda mv, ci, k: _consistency(mv, k)),
    Metric("circular_consistency", "higher",
           "the same for circular shifts of the whole canvas (a second run with --shift circular, consistency "
           "only): exactly 1 for APS networks",
           lambda mv, ci, k: _consistency(ci, k)),
    Metric("arithmetic_remove_top1", "neither",
           "feature arithmetic: share of `remove` problems whose result f(A+B) - f(B) + f(blank) retrieves A's true "
           "position first among A at every grid position (top-1; arithmetic/KEY/tables/arithmetic.csv, "
           "top1_accuracy, of the model's `shiftlens arithmetic` benchmark run). It needs position in the "
           "features, linearly: information beside the invariance metrics, not one of them, so not ranked",
           lambda mv, ci, k: _arithmetic(mv, k, "remove"), ranked=False),
    Metric("arithmetic_add_top1", "neither",
           "the same for `add` problems: f(A) + f(B) - f(blank) retrieves the pair's scene at B's true position",
           lambda mv, ci, k: _arithmetic(mv, k, "add"), ranked=False),
]
MOVE_TABLES = ("invariance", "location", CROSS_OBJECT, "separability", "consistency")
CIRCULAR_TABLES = ("consistency",)
ARITHMETIC_TABLES = ("arithmetic",)


def _arithmetic(tables: Tables, key: RowKey, kind: str) -> float:
    return _mean(_rows(tables, "arithmetic", key, kind=kind), "top1_accuracy")


def read_tables(folder: Path, names: tuple[str, ...], kind: type = RunRecord) -> tuple[Any, Tables]:
    """A finished run folder's record and tables, each checked against the sha256 run.json records."""
    rd = ResultsDir(folder)
    record = rd.read_run(kind)
    if record is None or record.status != "complete":
        raise ShiftlensError(f"{folder} holds no finished run: run `shiftlens leaderboard` again to finish it")
    return record, {n: pd.read_csv(io.StringIO(rd.checked_table(record, n))) for n in names if n in record.tables}


def model_rows(folder: Path, circular: Path | None, site: str, arithmetic: Path | None = None) -> pd.DataFrame:
    """The leaderboard rows of one model: one per tapped layer and weights of its run. The arithmetic columns come
    from `arithmetic`'s tables/arithmetic.csv (a `shiftlens arithmetic` folder), read in beside the run's tables."""
    record, move = read_tables(folder, MOVE_TABLES)
    circ = read_tables(circular, CIRCULAR_TABLES)[1] if circular is not None else {}
    if arithmetic is not None:
        move.update(read_tables(arithmetic, ARITHMETIC_TABLES, ArithmeticRecord)[1])
    rows = []
    for key_name, m in record.models.items():
        for layer in m.layers:
            weights = m.weights.label
            key = RowKey(key_name, layer, weights, _logits_layer(move, key_name))
            row = {"model": key_name, "layer": layer, "weights": weights, "untrained": m.weights.untrained,
                   "weights_source": m.weights.source,
                   "net_stride": m.net_stride, "folder": str(folder.name), "site": site}
            row.update({metric.name: metric.value(move, circ, key) for metric in METRICS})
            row["grid_share_note"] = grid_share_note(record, m.net_stride)
            rows.append(row)
    return pd.DataFrame(rows)


def grid_share_note(record: RunRecord, net_stride: int | None) -> str:
    """Why the run's grid share is missing at some or all of its patch sizes ('' when it is measured at every
    size): the invariance analysis's own rule (`grid_share_blocker`), applied to the run's stride and map sides."""
    stride = record.config.stride
    reasons: dict[str, list[int]] = {}
    for size in record.config.sizes:
        n = int(round(np.sqrt(record.positions[size])))
        reason = grid_share_blocker(n, stride, net_stride)
        if reason is not None:
            reasons.setdefault(reason, []).append(size)
    if len(reasons) == 1 and sum(map(len, reasons.values())) == len(record.config.sizes):
        return next(iter(reasons))
    return "; ".join(f"left out at {', '.join(f'{s} px' for s in sizes)}: {reason}" for reason, sizes in reasons.items())


def _logits_layer(move: Tables, model: str) -> str | None:
    """The layer the consistency table names for this model (its logits tap)."""
    df = move.get("consistency")
    if df is None or df.empty:
        return None
    layers = df.loc[df["model"] == model, "layer"].astype(str).unique()
    return layers[0] if len(layers) else None


def rank(df: pd.DataFrame) -> pd.DataFrame:
    """One rank per ranked metric (1 = most invariant, ties share the best rank), trained and untrained rows ranked
    apart, and `rank_mean`, the mean of a row's ranks over the metrics it has (as model-vs-human ranks models)."""
    df = df.copy()
    ranks = []
    for metric in METRICS:
        if not metric.ranked:
            continue
        col = f"rank_{metric.name}"
        df[col] = df.groupby("untrained")[metric.name].rank(method="min", ascending=metric.direction == "lower")
        ranks.append(col)
    df["rank_mean"] = df[ranks].mean(axis=1, skipna=True)
    return df.sort_values(["untrained", "rank_mean"], kind="stable").reset_index(drop=True)
