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
