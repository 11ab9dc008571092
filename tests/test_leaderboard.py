"""`shiftlens leaderboard`: one run folder per model (and its arithmetic benchmark folder), the table read from their
tables, globs, resume, skips, page.

The fixture: a tiny leaderboard (one patch, a 128 px canvas, 64 px patches at stride 16) of EfficientNet-Lite0 with
its packaged ImageNet weights, ResNet-18 APS with random weights, and ResNet-50 APS asked for with ImageNet weights
(none were released, so it is skipped with one line), and the test-only network without a logits layer (skipped
too: consistency needs class scores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from shiftlens.cli import app
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.leaderboard import anchors, metrics
from shiftlens.leaderboard import run as board
from shiftlens.leaderboard.models import DEFAULT_MODELS, expand, resolve
from shiftlens.store import ResultsDir, RunRecord

MODELS = "efficientnet_lite0:fc@imagenet;resnet18_aps@random;resnet50_aps@imagenet;test_constant"


def base_config(patch_dir: Path) -> RunConfig:
    return RunConfig(patches=f"folder:{patch_dir}", sizes=[64], stride=16, canvas=128, weights="random", batch_size=32,
                     device="cpu", site=True, max_patches=1)


@pytest.fixture(scope="module", autouse=True)
def few_problems():
    """6 arithmetic problems per model (2 of each kind) instead of 30: the same code, a fifth of the scenes."""
    mp = pytest.MonkeyPatch()
    mp.setattr(board, "ARITHMETIC_PROBLEMS", 6)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory, constant_model) -> Path:
    from conftest import write_patch_dir

    root = tmp_path_factory.mktemp("board")
    patches = write_patch_dir(root / "patches", n=2)
    lines: list[str] = []
    result = board.run(base_config(patches), MODELS, root / "out", log=lines.append)
    assert [o.status for o in result.outcomes] == ["computed", "computed", "skipped", "skipped"]
    (root / "log.txt").write_text("\n".join(lines))
    return root


@pytest.fixture(scope="module")
def table(board_dir) -> pd.DataFrame:
    return pd.read_csv(board_dir / "out" / "tables" / "leaderboard.csv")


# ------------------------------------------------------------------------------------------ models and globs
def test_timm_glob_expands_with_timms_own_list():
    import timm

    names = timm.list_models("convnext_*")
    assert len(names) > 3
    assert expand("timm:convnext_*") == [f"timm:{n}:logits" for n in names]
    assert expand("timm:convnext_*:head.fc@random") == [f"timm:{n}:head.fc@random" for n in names]


def test_torchvision_and_registry_globs_expand_without_weights():
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm, include="resnet*")
    assert "resnet18" in names
    assert expand("torchvision:resnet*") == [f"torchvision:{n}:logits" for n in names]
    got = expand("resnet50_a*")
    assert "resnet50_aa" in got and "resnet50_aps" in got and "resnet50" not in got
    # a glob after a model is a spec of its own, not a layer of the model before it
    assert resolve("efficientnet_lite0:fc;resnet18_ap?@random")[:2] == ["efficientnet_lite0:fc", "resnet18_aps@random"]


def test_default_set_names_the_usual_backbones_and_their_twins():
    for name in ("alexnet", "vgg16", "resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet",
                 "convnext_tiny", "vit_b_16", "deit_small", "swin_t", "_aa", "_aps"):
        assert any(name in spec for spec in DEFAULT_MODELS), name


def test_default_set_parses_and_its_anchors_name_its_entries():
    from shiftlens.models import REGISTRY, parse_spec

    entries = {parse_spec(s).entry.name for s in resolve("default")}
    anchored = set(anchors.load()["model"])
    assert {"alexnet", "alexnet_aa", "torchvision-vgg16", "torchvision-resnet18", "resnet50", "resnet50_aa",
            "torchvision-densenet121", "mobilenet_v2", "mobilenet_v2_aa", "resnet18_aps", "resnet50_aps"} <= entries & anchored
    assert all(m in REGISTRY or m.startswith("torchvision-") for m in anchored)  # every anchor can join a row


def test_each_models_runs_use_the_given_executor(tmp_path):
    base = RunConfig(weights="random", stride=32, executor="ray", workers=2)
    move, circular = board.configs(base, "resnet18_aps@random", tmp_path)
    assert (move.executor, move.workers, circular.executor) == ("ray", 2, "ray")
    assert move.shift == "move" and circular.shift == "circular" and circular.analyses == ["consistency"]
    assert Path(move.out).parent == tmp_path / "models" and Path(circular.out).parent == tmp_path / "circular"


@pytest.mark.parametrize("models, words", [
    ("no_such_net", ["unknown model 'no_such_net'"]),
    ("timm:zzz_nothing_*", ["timm:zzz_nothing_*", "matches no timm model"]),
    ("torchvision:zzz*", ["matches no torchvision model"]),
    ("zzz_*", ["matches no built-in model"]),
])
def test_unknown_model_or_empty_glob_is_one_line(tmp_path, models, words):
    with pytest.raises(ShiftlensError):
        resolve(models)
    result = CliRunner().invoke(app, ["leaderboard", "--models", models, "--out", str(tmp_path / "lb")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output and text.startswith("error:")
    for w in words:
        assert w in text
    assert not (tmp_path / "lb").exists()


def test_dry_run_prints_both_plans_and_runs_nothing(tmp_path, patch_dir):
    out = tmp_path / "lb"
    result = CliRunner().invoke(app, ["leaderboard", "--models", "efficientnet_lite0:fc", "--weights", "random",
                                      "--patches", f"folder:{patch_dir}", "--sizes", "96", "--stride", "32",
                                      "--max-patches", "1", "--device", "cpu", "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "circular shifts, consistency only" in result.output and "shifts over the canvas" in result.output
    assert result.output.count("total:") == 2
    assert f"scenes for 1 model(s) ({board.ARITHMETIC_PROBLEMS} problems each), about" in " ".join(result.output.split())
    assert not out.exists()


# ------------------------------------------------------------------------------------------ the table
def test_columns_and_one_row_per_model_layer_and_weights(table):
    for col in ["model", "layer", "weights", "untrained", *[m.name for m in metrics.METRICS],
                *[f"rank_{m.name}" for m in metrics.METRICS if m.ranked], "rank_mean", *anchors.COLUMNS]:
        assert col in table.columns, col
    assert sorted(table["model"]) == ["efficientnet_lite0@imagenet", "resnet18_aps@random"]
    assert not table.duplicated(["model", "layer", "weights"]).any()


def test_aps_circular_consistency_is_exactly_one(table):
    aps = table[table["model"] == "resnet18_aps@random"].iloc[0]
    assert aps["circular_consistency"] == 1.0
    assert bool(aps["untrained"])
    lite = table[table["model"] == "efficientnet_lite0@imagenet"].iloc[0]
    assert not lite["untrained"]


def _own(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / "tables" / f"{name}.csv")


def test_each_number_matches_its_models_own_run_tables(board_dir, table):
    """The same rows of the same CSVs, averaged here by hand; the leaderboard CSV keeps 6 significant digits as
    every table does (store.write_table), hence rel=1e-5."""
    out = board_dir / "out"
    for r in table.itertuples():
        move = out / r.folder
        circ = out / r.folder.replace("models/", "circular/", 1)
        inv = _own(move, "invariance")
        inv = inv[(inv.model == r.model) & (inv.layer == r.layer)]
        assert r.global_invariance == pytest.approx(inv["frac_ge_0.90"].mean(), rel=1e-5)
        assert r.local_change == pytest.approx(np.mean([inv.local_dx.mean(), inv.local_dy.mean()]), rel=1e-5)
        loc = _own(move, "location")
        loc = loc[(loc.model == r.model) & (loc.layer == r.layer) & (loc.protocol == "shuffled")]
        assert r.location_r2 == pytest.approx(np.mean([loc.r2_x.mean(), loc.r2_y.mean()]), rel=1e-5)
        assert r.location_error_px == pytest.approx(loc.dist_px.mean(), rel=1e-5)
        xo = _own(move, "location_cross_object") if (move / "tables" / "location_cross_object.csv").exists() else None
        if xo is None or xo.empty:
            assert np.isnan(r.cross_object_location_error_px)
        else:
            xo = xo[(xo.model == r.model) & (xo.layer == r.layer) & (xo.probe == "ridge")]
            assert r.cross_object_location_error_px == pytest.approx(xo.median_dist_px.mean(), rel=1e-5, nan_ok=True)
        sep = _own(move, "separability")
        sep = sep[(sep.model == r.model) & (sep.layer == r.layer) & (sep.protocol == "shuffled")]
        assert r.separability == pytest.approx(sep.acc_mean.mean(), rel=1e-5)
        for folder, col in ((move, "canvas_consistency"), (circ, "circular_consistency")):
            con = _own(folder, "consistency")
            assert getattr(r, col) == pytest.approx(con[con.model == r.model].p_random.mean(), rel=1e-5)
        assert (out / r.site).is_file()
        arith = _own(out / r.arithmetic_folder, "arithmetic")  # the model's own `shiftlens arithmetic` folder
        assert r.arithmetic_folder.startswith("arithmetic/") and pd.isna(r.arithmetic_note)  # no reason: it ran
        for kind in ("remove", "add"):
            rows = arith[(arith.model == r.model) & (arith.layer == r.layer) & (arith.kind == kind)]
            assert len(rows) == 1 and rows.n_problems.iloc[0] == board.ARITHMETIC_PROBLEMS // 3
            assert getattr(r, f"arithmetic_{kind}_top1") == pytest.approx(rows.top1_accuracy.mean(), rel=1e-5)


def test_arithmetic_is_a_features_only_benchmark_run_per_model(board_dir, table):
    from shiftlens.analyses.arithmetic.record import ArithmeticRecord

    out = board_dir / "out"
    for folder in table["arithmetic_folder"].unique():
        record = ResultsDir(out / folder).read_run(ArithmeticRecord)
        assert record.status == "complete" and record.config.inverter == "none" and record.expressions == {}
        assert record.config.problems == board.ARITHMETIC_PROBLEMS and record.config.size == 64
        assert record.config.stride == 16 and record.config.canvas == 128 and record.inversions == []
    assert table[["arithmetic_remove_top1", "arithmetic_add_top1"]].notna().all().all()
    assert table.filter(like="rank_arithmetic").empty  # shown, never ranked


def test_arithmetic_says_in_one_line_why_a_config_cannot_have_it(tmp_path, patch_dir):
    base = base_config(patch_dir)
    assert board.arithmetic_plan(base, "resnet18_aps@random", tmp_path)[0] is not None
    textured = base.__class__(**{**base.to_dict(), "background": "texture:" + _a_texture()})
    p, why = board.arithmetic_plan(textured, "resnet18_aps@random", tmp_path)
    assert p is None and "flat colour" in why and "\n" not in why
    big = base.__class__(**{**base.to_dict(), "sizes": [100]})
    p, why = board.arithmetic_plan(big, "resnet18_aps@random", tmp_path)
    assert p is None and "cannot sit side by side" in why


def _a_texture() -> str:
    from shiftlens.canvases.background import texture_names

    return texture_names()[0]


def test_grid_share_is_empty_with_the_reason_where_the_grid_cannot_see_the_net_stride(board_dir, table):
    """The fixture's 5 x 5 maps (64 px patches at stride 16 on 128 px) hold under 3 periods of the 32 px net
    stride: every row's grid share is empty (never 0), its note says why, and the command says so once."""
    assert table["grid_share"].isna().all()
    assert table["grid_share_note"].str.contains("the 5 x 5 map holds fewer than 3 periods of the 32 px net stride").all()
    log = (board_dir / "log.txt").read_text()
    assert log.count(f"grid_share is empty in {len(table)} of {len(table)} row(s), not zero") == 1
    record = board.LeaderboardRecord.model_validate_json((board_dir / "out" / "leaderboard.json").read_text())
    assert any(n.startswith("grid_share is empty") for n in record.notes)


