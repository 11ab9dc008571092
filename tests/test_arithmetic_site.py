"""The Arithmetic page of the results site: built by `shiftlens arithmetic` from a tiny run (the test_linear
network of test_arithmetic.py, random weights, optimise inverter with a few steps), driven in headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftlens.cli import app
from test_arithmetic import linear_model, tiny_arithmetic_toml  # noqa: F401  (the fixture registers test_linear)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, linear_model) -> Path:  # noqa: F811
    from conftest import write_patch_dir

    root = tmp_path_factory.mktemp("arith_site")
    patches = write_patch_dir(root / "patches")
    f = tiny_arithmetic_toml(root, patches)
    result = CliRunner().invoke(app, ["arithmetic", str(f), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    return root / "out"


def test_site_is_built_static_and_self_contained(results):
    site = results / "site"
    data = json.loads((site / "data" / "arithmetic.js").read_text().removeprefix("window.SL_ARITH = ").rstrip(";\n"))
    assert set(data["tables"]) == {"arithmetic", "arithmetic_per_problem", "arithmetic_inversions", "arithmetic_layers"}
    assert [e["name"] for e in data["expressions"]] == ["sub"] and data["expressions"][0]["figure"]
    for f in data["figures"]:
        assert (site / f["file"]).is_file()
    assert data["summary"]["untrained"] is True
    for name in ("index.html", "arithmetic.js"):
        text = (site / name).read_text()
        assert "http://" not in text and "https://" not in text and "fetch(" not in text
    # `shiftlens report` rebuilds the same page from the folder
    assert CliRunner().invoke(app, ["report", str(results)]).exit_code == 0
    assert (site / "index.html").read_text().count("Expressions") >= 1


def test_page_loads_and_shows_the_tables(results):
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail("the website tests need the system Chromium: apt-get install chromium (no playwright install)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1300, "height": 900})
            errors: list[str] = []
            pg.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            pg.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
            pg.goto((results / "site" / "index.html").resolve().as_uri())
            pg.wait_for_function("document.body.dataset.ready === '1'")
            assert errors == []
            # the benchmark summary: one row per (layer, kind), untrained labelled
            rows = pg.eval_on_selector_all("#summary tr", "rs => rs.map(r => r.innerText)")
            assert len(rows) == 1 + 2 * 4 and all("random (untrained)" in r for r in rows[1:])
            assert pg.is_visible("#untrained") and "Untrained" in pg.inner_text("#untrained")
            # the paired layer comparison: one row per kind of the benchmark for the second layer
            diff = pg.eval_on_selector_all("#layers-diff tr", "rs => rs.map(r => r.innerText)")
            assert pg.is_visible("#layers") and len(diff) == 1 + 3 and "paired over problems" in diff[1]
            # the expression's numbers per layer, and its figure and the retrieval figure actually decoded
            expr = pg.eval_on_selector_all("#expr-sub tr", "rs => rs.map(r => r.innerText)")
            assert len(expr) == 3 and "pixels" in expr[1] and "1.000" in expr[1]
            widths = pg.eval_on_selector_all("figure img", "is => is.map(i => i.complete ? i.naturalWidth : -1)")
            assert len(widths) == 2 and all(w > 100 for w in widths)
            assert pg.eval_on_selector_all("#inversions-table tr", "rs => rs.length") == 1 + 2 * 3
            assert pg.eval_on_selector_all("#per-problem tr", "rs => rs.length") == 1 + 2 * 4
            # sorting by a column keeps every row
            pg.click("#summary th:nth-child(7)")
            assert len(pg.eval_on_selector_all("#summary tr", "rs => rs")) == len(rows)
        finally:
            browser.close()


@pytest.mark.parametrize("width", [1400, 390])
def test_the_page_fits_the_window(results, width):
    """Wide tables (every problem, the benchmark) scroll in their own boxes: the page is never wider than the
    window (it was 1,615 px at 1,400)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": width, "height": 900})
            errors: list[str] = []
            pg.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            pg.goto((results / "site" / "index.html").resolve().as_uri())
            pg.wait_for_function("document.body.dataset.ready === '1'")
            assert pg.evaluate("() => document.documentElement.scrollWidth") <= width
            boxes = pg.eval_on_selector_all(".scroll-x", "bs => bs.map(b => [b.scrollWidth, b.clientWidth])")
            assert len(boxes) >= 5 and any(sw > cw for sw, cw in boxes)  # at least one table scrolls in its box
            assert errors == []
        finally:
            browser.close()


def test_report_refuses_a_damaged_arithmetic_table_and_run_names_the_folders_kind(results, tmp_path, constant_model,
                                                                                  patch_dir):
    """Issue 22: an edited CSV is not published; `shiftlens run` into an arithmetic folder says what it holds."""
    copy = tmp_path / "copy"
    shutil.copytree(results, copy)
    csv = copy / "tables" / "arithmetic_per_problem.csv"
    csv.write_bytes(csv.read_bytes()[:-10])
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 2 and "arithmetic_per_problem.csv is damaged" in result.output
    assert "Traceback" not in result.output
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'models = ["{constant_model}"]\npatches = "folder:{patch_dir}"\nsizes = [40]\nstride = 8\n'
                   f'canvas = 64\nweights = "random"\nsite = false\nanalyses = ["similarity"]\n')
    for force in ([], ["--force"]):
        result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(copy), *force])
        assert result.exit_code == 2, result.output
        assert "holds the results of `shiftlens arithmetic`, not of `shiftlens run`" in result.output
    assert csv.is_file() and (copy / "run.json").is_file()


def test_force_on_an_arithmetic_folder_never_deletes_through_a_link(results, tmp_path):
    """Issue 22: --force of another arithmetic config refuses a link before removing anything; once it is gone, it
    removes the run's own files and keeps a user's."""
    import dataclasses

    from shiftlens.errors import ShiftlensError
    from shiftlens.analyses.arithmetic.record import ArithmeticRecord
    from shiftlens.store import ResultsDir

    copy = tmp_path / "copy"
    shutil.copytree(results, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.json").write_text("{}")
    (copy / "parts" / "evil").symlink_to(elsewhere)
    (copy / "mine.txt").write_text("mine")
    rd = ResultsDir(copy)
    other = dataclasses.replace(rd.read_run(ArithmeticRecord).config, problems=4)
    before = sorted(copy.rglob("*"))
    with pytest.raises(ShiftlensError, match="parts/evil is a symbolic link"):
        rd.prepare(other, True, ArithmeticRecord)
    assert sorted(copy.rglob("*")) == before and (elsewhere / "keep.json").is_file()
    (copy / "parts" / "evil").unlink()
    assert rd.prepare(other, True, ArithmeticRecord) is None
    assert sorted(p.name for p in copy.iterdir()) == ["mine.txt"]  # run.json, parts, tables, figures, site went
    assert (copy / "mine.txt").read_text() == "mine" and (elsewhere / "keep.json").is_file()
