"""Copy a finished run's tables into a docs folder and print the findings' Markdown tables, each number with its 95%
confidence interval over objects (tables/intervals.csv, docs/analyses.md).

    python tools/findings.py results/stamps docs/stamps/tables > /tmp/findings.md
    python tools/findings.py runs/stamps-efficientnet_lite0 runs/stamps-efficientnet_lite1 docs/stamps/tables

Several runs (one folder per network) are read as one: their tables are stacked, and each run's copies go to a
folder of its own name under OUT_DIR.

Prints, per model, layer and patch size: Tables 1/2 (similarity to the five anchors) and 3/4 (separability, the
paper's folds and shuffled ones) as "mean [low, high]"; the chosen metrics per category (`--per-category`,
default the similarity to the TL and C anchors); the location probe within and across objects; the invariance
numbers; shift consistency and class probability; the units' shares; and the paper's published cells beside the
run's (paper_comparison.csv where the run measured the paper's networks, else the range of the paper's networks).

A run written before intervals.csv existed gets it computed here from its per-patch tables (their six significant
digits) and written into OUT_DIR with the copies. Every table is read through run.json's digests, so an edited
or truncated CSV is refused. Only the copies and the printed text are written; the run folder is not touched.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path

import pandas as pd

from shiftlens.analyses import intervals as iv
from shiftlens.analyses.base import ANCHORS
from shiftlens.errors import ShiftlensError
from shiftlens.paper import LARGE, MODELS, PUBLISHED, SMALL
from shiftlens.store import ResultsDir

TEXT_COLUMNS = ["model", "layer", "weights", "patch", "category", "anchor", "protocol", "task", "probe", "metric",
                "method", "note", "classes", "table", "paper_model", "measure"]
TABLE_NAMES = {LARGE: ("Table 1", "Table 3"), SMALL: ("Table 2", "Table 4")}


# -- reading -------------------------------------------------------------------------------------------------------
def read_csv(text: str) -> pd.DataFrame:
    """A table as written (`ResultsDir.write_table`): an empty cell is NaN, a text column keeps "NA" or "nan" as
    text (a patch or category may be called that), an empty text cell is ""."""
    df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""],
                     dtype={c: str for c in TEXT_COLUMNS})
    for col in df.columns.intersection(TEXT_COLUMNS):
        df[col] = df[col].fillna("")
    return df


def load(run_dir: Path) -> tuple[dict[str, str], dict[str, pd.DataFrame], bool]:
    """The run's tables as text and as frames, intervals included (computed from the per-patch tables when the run
    predates it; the flag says so)."""
    rd = ResultsDir(run_dir)
    record = rd.read_run()
    if record is None:
        raise ShiftlensError(f"{run_dir} holds no run.json: give a results folder made by `shiftlens run`")
    if getattr(record, "status", "complete") != "complete":
        raise ShiftlensError(f"{run_dir}: the run is not finished (status {record.status!r}); wait for it, or run "
                             "it again to finish it")
    texts = {name: rd.checked_table(record, name) for name in record.tables}
    frames = {name: read_csv(text) for name, text in texts.items()}
    computed = "intervals" not in frames
    if computed:
        table = iv.table(frames)
        if table is not None:
            frames["intervals"] = table
            texts["intervals"] = table.to_csv(index=False, float_format="%.6g")
    return texts, frames, computed


# -- formatting ----------------------------------------------------------------------------------------------------
def digits(metric: str) -> int:
    if "px" in metric:
        return 1
    if "local_d" in metric:
        return 4
    if metric.startswith(("invariance_anisotropy", "consistency_n_classes")):
        return 2
    return 3


def cell(row, metric: str | None = None) -> str:
    """"mean [low, high]"; "mean (n = 1)" without an interval; "–" without a value."""
    if row is None:
        return "–"
    d = digits(metric or row["metric"])
    mean, low, high = row["mean"], row["ci_low"], row["ci_high"]
    if not _finite(mean):
        return "–"
    if not (_finite(low) and _finite(high)):
        return f"{mean:.{d}f} (n = {int(row['n_objects'])})"
    return f"{mean:.{d}f} [{low:.{d}f}, {high:.{d}f}]"


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def plain(v, d: int = 3) -> str:
    if isinstance(v, str):
        return v
    if not _finite(v):
        return "–"
    return f"{float(v):.{d}f}"


class Intervals:
    """Look-ups into intervals.csv by model, layer, size, metric and category."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.index = {(r.model, r.layer, int(r.patch_size), r.metric, r.category): r._asdict()
                      for r in df.itertuples(index=False)}

    def get(self, model: str, layer: str, size: int, metric: str, category: str = iv.ALL) -> dict | None:
        return self.index.get((model, layer, int(size), metric, category))

    def cell(self, model: str, layer: str, size: int, metric: str, category: str = iv.ALL) -> str:
        return cell(self.get(model, layer, size, metric, category), metric)

    def groups(self, prefix: str) -> list[tuple[str, str, str, int]]:
        """(model, layer, weights, size) that have metrics starting with `prefix`, in the table's order."""
        sub = self.df[self.df.metric.str.startswith(prefix)]
        return list(dict.fromkeys(zip(sub.model, sub.layer, sub.weights, sub.patch_size.astype(int))))

    def categories(self) -> list[str]:
        return [c for c in dict.fromkeys(self.df.category) if c != iv.ALL]


