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


def test_units_page_loads_and_a_click_shows_a_unit(site):
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail("the website tests need the system Chromium: apt-get install chromium (no playwright install)")
    assert 'href="units.html"' in (site / "index.html").read_text()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
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
        browser.close()


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


def test_units_exemplars_follow_the_protocol(protocol_site):
    """An exemplar is the canvas the run rendered: a rolled image for circular shifts, a window for crops, the
    patch over a texture; compared pixel for pixel with NumPy."""
    import numpy as np
    from playwright import sync_api

    from shiftlens.store import ResultsDir
    from test_site_views import CANVAS, expected_image

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
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
        browser.close()