def test_grid_share_blocker_is_the_invariance_analysis_rule():
    from types import SimpleNamespace

    from shiftlens.analyses.invariance import grid_share, grid_share_blocker

    once = grid_share_blocker(5, 32, 32)
    assert "stride 32 px samples the network's 32 px stride once per period" in once and "--stride 16" in once
    assert "does not divide" in grid_share_blocker(12, 12, 32)
    assert grid_share_blocker(10, 8, None) == "the network's total stride is unknown"
    assert "fewer than 3 periods" in grid_share_blocker(5, 16, 32) and grid_share_blocker(6, 16, 32) is None
    rng = np.random.default_rng(0)
    for n, stride, period in [(5, 32, 32), (5, 16, 32), (6, 16, 32), (10, 8, 32), (7, 8, 16), (9, 12, 32)]:
        m = rng.random((n, n))
        assert np.isnan(grid_share(m, stride, period)) == (grid_share_blocker(n, stride, period) is not None)
    # a run at stride 32 (the docs' cheap setting) on the quick canvas: 5 and 4 positions per axis, both blocked
    record = SimpleNamespace(config=SimpleNamespace(stride=32, sizes=[75, 125]), positions={75: 25, 125: 16})
    assert metrics.grid_share_note(record, 32) == grid_share_blocker(5, 32, 32)
    # stride 16: the 75 px maps (10 x 10) are measured, the 125 px maps (7 x 7) too; with 8 px net stride... none
    record = SimpleNamespace(config=SimpleNamespace(stride=16, sizes=[75, 125, 175]), positions={75: 100, 125: 49, 175: 16})
    note = metrics.grid_share_note(record, 32)
    assert note.startswith("left out at 175 px: the 4 x 4 map holds fewer than 3 periods")
    df = pd.DataFrame({"model": "m", "layer": "fc", "weights": "w", "grid_share": [0.2, 0.4, np.nan]})
    key = metrics.RowKey("m", "fc", "w", "fc")
    metric = next(m for m in metrics.METRICS if m.name == "grid_share")
    assert metric.value({"invariance": df}, {}, key) == pytest.approx(0.3)  # over the sizes it is measured at
    assert np.isnan(metric.value({"invariance": df.assign(grid_share=np.nan)}, {}, key))