def _label(model: str, layer: str, weights: str) -> str:
    return f"{model} {layer}" + ("" if weights == "imagenet" else f" ({weights})")


def _sizes(groups) -> list[int]:
    return sorted({g[3] for g in groups}, key=lambda s: (s not in (LARGE, SMALL), -s))


# -- sections ------------------------------------------------------------------------------------------------------
def similarity_section(I: Intervals) -> list[str]:
    out = []
    groups = I.groups("similarity_")
    for size in _sizes(groups):
        name = TABLE_NAMES.get(size, (f"{size} px",))[0]
        rows = [[_label(m, l, w), *(I.cell(m, l, s, f"similarity_{a}") for a in ANCHORS),
                 str(int(I.get(m, l, s, "similarity_TL")["n_objects"]))]
                for m, l, w, s in groups if s == size]
        out.append(f"**{name}: similarity to the anchors, {size} px** (mean over objects of each object's mean "
                   "cosine similarity [95% CI])\n\n" + markdown(["model, layer", *ANCHORS, "objects"], rows))
    return out


def separability_section(I: Intervals) -> list[str]:
    out = []
    groups = I.groups("separability_")
    header = ["model, layer", "LR (paper)", "TB (paper)", "TB fold std (paper)", "LR (shuffled)", "TB (shuffled)"]
    metrics = ["separability_lr_paper", "separability_tb_paper", "separability_tb_paper_fold_std",
               "separability_lr_shuffled", "separability_tb_shuffled"]
    for size in _sizes(groups):
        name = TABLE_NAMES.get(size, (None, f"{size} px"))[1]
        rows = [[_label(m, l, w), *(I.cell(m, l, s, k) for k in metrics)] for m, l, w, s in groups if s == size]
        out.append(f"**{name}: separability, {size} px** (5-fold linear SVM accuracy, mean over objects [95% CI]; "
                   "fold std = mean over objects of the fold accuracies' std)\n\n" + markdown(header, rows))
    return out


def per_category_section(I: Intervals, metrics: list[str]) -> list[str]:
    cats = I.categories()
    if not cats:
        return ["*Per category*: the run has one category, so intervals.csv has no per-category rows."]
    out = []
    for metric in metrics:
        groups = [g for g in I.groups(metric) if I.get(g[0], g[1], g[3], metric) is not None]
        for size in _sizes(groups):
            cols = [g for g in groups if g[3] == size]
            rows = []
            for cat in [iv.ALL, *cats]:
                first = I.get(cols[0][0], cols[0][1], size, metric, cat)
                n = int(first["n_objects"]) if first else 0
                rows.append([cat, str(n), *(I.cell(m, l, s, metric, cat) for m, l, w, s in cols)])
            out.append(f"**{metric} per category, {size} px** (mean over the category's objects [95% CI])\n\n"
                       + markdown(["category", "objects", *(_label(m, l, w) for m, l, w, _ in cols)], rows))
    return out


