"""The site's Units page (issue 12), built from a tiny random-weights run with the units analysis and driven in
headless Chromium (the system chromium, as tests/test_site.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shiftlens import api
from shiftlens.config import RunConfig
from shiftlens.site import build

from conftest import write_patch_dir
from test_units import units_model  # noqa: F401  (fixture: registers the tiny test network)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, units_model) -> Path:  # noqa: F811
    root = tmp_path_factory.mktemp("units_site")
    cfg = RunConfig(models=[f"{units_model}:grid,pool"], patches=f"folder:{write_patch_dir(root / 'patches')}",
                    sizes=[32], canvas=96, stride=16, weights="random", out=str(root / "out"), batch_size=16,
                    site=False, analyses=["similarity", "units"], device="cpu", compile="off", units_topk=3)
    api.run(cfg)
    return build(root / "out")


def test_units_page_loads_and_a_click_shows_a_unit(site, browser):
    assert 'href="units.html"' in (site / "index.html").read_text()
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((site / "units.html").resolve().as_uri())
    page.wait_for_function("document.body.dataset.ready === 'yes'")
    options = page.eval_on_selector_all("#group option", "os => os.map(o => o.textContent)")
    assert any("grid" in o and "untrained" in o for o in options)
    assert page.is_visible("#untrained-banner")
    assert int(page.eval_on_selector("#histogram", "c => c.dataset.live")) > 0
    row = page.locator("#unit-list tr.has-detail").first
    unit = row.get_attribute("data-unit")
    row.click()
    page.wait_for_function(f"document.body.dataset.unit === '{unit}'")
    assert page.eval_on_selector("#tuning", "c => c.dataset.unit") == unit
    assert page.eval_on_selector("#tuning", "c => c.width") == 5  # the 5 x 5 grid of 32 px patches at stride 16
    drawn = page.eval_on_selector_all("#exemplars canvas", "cs => cs.map(c => c.dataset.drawn || '')")
    assert len(drawn) == 3 and all(drawn)
    # the exemplar is the patch pasted at its position: a non-white pixel inside the patch's box
    y, x = (int(v) for v in drawn[0].split(","))
    pixels = page.evaluate("([y, x]) => Array.from(document.querySelector('#exemplars canvas').getContext('2d')"
                           ".getImageData(x, y, 32, 32).data)", [y, x])
    assert any(v < 250 for i, v in enumerate(pixels) if i % 4 != 3)
    assert "unit " + unit in page.inner_text("#detail-title")
    assert errors == []
    page.close()


def _open(browser, url: str, width: int = 1300):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === 'yes'")
    return page


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail("the website tests need the system Chromium: apt-get install chromium (no playwright install)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_the_first_unit_shows_without_a_click(site, browser):
    page = _open(browser, (site / "units.html").resolve().as_uri())
    first = page.locator("#unit-list tr.has-detail").first.get_attribute("data-unit")
    assert page.evaluate("document.body.dataset.unit") == first
    assert page.eval_on_selector("#tuning", "c => [c.dataset.unit, c.width]") == [first, 5]
    # the tuning map is drawn: its pixels are viridis colours, not an empty canvas
    alpha = page.evaluate("Array.from(document.getElementById('tuning').getContext('2d').getImageData(0, 0, 5, 5).data)"
                          ".filter((v, i) => i % 4 === 3)")
    assert set(alpha) == {255}
    assert page.locator("#unit-list tr.selected").get_attribute("data-unit") == first
    assert page.errors == []
    page.close()


def test_the_picker_survives_a_reload(site, browser):
    from urllib.parse import parse_qsl, urlsplit

    page = _open(browser, (site / "units.html").resolve().as_uri())
    second = page.eval_on_selector_all("#group option", "os => os.map(o => o.value)")[1]
    page.select_option("#group", second)
    rows = page.locator("#unit-list tr.has-detail")
    unit = rows.nth(2).get_attribute("data-unit")
    rows.nth(2).click()
    page.wait_for_function(f"document.body.dataset.unit === '{unit}'")
    q = dict(parse_qsl(urlsplit(page.url).query))
    label = page.eval_on_selector("#group", "s => s.options[s.selectedIndex].textContent")
    assert q["unit"] == unit and q["model"] in label and q["layer"] in label and q["size"] + "px" in label
    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'yes'")
    assert page.eval_on_selector("#group", "s => s.value") == second
    assert page.evaluate("document.body.dataset.unit") == unit
    assert page.eval_on_selector("#tuning", "c => c.dataset.unit") == unit
    assert unit in page.inner_text("#detail-title")
    # a unit the site does not carry, or no such group: the first unit of the first group
    page.goto((site / "units.html").resolve().as_uri() + "?model=nope&layer=x&size=1&unit=99999")
    page.wait_for_function("document.body.dataset.ready === 'yes'")
    first = page.locator("#unit-list tr.has-detail").first.get_attribute("data-unit")
    assert page.evaluate("document.body.dataset.unit") == first
    assert page.errors == []
    page.close()


@pytest.mark.parametrize("width", [1400, 390])
def test_the_units_page_fits_the_window(site, browser, width):
    page = _open(browser, (site / "units.html").resolve().as_uri(), width)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.errors == []
    page.close()


def test_a_unit_units_visualise_drew_is_on_the_site(site, tmp_path, monkeypatch):
    """Even when it is neither featured nor among the first DETAIL units: synthetic.json lists it."""
    import json

    import numpy as np
    from PIL import Image

    from shiftlens.site import quantise, units as units_page
    from shiftlens.store import ResultsDir
    from shiftlens.figures.units import SyntheticImage, add_synthetic

    results = tmp_path / "out"
    shutil.copytree(site.parent, results, ignore=shutil.ignore_patterns("site"))
    rd = ResultsDir(results)
    run = rd.read_run()
    monkeypatch.setattr(units_page, "FEATURED", 1)
    monkeypatch.setattr(units_page, "DETAIL", 3)

    def detail(folder):
        text = (folder / "data" / "units" / "index.js").read_text()
        groups = json.loads(text[text.index(",") + 1:text.rindex(")")])["groups"]
        return {(g["layer"]): g for g in groups}

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "index.html").write_text('<nav id="site-nav"></nav>')
    units_page.build(rd, run, plain, [p.id for p in run.patches], quantise)
    grid = detail(plain)["grid"]
    drawn = next(u for u in reversed(grid["order"]) if u not in grid["detail"])  # not carried so far
    assert len(grid["detail"]) == 3
    file = "figures/units/grid_unit.png"
    (results / "figures" / "units").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(results / file)
    add_synthetic(rd, SyntheticImage(model=grid["model"], layer="grid", kind="maximise", unit=drawn, file=file,
                                     value=1.0, start_value=0.5, gain=1.0, steps=2, tv_weight=0.0, seed=0, seconds=0.1,
                                     untrained=True))
    with_image = tmp_path / "with_image"
    with_image.mkdir()
    (with_image / "index.html").write_text('<nav id="site-nav"></nav>')
    units_page.build(rd, run, with_image, [p.id for p in run.patches], quantise)
    grid = detail(with_image)["grid"]
    assert drawn in grid["detail"] and len(grid["detail"]) == 3
    data = (with_image / "data" / "units" / grid["gid"] / f"u{drawn}.js").read_text()
    assert f'"synthetic":"{file}"' in data and (with_image / file).is_file()


@pytest.fixture(scope="module", params=["circular", "crop", "texture"])
def protocol_site(request, tmp_path_factory, units_model) -> Path:  # noqa: F811
    from test_site_views import CANVAS, PROTOCOL_RUNS, _images, _patches

    root = tmp_path_factory.mktemp(f"units_{request.param}")
    fields = dict(PROTOCOL_RUNS[request.param])
    patches = (f"image:{_images(root / 'images')}" if fields.get("protocol") == "crop"
               else f"folder:{_patches(root / 'in')}")
    cfg = RunConfig(models=[f"{units_model}:grid"], patches=patches, canvas=CANVAS, weights="random",
                    out=str(root / "out"), batch_size=16, site=False, analyses=["similarity", "units"], device="cpu",
                    compile="off", units_topk=3, **fields)
    api.run(cfg)
    build(root / "out")
    return root / "out"


def test_units_exemplars_follow_the_protocol(protocol_site, browser):
    """An exemplar is the canvas the run rendered: a rolled image for circular shifts, a window for crops, the
    patch over a texture; compared pixel for pixel with NumPy."""
    import numpy as np

    from shiftlens.store import ResultsDir
    from test_site_views import CANVAS, expected_image

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((protocol_site / "site" / "units.html").resolve().as_uri())
    page.wait_for_function("document.body.dataset.ready === 'yes'")
    row = page.locator("#unit-list tr.has-detail").first
    unit = row.get_attribute("data-unit")
    row.click()
    page.wait_for_function(f"document.body.dataset.unit === '{unit}'")
    figures = page.eval_on_selector_all(
        "#exemplars figure", "fs => fs.map(f => [f.querySelector('figcaption').textContent, "
        "f.querySelector('canvas').dataset.drawn || ''])")
    assert figures and all(drawn for _, drawn in figures)
    size = ResultsDir(protocol_site).read_run().config.sizes[0]
    for k, (caption, drawn) in enumerate(figures):
        patch_id = caption.split(" @ ")[0]
        y, x = (int(v) for v in drawn.split(","))
        data = page.evaluate("k => Array.from(document.querySelectorAll('#exemplars canvas')[k].getContext('2d')"
                             f".getImageData(0, 0, {CANVAS}, {CANVAS}).data)", k)
        got = np.asarray(data, np.uint8).reshape(CANVAS, CANVAS, 4)[..., :3]
        want = expected_image(protocol_site, patch_id, size, y, x)
        assert np.array_equal(got, want), (patch_id, y, x, int(np.abs(got.astype(int) - want).max()))
    assert errors == []
    page.close()