def test_cross_object_column_is_the_ridge_probes_median_over_sizes():
    key = metrics.RowKey("m", "fc", "imagenet", "fc")
    df = pd.DataFrame([{"model": "m", "layer": "fc", "weights": "imagenet", "patch_size": s, "probe": p,
                        "median_dist_px": v} for s, p, v in [(75, "ridge", 10.0), (125, "ridge", 20.0),
                                                            (75, "knn", 99.0), (75, "centre", 60.0)]])
    metric = next(m for m in metrics.METRICS if m.name == "cross_object_location_error_px")
    assert metric.value({metrics.CROSS_OBJECT: df}, {}, key) == pytest.approx(15.0)
    assert np.isnan(metric.value({}, {}, key))  # a run without the table (one object: nothing to test on)


def test_ranks_follow_each_direction_and_untrained_rows_apart():
    names = [m.name for m in metrics.METRICS]
    df = pd.DataFrame([{"model": m, "layer": "fc", "weights": w, "untrained": u, **{n: np.nan for n in names}}
                       for m, w, u in [("a", "imagenet", False), ("b", "imagenet", False), ("c", "random", True)]])
    df["global_invariance"] = [0.9, 0.5, 0.1]  # higher = more invariant
    df["grid_share"] = [0.9, 0.5, 0.99]  # lower = more invariant
    ranked = metrics.rank(df).set_index("model")
    assert ranked.loc["a", "rank_global_invariance"] == 1 and ranked.loc["b", "rank_global_invariance"] == 2
    assert ranked.loc["a", "rank_grid_share"] == 2 and ranked.loc["b", "rank_grid_share"] == 1
    assert ranked.loc["c", "rank_global_invariance"] == 1 and ranked.loc["c", "rank_grid_share"] == 1  # apart
    assert ranked.loc["a", "rank_mean"] == 1.5 and np.isnan(ranked.loc["a", "rank_location_r2"])
    assert list(ranked.index) in (["a", "b", "c"], ["b", "a", "c"])  # untrained after trained