def location_section(I: Intervals, frames: dict[str, pd.DataFrame]) -> list[str]:
    out = []
    groups = I.groups("location_")
    metrics = [("location_dist_px_shuffled", "error px (shuffled)"), ("location_dist_px_paper", "error px (paper)"),
               ("location_r2_x_shuffled", "R² x (shuffled)"), ("location_r2_y_shuffled", "R² y (shuffled)"),
               ("location_r2_x_paper", "R² x (paper)"), ("location_r2_y_paper", "R² y (paper)")]
    if groups:
        rows = [[_label(m, l, w), str(s), *(I.cell(m, l, s, k) for k, _ in metrics)] for m, l, w, s in groups]
        out.append("**Location probe within each object** (ridge from the features to the patch centre; error = "
                   "mean Euclidean error in canvas px; mean over objects [95% CI])\n\n"
                   + markdown(["model, layer", "size", *(h for _, h in metrics)], rows))
    cross = frames.get("location_cross_object")
    if cross is not None and not cross.empty:
        probes = list(dict.fromkeys(cross.probe))
        keys = list(dict.fromkeys(zip(cross.model, cross.layer, cross.weights, cross.patch_size.astype(int))))
        rows = []
        # runs written before the paired gain existed have no such column: their table keeps the medians alone
        gains = [p for p in probes if p != "centre"] if "gain_over_centre_px" in cross else []
        for m, l, w, s in keys:
            sub = cross[(cross.model == m) & (cross.layer == l) & (cross.weights == w) & (cross.patch_size == s)]
            by = {r.probe: r for r in sub.itertuples(index=False)}
            first = sub.iloc[0]
            note = "; ".join(n for n in dict.fromkeys(sub.note.astype(str)) if n) if "note" in sub else ""

            def gain(p: str) -> str:
                r = by.get(p)
                if r is None or not math.isfinite(r.gain_over_centre_px):
                    return "–"
                signed = lambda v: "0.0" if abs(v) < 0.05 else f"{v:+.1f}".replace("-", "−")  # noqa: E731
                return (f"{signed(r.gain_over_centre_px)} [{signed(r.gain_over_centre_ci_low)}, "
                        f"{signed(r.gain_over_centre_ci_high)}]")

            rows.append([_label(m, l, w), str(s), *(plain(getattr(by.get(p), "median_dist_px", float("nan")), 1)
                                                    for p in probes), *(gain(p) for p in gains),
                         plain(first.get("n_patches"), 0), note])
        out.append("**Location probe across objects** (grouped folds over objects: median Euclidean error in px of "
                   "each probe; `centre` guesses the training rows' mean centre; "
                   + ("gain = mean over objects of the centre guess's error minus the probe's [95% CI over objects])"
                      if gains else "pooled over objects, no interval)")
                   + "\n\n" + markdown(["model, layer", "size", *probes, *(f"{p} gain" for p in gains), "objects",
                                         "note"], rows))
    return out


def invariance_section(I: Intervals, anchors: tuple[str, ...] = ("C", "TL")) -> list[str]:
    groups = I.groups("invariance_")
    if not groups:
        return []
    metrics = [("frac_ge_0.90", "≥ 0.90"), ("frac_ge_0.95", "≥ 0.95"), ("frac_ge_0.99", "≥ 0.99"),
               ("local_dx", "local dx"), ("local_dy", "local dy"), ("grid_share", "grid share"),
               ("anisotropy", "anisotropy")]
    rows = [[_label(m, l, w), str(s), a, *(I.cell(m, l, s, f"invariance_{k}_{a}") for k, _ in metrics)]
            for m, l, w, s in groups for a in anchors]
    return ["**Invariance numbers** (share of positions with similarity ≥ T to the anchor, mean |difference| "
            "between neighbouring positions, share of the detrended map in the stride's grid pattern, drop_h / "
            "drop_v; mean over objects [95% CI])\n\n"
            + markdown(["model, layer", "size", "anchor", *(h for _, h in metrics)], rows)]


