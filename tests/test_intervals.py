"""tables/intervals.csv: percentile bootstrap intervals over objects (analyses/intervals.py).

Known answers: the interval is scipy.stats.bootstrap's percentile interval drawn from the same generator; it
narrows with more objects, holds the mean, and is the same in every rerun; one object gives NaN and a note. A tiny
run writes the table beside the others (registered in run.json, the others unchanged by it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import write_patch_dir
from shiftlens.analyses import intervals as iv


def per_patch(values: dict[str, np.ndarray], categories=None, model="m", layer="pool", size=75) -> pd.DataFrame:
    """A similarity_per_patch-shaped table: one row per patch and anchor, the given per-patch means."""
    n = len(next(iter(values.values())))
    categories = categories or ["cat"] * n
    rows = [dict(model=model, layer=layer, weights="imagenet", patch_size=size, patch=f"p{i:03d}",
                 category=categories[i], anchor=anchor, mean=float(v[i]))
            for i in range(n) for anchor, v in values.items()]
    return pd.DataFrame(rows)


def scipy_interval(x: np.ndarray) -> tuple[float, float]:
    res = stats.bootstrap((x,), np.mean, n_resamples=iv.RESAMPLES, method="percentile", confidence_level=0.95,
                          rng=np.random.default_rng([iv.SEED, len(x)]), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@pytest.mark.parametrize("n", [2, 3, 17, 150])
def test_interval_is_scipys_percentile_bootstrap(n):
    rng = np.random.default_rng(n)
    values = {"TL": rng.normal(0.9, 0.05, n), "C": rng.beta(8, 1, n)}
    out = iv.table({"similarity_per_patch": per_patch(values)})
    for anchor, x in values.items():
        row = out[out.metric == f"similarity_{anchor}"].iloc[0]
        low, high = scipy_interval(x)
        assert row.ci_low == pytest.approx(low, rel=1e-12, abs=1e-14)
        assert row.ci_high == pytest.approx(high, rel=1e-12, abs=1e-14)
        assert row["mean"] == pytest.approx(x.mean(), rel=1e-14) and row.n_objects == n
        assert row.category == iv.ALL and row.method == iv.METHOD and row.note == ""


def test_interval_narrows_with_more_objects_and_holds_the_mean():
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 40, 160):
        z = rng.normal(size=n)
        x = 0.9 + 0.05 * (z - z.mean()) / z.std()  # the same spread at every n
        row = iv.table({"similarity_per_patch": per_patch({"TL": x})}).iloc[0]
        assert row.ci_low < row["mean"] < row.ci_high
        widths.append(row.ci_high - row.ci_low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.1)  # ~ 1 / sqrt(n)


def test_every_interval_holds_its_mean_on_skewed_values():
    rng = np.random.default_rng(2)
    values = {a: rng.exponential(1.0, 25) ** 3 for a in ("TL", "TR", "C", "BL", "BR")}
    out = iv.table({"similarity_per_patch": per_patch(values)})
    assert ((out.ci_low <= out["mean"]) & (out["mean"] <= out.ci_high)).all()


def test_the_same_values_give_the_same_intervals_in_every_run_whatever_else_it_holds():
    rng = np.random.default_rng(3)
    values = {"TL": rng.normal(size=30), "C": rng.normal(size=30)}
    a = iv.table({"similarity_per_patch": per_patch(values)})
    b = iv.table({"similarity_per_patch": per_patch(values)})
    pd.testing.assert_frame_equal(a, b)
    assert a.to_csv(index=False) == b.to_csv(index=False)
    # another model beside it (other draws before or after) leaves this model's rows as they were
    other = per_patch({"TL": rng.normal(size=12)}, model="other")
    both = iv.table({"similarity_per_patch": pd.concat([other, per_patch(values)], ignore_index=True)})
    mine = both[both.model == "m"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, a)


def test_constant_values_have_that_value_as_interval():
    out = iv.table({"similarity_per_patch": per_patch({"TL": np.full(7, 0.1), "C": np.ones(7)})})
    assert (out.ci_low == out["mean"]).all() and (out.ci_high == out["mean"]).all()
    assert out["mean"].tolist() == [0.1, 1.0]


def test_one_object_gives_nan_and_a_note_and_categories_get_their_own_rows():
    x = np.array([0.5, 0.7, 0.9, 0.6])
    out = iv.table({"similarity_per_patch": per_patch({"TL": x}, categories=["cat", "cat", "cat", "cup"])})
    assert out.category.tolist() == ["all", "cat", "cup"]
    all_, cat, cup = (out[out.category == c].iloc[0] for c in ("all", "cat", "cup"))
    assert all_.n_objects == 4 and all_["mean"] == pytest.approx(x.mean())
    assert cat.n_objects == 3 and (cat.ci_low, cat.ci_high) == pytest.approx(scipy_interval(x[:3]), rel=1e-12)
    assert cup.n_objects == 1 and cup["mean"] == 0.6 and np.isnan(cup.ci_low) and np.isnan(cup.ci_high)
    assert cup.note == iv.ONE_OBJECT
    # one category: no per-category rows
    one = iv.table({"similarity_per_patch": per_patch({"TL": x})})
    assert one.category.tolist() == ["all"]


def test_a_patch_without_a_value_is_left_out_and_said():
    x = np.array([0.5, np.nan, 0.9, 0.6, 0.8])
    out = iv.table({"similarity_per_patch": per_patch({"TL": x, "C": np.full(5, np.nan)})})
    tl, c = out[out.metric == "similarity_TL"].iloc[0], out[out.metric == "similarity_C"].iloc[0]
    finite = x[np.isfinite(x)]
    assert tl.n_objects == 4 and tl["mean"] == pytest.approx(finite.mean())
    assert (tl.ci_low, tl.ci_high) == pytest.approx(scipy_interval(finite), rel=1e-12)
    assert tl.note == "1 object(s) without a value left out"
    assert c.n_objects == 0 and np.isnan(c["mean"]) and c.note == iv.NO_VALUES


def test_metric_names_of_every_per_patch_table():
    base = dict(model="m", layer="pool", weights="imagenet", patch_size=75, category="cat")
    patches = [f"p{i}" for i in range(3)]
    sep = pd.DataFrame([dict(base, patch=p, protocol=pr, task=t, acc_mean=0.9, acc_std=0.1)
                        for p in patches for pr in ("paper", "shuffled") for t in ("left_right", "top_bottom")])
    loc = pd.DataFrame([dict(base, patch=p, protocol=pr, r2_x=0.9, r2_y=0.9, mae_px=2.0, dist_px=3.0)
                        for p in patches for pr in ("paper", "shuffled")])
    cons = pd.DataFrame([dict(base, layer="fc", patch=p, p_neighbour_h=0.9, p_neighbour_v=0.9, p_neighbour=0.9,
                              p_random=0.5, n_classes=3, mode_share=0.6, p_top1_in_classes=np.nan, classes="none")
                         for p in patches])
    prob = pd.DataFrame([dict(base, layer="class", patch=p, mean_prob=0.5, min_prob=0.1, max_prob=0.9, n_classes=2,
                              classes="") for p in patches])
    inv = pd.DataFrame([dict(base, patch=p, anchor="C", **{"frac_ge_0.95": 0.5, "grid_share": 0.7})
                        for p in patches])
    out = iv.table({"separability_per_patch": sep, "location_per_patch": loc, "consistency_per_patch": cons,
                    "class_prob": prob, "invariance_per_patch": inv})
    assert out.metric.tolist() == [
        "separability_lr_paper", "separability_tb_paper", "separability_lr_shuffled", "separability_tb_shuffled",
        "separability_lr_paper_fold_std", "separability_tb_paper_fold_std", "separability_lr_shuffled_fold_std",
        "separability_tb_shuffled_fold_std",
        "location_dist_px_paper", "location_dist_px_shuffled", "location_mae_px_paper", "location_mae_px_shuffled",
        "location_r2_x_paper", "location_r2_x_shuffled", "location_r2_y_paper", "location_r2_y_shuffled",
        "invariance_frac_ge_0.95_C", "invariance_grid_share_C",
        "consistency_p_neighbour_h", "consistency_p_neighbour_v", "consistency_p_neighbour", "consistency_p_random",
        "consistency_n_classes", "consistency_mode_share", "consistency_p_top1_in_classes",
        "class_prob_mean", "class_prob_min", "class_prob_max"]
    assert list(out.columns) == iv.COLUMNS
    assert out.layer.tolist()[:18] == ["pool"] * 18 and out.layer.tolist()[-3:] == ["class"] * 3
    assert iv.table({}) is None and iv.table({"units": pd.DataFrame({"model": ["m"]})}) is None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, "api.RunResult"]:
    """A run of three objects (cat_00, cup_01, cat_02) through every analysis with per-patch values, at 75 px."""
    from shiftlens import api
    from shiftlens.config import RunConfig

    root = tmp_path_factory.mktemp("intervals")
    patches = write_patch_dir(root / "patches", n=3)
    cfg = RunConfig(models=["efficientnet_lite0:pool,fc"], patches=f"folder:{patches}", sizes=[75], stride=32,
                    weights="random", out=str(root / "out"), batch_size=16, site=False,
                    analyses=["similarity", "separability", "location", "invariance", "consistency", "class"])
    return Path(cfg.out), api.run(cfg)


def test_a_run_writes_intervals_beside_unchanged_tables(tiny_run, monkeypatch):
    from shiftlens import api
    from shiftlens.store import ResultsDir

    out, result = tiny_run
    info = json.loads((out / "run.json").read_text())
    assert "intervals" in info["tables"]
    text = (out / "tables" / "intervals.csv").read_bytes()
    assert info["table_sha256"]["intervals"] == hashlib.sha256(text).hexdigest()
    got = pd.read_csv(out / "tables" / "intervals.csv", keep_default_na=False, na_values=[""])
    assert list(got.columns) == iv.COLUMNS
    assert set(got.category) == {"all", "cat", "cup"}
    for layer in ("pool", "fc"):
        metrics = set(got[got.layer == layer].metric)
        assert {f"similarity_{a}" for a in ("TL", "TR", "C", "BL", "BR")} <= metrics
        assert {"separability_tb_paper", "separability_lr_paper", "separability_tb_shuffled",
                "location_dist_px_shuffled", "invariance_frac_ge_0.95_C"} <= metrics
    assert {"consistency_p_neighbour", "class_prob_mean"} <= set(got.metric)
    rows = got[got.category == "all"]
    assert (rows.n_objects[rows.note == ""] == 3).all()
    cup = got[got.category == "cup"]
    assert (cup.n_objects <= 1).all() and cup.ci_low.isna().all()
    cat = got[(got.category == "cat") & (got.n_objects == 2)]
    assert not cat.empty and cat.ci_low.notna().all()
    # the means are the summary tables' means
    sim = result.tables["similarity"]
    for r in sim.itertuples():
        row = rows[(rows.layer == r.layer) & (rows.metric == f"similarity_{r.anchor}")].iloc[0]
        assert row["mean"] == pytest.approx(r.mean, rel=1e-5)
    sep = result.tables["separability"]
    tb = sep[(sep.layer == "pool") & (sep.protocol == "paper") & (sep.task == "top_bottom")].iloc[0]
    row = rows[(rows.layer == "pool") & (rows.metric == "separability_tb_paper")].iloc[0]
    assert row["mean"] == pytest.approx(tb.acc_mean, rel=1e-5)
    # the other tables are byte for byte what the build writes without intervals
    others = {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv") if p.stem != "intervals"}
    assert set(others) >= {"similarity.csv", "separability.csv", "location.csv", "invariance.csv", "consistency.csv",
                           "class_prob.csv"}
    monkeypatch.setattr(iv, "table", lambda tables: None)
    results = ResultsDir(out)
    per = result.tables["similarity_per_patch"]
    order = list(per[["model", "patch_size", "patch"]].drop_duplicates().itertuples(index=False, name=None))
    tables, _ = api.build_outputs(results, results.read_run(), order)
    assert "intervals" not in tables
    assert {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv") if p.stem != "intervals"} == others


# -- tools/findings.py --------------------------------------------------------------------------------------------
CELL = r"\d+\.\d+ \[\d+\.\d+, \d+\.\d+\]"


def test_findings_copies_the_tables_and_prints_every_section(tiny_run, tmp_path, capsys):
    import re

    from tools import findings

    out, _ = tiny_run
    docs = tmp_path / "docs" / "tables"
    assert findings.main([str(out), str(docs)]) == 0
    text = capsys.readouterr().out
    copied = sorted(p.name for p in docs.glob("*.csv"))
    assert copied == sorted(p.name for p in (out / "tables").glob("*.csv")) and "intervals.csv" in copied
    for name in copied:
        assert (docs / name).read_bytes() == (out / "tables" / name).read_bytes()
    for title in ("Table 2: similarity to the anchors, 75 px", "Table 4: separability, 75 px",
                  "similarity_TL per category, 75 px", "Location probe within each object",
                  "Location probe across objects", "Invariance numbers", "Shift consistency and class probability",
                  "The paper's published cells beside the run's"):
        assert f"**{title}" in text
    assert re.search(CELL, text)
    table2 = text.split("**Table 2")[1].split("\n\n")[1].splitlines()
    assert table2[0] == "| model, layer | TL | TR | C | BL | BR | objects |"
    assert len(table2) == 2 + 2 and table2[2].endswith("| 3 |")  # pool and fc, three objects each
    per_cat = text.split("**similarity_TL per category, 75 px")[1].split("\n\n")[1].splitlines()
    assert [r.split(" | ")[0] for r in per_cat[2:]] == ["| all", "| cat", "| cup"]  # the run's order
    assert any("(n = 1)" in r for r in per_cat)  # cup has one object: no interval
    cross = text.split("**Location probe across objects")[1].split("\n\n")[1].splitlines()
    assert "| ridge gain | knn gain | mlp gain |" in cross[0] and "centre gain" not in cross[0]
    assert re.search(r"\| ([+−]\d+\.\d|0\.0) \[([+−]\d+\.\d|0\.0), ([+−]\d+\.\d|0\.0)\] \|", cross[2]), cross


def test_findings_computes_intervals_for_a_run_that_predates_them(tiny_run, tmp_path, capsys):
    import shutil

    from tools import findings

    out, _ = tiny_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    info = json.loads((old / "run.json").read_text())
    info["tables"].remove("intervals")
    del info["table_sha256"]["intervals"]
    (old / "run.json").write_text(json.dumps(info))
    (old / "tables" / "intervals.csv").unlink()
    docs = tmp_path / "docs"
    assert findings.main([str(old), str(docs)]) == 0
    assert "computed here" in capsys.readouterr().err
    assert not (old / "tables" / "intervals.csv").exists()  # the run folder is not touched
    read = lambda p: pd.read_csv(p, keep_default_na=False, na_values=[""])  # noqa: E731
    got, want = read(docs / "intervals.csv"), read(out / "tables" / "intervals.csv")
    text = ["model", "layer", "weights", "patch_size", "metric", "category", "n_objects", "method", "note"]
    pd.testing.assert_frame_equal(got[text], want[text])
    for col in ("mean", "ci_low", "ci_high"):  # from the per-patch tables' six significant digits
        np.testing.assert_allclose(got[col], want[col], rtol=1e-5, atol=1e-6)


def test_findings_reads_several_runs_as_one(tiny_run, tmp_path, capsys):
    """One folder per network: the rows are stacked and each run's copies go to a folder of its name."""
    import shutil

    from tools import findings

    out, _ = tiny_run
    twin = tmp_path / "twin"
    shutil.copytree(out, twin)
    assert findings.main([str(out), str(twin), str(tmp_path / "docs")]) == 0
    text = capsys.readouterr().out
    for run in (out, twin):
        copied = tmp_path / "docs" / run.name
        assert sorted(p.name for p in copied.glob("*.csv")) == sorted(p.name for p in (out / "tables").glob("*.csv"))
    assert "**Table 2" in text
    one = findings.load(out)[1]
    both = findings.combine([one, findings.load(twin)[1]])
    assert set(both) == set(one) and all(len(both[n]) == 2 * len(one[n]) for n in one)  # every table's rows, stacked


def test_findings_refuses_a_folder_without_a_run(tmp_path, capsys):
    from tools import findings

    assert findings.main([str(tmp_path), str(tmp_path / "docs")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "docs").exists()


def test_findings_puts_the_paper_cells_beside_the_runs_interval():
    from tools import findings

    rng = np.random.default_rng(4)
    x = rng.normal(0.83, 0.03, 40)
    per = per_patch({"TL": x}, model="alexnet", layer="fc6", size=125)
    I = findings.Intervals(iv.table({"similarity_per_patch": per}))
    comp = pd.DataFrame([dict(table="1", paper_model="AlexNet", model="alexnet", layer="fc6", weights="imagenet",
                              patch_size=125, measure="similarity TL", paper_mean=0.830, paper_std=0.030,
                              run_mean=x.mean(), run_std=x.std(), diff=x.mean() - 0.830, n_patches=40)])
    text = findings.paper_section(I, {"paper_comparison": comp})[0]
    row = text.splitlines()[-1]
    low, high = scipy_interval(x)
    assert f"[{low:.3f}, {high:.3f}]" in row and "0.830 ± 0.030" in row
    assert row.endswith("| yes |") == (low <= 0.830 <= high)