# ------------------------------------------------------------------------------------------ anchors
def test_anchors_cite_a_source_and_join_only_the_rows_they_describe():
    a = anchors.load()
    assert a["source"].str.len().gt(20).all()
    assert a.set_index("model").loc["resnet50", "consistency_pct"] == 89.20  # README_IMAGENET.md, ResNet50 Baseline
    rows = pd.DataFrame([
        {"model": "alexnet", "untrained": False, "weights_source": "imagenet"},
        {"model": "alexnet@random", "untrained": True, "weights_source": "random"},
        {"model": "resnet18_aps@random", "untrained": True, "weights_source": "random"},
        {"model": "efficientnet_lite0", "untrained": False, "weights_source": "imagenet"},
    ])
    got = anchors.attach(rows)
    assert got.loc[0, "published_crop_consistency"] == pytest.approx(0.7818)
    assert np.isnan(got.loc[1, "published_crop_consistency"])  # Zhang's numbers describe trained weights
    assert got.loc[2, "published_circular_consistency"] == 1.0
    assert got.loc[3, ["published_accuracy", "published_crop_consistency"]].isna().all()
    assert "crop" in got.loc[0, "published_protocol"]


# ------------------------------------------------------------------------------------------ skips and resume
def test_a_model_without_weights_is_skipped_with_one_line(board_dir):
    log = (board_dir / "log.txt").read_text().splitlines()
    skipped = [line for line in log if "skipped" in line]
    assert len(skipped) == 2 and skipped[0].startswith("resnet50_aps@imagenet: skipped: no ImageNet weights")
    assert skipped[1].startswith("test_constant: skipped: model test_constant has no logits layer")
    record = board.LeaderboardRecord.model_validate_json((board_dir / "out" / "leaderboard.json").read_text())
    assert [(o.key, o.status) for o in record.models][2:] == [("resnet50_aps@imagenet", "skipped"),
                                                             ("test_constant", "skipped")]
    assert "no ImageNet weights" in record.models[2].note and record.config.stride == 16