def consistency_section(I: Intervals) -> list[str]:
    cons, probs = I.groups("consistency_"), I.groups("class_prob_")
    if not cons and not probs:
        return []
    # consistency's rows carry the logits layer, class probability's the analysis's name (`class`): one row each
    layer = {(m, w, s): l for m, l, w, s in cons}
    keys = list(dict.fromkeys([(m, w, s) for m, _, w, s in cons + probs]))
    metrics = [("consistency_p_neighbour", "top-1 agrees, neighbours"), ("consistency_p_random", "random pairs"),
               ("consistency_n_classes", "top-1 classes"), ("consistency_p_top1_in_classes", "top-1 in its classes")]
    rows = [[_label(m, layer.get((m, w, s), "logits"), w), str(s),
             *(I.cell(m, layer[(m, w, s)], s, k) if (m, w, s) in layer else "–" for k, _ in metrics),
             I.cell(m, "class", s, "class_prob_mean")] for m, w, s in keys]
    return ["**Shift consistency and class probability** (the logits' top-1 class; P(own classes) = softmax "
            "probability of the object's ImageNet classes, mean over positions; mean over objects [95% CI], the "
            "class numbers over the objects whose category has ImageNet classes)\n\n"
            + markdown(["model, layer", "size", *(h for _, h in metrics), "P(own classes)"], rows)]


def units_section(frames: dict[str, pd.DataFrame]) -> list[str]:
    units = frames.get("units")
    if units is None or units.empty:
        return []
    cols = [("position_share", "position"), ("identity_share", "identity"), ("interaction_share", "interaction"),
            ("position_share_pooled", "position (pooled)"), ("frac_position_dominant", "position-dominant units"),
            ("effective_position_units", "effective position units")]
    rows = [[_label(r["model"], r["layer"], r["weights"]), plain(r["patch_size"], 0), plain(r["n_units"], 0),
             *(plain(r[c], 1 if c == "effective_position_units" else 3) for c, _ in cols if c in units)]
            for _, r in units.iterrows()]
    return ["**Units: where each unit's variance over objects × positions lies** (mean share over live units; "
            "pooled = share of the layer's summed variance; no interval: a share needs every object's position "
            "means at once, there are no per-object values to resample)\n\n"
            + markdown(["model, layer", "size", "units", *(h for c, h in cols if c in units)], rows)]


def _metric_of(measure: str) -> str:
    kind, what = measure.split(" ", 1)
    if kind == "similarity":
        return f"similarity_{what}"
    return "separability_" + {"left_right": "lr", "top_bottom": "tb"}[what] + "_paper"


