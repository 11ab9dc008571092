"""95% confidence intervals over objects: `tables/intervals.csv`, from the analyses' per-patch tables.

Every number of the summary tables (similarity.csv, separability.csv, ...) is a mean over patches of a per-patch
value. The objects are a sample of the objects the study is about, so each of those means gets a percentile
bootstrap interval with the objects as the unit of resampling: B = RESAMPLES resamples of the n objects drawn with
replacement, the mean of each resample, and the 2.5 % and 97.5 % quantiles of those means (numpy's default linear
interpolation), as `scipy.stats.bootstrap(..., method="percentile")`, which the tests hold it to.

- **Deterministic.** The resamples of n objects are drawn from `default_rng([SEED, n])` with `integers(0, n, (B,
  n))` (scipy's draw), so an interval is a function of the per-patch values and their order alone: the same values
  give the same interval in every run, whatever else the run holds, and every metric of one model, layer, size and
  category is resampled with the same draws (their intervals are paired).
- **Vectorised.** The draws become a (B, n) matrix of counts, and the B resample means of every metric sharing the
  same objects are one matrix product, counts @ values / n.
- **Groups.** Per model, layer, weights and patch size, over all patches (`category` = `all`) and, when the run has
  more than one category, over each category's patches. A patch without a value for a metric (NaN: a grid share
  at an unknown stride, a class share of a category without an ImageNet class set) is left out of that metric and
  the `note` says how many were; with one object there is no interval (NaN, and a note), with none no mean either.

The metrics and the per-patch columns they come from are `SOURCES`; the units shares have no per-patch values (a
unit's position share needs the position means over all patches at once) and the cross-object location probe pools
the objects into folds, so neither has rows here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RESAMPLES = 10_000
SEED = 0
CONFIDENCE = 0.95
ALL = "all"
METHOD = f"percentile bootstrap B={RESAMPLES} seed={SEED}"
KEYS = ["model", "layer", "weights", "patch_size"]
COLUMNS = KEYS + ["metric", "category", "n_objects", "mean", "ci_low", "ci_high", "method", "note"]
ONE_OBJECT = "one object: no interval"
NO_VALUES = "no object has a value"


@dataclass(frozen=True)
class Source:
    """Metrics from one per-patch table: `values` maps a column to the metric's stem, and each value of the `by`
    columns (e.g. the anchor) is appended to it, shortened through `short` where it has an entry; with `stem_last`
    the stem comes after those values (`separability_tb_paper_fold_std`)."""

    table: str
    prefix: str
    values: dict[str, str]
    by: tuple[str, ...] = ()
    short: tuple[tuple[str, str], ...] = ()
    stem_last: bool = False

    def metric(self, stem: str, by_values: tuple) -> str:
        short = dict(self.short)
        words = [short.get(str(v), str(v)) for v in by_values]
        stem_words = [stem] if stem else []
        return "_".join([self.prefix, *(words + stem_words if self.stem_last else stem_words + words)])


_TASKS = (("left_right", "lr"), ("top_bottom", "tb"))
SOURCES = (
    Source("similarity_per_patch", "similarity", {"mean": ""}, ("anchor",)),
    Source("separability_per_patch", "separability", {"acc_mean": "", "acc_std": "fold_std"}, ("task", "protocol"),
           _TASKS, stem_last=True),
    Source("location_per_patch", "location", {"dist_px": "dist_px", "mae_px": "mae_px", "r2_x": "r2_x",
                                              "r2_y": "r2_y"}, ("protocol",)),
    Source("invariance_per_patch", "invariance",
           {c: c for c in ("frac_ge_0.80", "frac_ge_0.90", "frac_ge_0.95", "frac_ge_0.99", "local_dx", "local_dy",
                           "grid_share", "drop_h", "drop_v", "anisotropy")}, ("anchor",)),
    Source("consistency_per_patch", "consistency",
           {c: c for c in ("p_neighbour_h", "p_neighbour_v", "p_neighbour", "p_random", "n_classes", "mode_share",
                           "p_top1_in_classes")}),
    Source("class_prob", "class_prob", {"mean_prob": "mean", "min_prob": "min", "max_prob": "max"}),
)
"""Which per-patch table feeds which metrics, in the paper's order. A metric's name is prefix, stem, then the `by`
values, joined by underscores: `similarity_TL`, `separability_tb_paper`, `separability_tb_paper_fold_std`,
`location_dist_px_shuffled`, `invariance_frac_ge_0.95_C`, `consistency_p_neighbour`, `class_prob_mean`."""


def per_patch_values(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long per-patch values: KEYS, patch, category, metric, value (float64; NaN where a patch has none), in the
    order of SOURCES and of each table's rows (the config's order)."""
    frames = []
    for source in SOURCES:
        df = tables.get(source.table)
        if df is None or df.empty:
            continue
        cols = [c for c in source.values if c in df.columns]
        if not cols or any(c not in df.columns for c in KEYS + ["patch", "category", *source.by]):
            continue
        by = list(source.by)
        for col in cols:
            qualifiers = list(zip(*(df[b] for b in by))) if by else [()] * len(df)
            names = [source.metric(source.values[col], q) for q in qualifiers]
            frames.append(pd.DataFrame({**{k: df[k].to_numpy() for k in KEYS}, "patch": df["patch"].to_numpy(),
                                        "category": df["category"].to_numpy(), "metric": names,
                                        "value": pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)}))
    if not frames:
        return pd.DataFrame(columns=KEYS + ["patch", "category", "metric", "value"])
    long = pd.concat(frames, ignore_index=True)
    # the metrics of one model, layer, weights and size together (in the order they first appear)
    group = long.groupby(KEYS, sort=False).ngroup()
    return long.iloc[np.argsort(group.to_numpy(), kind="stable")].reset_index(drop=True)


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) float64: how often each of n objects is drawn in each resample (scipy.stats.bootstrap's draw:
    `rng.integers(0, n, (resamples, n))` from `default_rng([seed, n])`)."""
    idx = np.random.default_rng([seed, n]).integers(0, n, (resamples, n))
    flat = idx + (np.arange(resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def bootstrap_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(m, B) resample means of the columns of `values` (n, m), every value finite: one row per column, so the
    quantiles below run along contiguous memory."""
    return values.T @ counts.T / values.shape[0]