def test_finished_models_are_reused_and_a_killed_model_resumes_its_parts(board_dir):
    from conftest import write_patch_dir

    out = board_dir / "out"
    cfg = base_config(write_patch_dir(board_dir / "patches", n=2))
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*/run.json")}
    again = board.run(cfg, MODELS, out)
    assert [o.status for o in again.outcomes] == ["reused", "reused", "skipped", "skipped"] and again.computed == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/run.json")} == before
    # kill ResNet-18 APS's move run mid-model: its run.json says running and one part is gone
    aps = next(p for p in (out / "models").iterdir() if p.name.startswith("resnet18_aps"))
    rd = ResultsDir(aps)
    record = rd.read_run()
    rd.write_run(record.model_copy(update={"status": "running"}))
    parts = sorted((aps / "parts").rglob("*.npz"))
    assert parts
    kept = {p: p.stat().st_mtime_ns for p in parts[1:]}
    parts[0].unlink()
    lines: list[str] = []
    resumed = board.run(cfg, MODELS, out, log=lines.append)
    assert [o.status for o in resumed.outcomes] == ["reused", "computed", "skipped", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in parts[1:]} == kept  # the finished parts are not recomputed
    assert parts[0].is_file() and isinstance(rd.read_run(), RunRecord) and rd.read_run().status == "complete"
    lite = next(p for p in (out / "models").iterdir() if p.name.startswith("efficientnet_lite0"))
    assert (lite / "run.json").stat().st_mtime_ns == before[lite / "run.json"]
    new = pd.read_csv(out / "tables" / "leaderboard.csv")
    pd.testing.assert_frame_equal(new, again.table)