def paper_section(I: Intervals, frames: dict[str, pd.DataFrame]) -> list[str]:
    comp = frames.get("paper_comparison")
    if comp is not None and not comp.empty:
        rows = []
        for r in comp.itertuples(index=False):
            got = I.get(r.model, r.layer, int(r.patch_size), _metric_of(r.measure))
            inside = ("yes" if got and _finite(got["ci_low"]) and got["ci_low"] <= r.paper_mean <= got["ci_high"]
                      else "no" if got and _finite(got["ci_low"]) else "–")
            paper = plain(r.paper_mean) + (f" ± {plain(r.paper_std)}" if _finite(r.paper_std) else "")
            rows.append([r.table, f"{r.paper_model} {r.layer}", str(int(r.patch_size)), r.measure, paper,
                         cell(got, _metric_of(r.measure)), f"{r.diff:+.3f}", inside])
        return ["**The paper's published cells beside the run's** (paper_comparison.csv; paper mean ± its std over "
                "objects; run mean [95% CI]; inside = the paper's value lies in the run's interval)\n\n"
                + markdown(["table", "network", "size", "measure", "paper", "run", "run − paper", "inside"], rows)]
    # the run measured none of the paper's networks: the paper's range over its networks beside the run's values
    runs = [g for g in I.groups("similarity_") + I.groups("separability_") if g[3] in (LARGE, SMALL)]
    runs = list(dict.fromkeys(runs))
    if not runs:
        return ["*Paper comparison*: the run has neither 75 nor 125 px patches, the paper's sizes."]
    rows = []
    for (table, size, measure), cells in PUBLISHED.groupby(["table", "patch_size", "measure"], sort=False):
        metric = _metric_of(measure)
        here = [g for g in runs if g[3] == size and I.get(g[0], g[1], size, metric) is not None]
        if not here:
            continue
        lo, hi = cells.paper_mean.min(), cells.paper_mean.max()
        paper = plain(lo) if lo == hi else f"{plain(lo)}–{plain(hi)}"
        nets = ", ".join(f"{MODELS.get(m, m)} {l}" for m, l in zip(cells.model, cells.layer)) if len(cells) <= 2 \
            else f"{len(cells)} networks/layers"
        for m, l, w, s in here:
            rows.append([f"Table {table}", str(size), measure, f"{paper} ({nets})", _label(m, l, w),
                         I.cell(m, l, s, metric)])
    return ["**The paper's published cells beside the run's** (the run measured none of the paper's networks, so "
            "paper_comparison.csv is absent: the paper's range over its networks, and each of the run's model and "
            "layer, mean [95% CI])\n\n"
            + markdown(["table", "size", "measure", "paper", "run: model, layer", "run"], rows)]


def findings(frames: dict[str, pd.DataFrame], per_category: list[str]) -> str:
    table = frames.get("intervals")
    if table is None or table.empty:
        raise ShiftlensError("the run has no per-patch tables to give intervals for")
    I = Intervals(table)
    method = str(table.method.iloc[0])
    sections = [f"All intervals: 95%, {method} (tables/intervals.csv, docs/analyses.md)."]
    sections += similarity_section(I)
    sections += separability_section(I)
    sections += per_category_section(I, per_category)
    sections += location_section(I, frames)
    sections += invariance_section(I)
    sections += consistency_section(I)
    sections += units_section(frames)
    sections += paper_section(I, frames)
    return "\n\n".join(sections) + "\n"


def combine(runs: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Several runs' tables as one set: the rows of each table stacked in the order the runs were given (one run
    folder per network, as `shiftlens leaderboard` keeps them, reads as one run of all of them)."""
    names = list(dict.fromkeys(name for frames in runs for name in frames))
    return {name: pd.concat([f[name] for f in runs if name in f], ignore_index=True) for name in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", type=Path, nargs="+", metavar="RUN_DIR ... OUT_DIR",
                    help="one or more finished `shiftlens run` results folders, then where the tables are copied "
                         "(e.g. docs/stamps/tables; with several runs, each run's tables go to OUT_DIR/RUN_NAME/)")
    ap.add_argument("--per-category", default="similarity_TL,similarity_C",
                    help="comma-separated metrics of intervals.csv to tabulate per category")
    args = ap.parse_args(argv)
    if len(args.paths) < 2:
        ap.error("give a results folder and the folder to copy its tables to")
    run_dirs, out_dir = args.paths[:-1], args.paths[-1]
    try:
        loaded = [load(run_dir) for run_dir in run_dirs]
        text = findings(combine([frames for _, frames, _ in loaded]), [m for m in args.per_category.split(",") if m])
    except ShiftlensError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for run_dir, (texts, _, computed) in zip(run_dirs, loaded):
        dest = out_dir if len(run_dirs) == 1 else out_dir / run_dir.resolve().name
        dest.mkdir(parents=True, exist_ok=True)
        for name, body in texts.items():
            (dest / f"{name}.csv").write_text(body)
        said = " (intervals.csv computed here from the per-patch tables: the run predates it)" if computed else ""
        print(f"copied {len(texts)} tables of {run_dir} to {dest}{said}", file=sys.stderr)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