def percentile_interval(values: np.ndarray, counts: np.ndarray | None = None,
                        confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval of the mean of each column of `values` (n, m), n >= 2, all finite."""
    n = values.shape[0]
    counts = resample_counts(n) if counts is None else counts
    alpha = (1 - confidence) / 2
    low, high = np.quantile(bootstrap_means(values, counts), [alpha, 1 - alpha], axis=1)
    # a metric every object shares has that value as its interval (the product may round a hair off it)
    lo_v, hi_v = values.min(0), values.max(0)
    return np.clip(low, lo_v, hi_v), np.clip(high, lo_v, hi_v)


class _Counts(dict):
    def __missing__(self, n: int) -> np.ndarray:
        self[n] = resample_counts(n)
        return self[n]


def intervals(long: pd.DataFrame) -> pd.DataFrame:
    """`intervals.csv` from long per-patch values (`per_patch_values`, its rows of one model, layer, weights and
    size together): per model, layer, weights and size, one row per metric and category (`all`, then each
    category when there is more than one), metrics in their order of appearance."""
    if long.empty:
        return pd.DataFrame(columns=COLUMNS)
    categories = list(dict.fromkeys(long["category"].tolist()))
    counts = _Counts()
    gid = long.groupby(KEYS, sort=False).ngroup().to_numpy()
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    ends = np.r_[starts[1:], len(gid)]
    patch, metric, category, value = (long[c].to_numpy() for c in ("patch", "metric", "category", "value"))
    rows = []
    for s, e in zip(starts, ends):
        key = {k: long[k].iat[s] for k in KEYS}
        p_codes, p_names = pd.factorize(patch[s:e])  # in order of appearance: the config's
        m_codes, m_names = pd.factorize(metric[s:e])
        wide = np.full((len(p_names), len(m_names)), np.nan)
        wide[p_codes, m_codes] = value[s:e].astype(np.float64)
        _, first = np.unique(p_codes, return_index=True)
        patch_category = category[s:e][first]
        subsets = [(ALL, np.ones(len(p_names), bool))]
        if len(categories) > 1:
            subsets += [(c, patch_category == c) for c in categories if (patch_category == c).any()]
        results = [(c, _summary(wide[members], counts)) for c, members in subsets]
        for j, name in enumerate(m_names):
            for c, (n, mean, low, high, notes) in results:
                rows.append(dict(**key, metric=name, category=c, n_objects=int(n[j]), mean=float(mean[j]),
                                 ci_low=float(low[j]), ci_high=float(high[j]), method=METHOD, note=notes[j]))
    return pd.DataFrame(rows, columns=COLUMNS)


def _summary(values: np.ndarray, counts: _Counts) -> tuple[np.ndarray, ...]:
    """Per column of `values` (objects, metrics; NaN = no value): objects with a value, mean, interval and note.
    Metrics with a value for the same objects share one matrix product."""
    finite = np.isfinite(values)
    m = values.shape[1]
    n, mean, low, high = np.zeros(m, int), np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan)
    notes = [""] * m
    patterns: dict[bytes, list[int]] = {}
    for j in range(m):
        patterns.setdefault(finite[:, j].tobytes(), []).append(j)
    for pattern, cols in patterns.items():
        keep = np.frombuffer(pattern, dtype=bool)
        v = values[keep][:, cols]
        k = v.shape[0]
        left_out = values.shape[0] - k
        note = f"{left_out} object(s) without a value left out" if left_out and k else ""
        n[cols] = k
        if k == 0:
            note = NO_VALUES
        elif k == 1:
            mean[cols] = v[0]
            note = "; ".join(filter(None, [ONE_OBJECT, note]))
        else:
            mean[cols] = np.clip(v.mean(0), v.min(0), v.max(0))
            low[cols], high[cols] = percentile_interval(v, counts[k])
        for j in cols:
            notes[j] = note
    return n, mean, low, high, notes


def table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """`tables/intervals.csv` from a run's tables (their per-patch ones), or None when none has per-patch values."""
    long = per_patch_values(tables)
    if long.empty:
        return None
    return intervals(long)