# ------------------------------------------------------------------------------------------ the page
@pytest.fixture(scope="module")
def page(board_dir):
    from playwright import sync_api
    from test_site import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.fail("the website tests need the system Chromium: apt-get install chromium (no playwright install)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = b.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        pg.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        pg.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
        pg.goto((board_dir / "out" / "site" / "index.html").resolve().as_uri())
        pg.wait_for_function("document.body.dataset.ready === '1'")
        pg.errors = errors
        yield pg
        b.close()


def _column(pg, col: str) -> list[float]:
    return pg.eval_on_selector_all(f"#board tbody td[data-col='{col}']", "ts => ts.map(t => +t.dataset.value)")


def _models(pg) -> list[str]:
    return pg.eval_on_selector_all("#board tbody tr", "rs => rs.map(r => r.dataset.model)")


def test_page_has_no_console_errors_and_titles_define_each_column(page):
    assert page.errors == []
    titles = page.eval_on_selector_all("#board th", "ts => Object.fromEntries(ts.map(t => [t.dataset.col, t.title]))")
    for m in metrics.METRICS:
        assert m.definition in titles[m.name] and "more shift-invariant" in titles[m.name]
        assert ("not a measure of shift invariance" in titles[m.name]) == (m.direction == "neither")
    assert "different protocol" in titles["published_crop_consistency"]
    assert page.locator("tr.untrained .badge").first.text_content() == "UNTRAINED"


def test_page_says_why_the_grid_share_is_empty(page, table):
    assert f"grid_share is empty in {len(table)} of {len(table)} row(s), not zero" in page.locator("#notes p.note").first.text_content()
    cell = page.locator("#board tbody td[data-col='grid_share']").first
    assert cell.text_content() == "n/a" and cell.get_attribute("title") == table["grid_share_note"].iloc[0]


def test_clicking_a_column_sorts_the_rows(page, table):
    page.click("#board th[data-col='location_r2']")
    assert _column(page, "location_r2") == sorted(table["location_r2"])
    assert _models(page) == list(table.sort_values("location_r2")["model"])
    page.click("#board th[data-col='location_r2']")
    assert _column(page, "location_r2") == sorted(table["location_r2"], reverse=True)
    assert _models(page) == list(table.sort_values("location_r2", ascending=False)["model"])
    assert page.get_attribute("#board th[data-col='location_r2']", "data-sort") == "desc"


def test_scatter_plots_the_two_chosen_metrics(page, table):
    page.select_option("#sx", "location_r2")
    page.select_option("#sy", "separability")
    svg = page.eval_on_selector("#scatter", "s => Object.assign({}, s.dataset)")
    assert svg == {"x": "location_r2", "y": "separability", "points": str(len(table))}
    pts = page.eval_on_selector_all("#scatter circle", "cs => cs.map(c => [c.dataset.model, +c.getAttribute('cx'), +c.getAttribute('cy')])")
    by = {m: (x, y) for m, x, y in pts}
    lo, hi = table.sort_values("location_r2")["model"].iloc[[0, -1]]
    assert by[lo][0] < by[hi][0]  # x grows with location_r2
    lo, hi = table.sort_values("separability")["model"].iloc[[0, -1]]
    if table["separability"].nunique() > 1:
        assert by[lo][1] > by[hi][1]  # SVG y grows downwards


def test_each_row_links_to_its_models_own_site(page, board_dir, table):
    hrefs = page.eval_on_selector_all("#board tbody td[data-col='model'] a", "as => as.map(a => [a.textContent, a.href])")
    assert sorted(m for m, _ in hrefs) == sorted(table["model"])
    for model, href in hrefs:
        target = Path(href.removeprefix("file://"))
        assert target.is_file() and target.parent.name == "site" and target.parent.parent.parent.name == "models"
        assert (target.parent.parent / "run.json").is_file()


def test_plot_draws_the_models_with_both_consistencies_and_only_then(tmp_path):
    from PIL import Image

    df = pd.DataFrame({"model": ["alexnet", "resnet50", "efficientnet_lite0"], "layer": ["fc8", "fc", "fc"],
                       "canvas_consistency": [0.7, 0.9, 0.8], "published_crop_consistency": [0.7818, 0.892, np.nan]})
    path = board.plot(tmp_path, df)
    assert path == tmp_path / board.FIGURE and Image.open(path).size[0] > 300
    assert board.plot(tmp_path, df.assign(published_crop_consistency=np.nan)) is None and not path.exists()
