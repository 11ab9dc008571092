"""The website's views, driven in headless Chromium: the view in the URL, panel B's anti-aliased twin, the location
and top-1-class map kinds, per-panel colour floors, YlOrRd, and the hover image under each protocol.

Two kinds of tiny runs: AlexNet beside its anti-aliased twin (random weights, two layers, one size, stride 32, two
patches) for the views, and the input-independent test network on a 64 px canvas for the protocols (a texture
background, a circular shift, the crop protocol), whose hover images are checked pixel for pixel.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from shiftlens import api
from shiftlens.canvases import axis_positions, composite, parse_background, texture_names
from shiftlens.config import RunConfig
from shiftlens.site import build
from shiftlens.store import ResultsDir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
STRIDE = 32
SIZE = 75


def _patches(folder: Path) -> Path:
    """Two opaque-centred blobs of ImageNet-mapped categories (cat, dog), with distinct colours."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:40, :36]
    for name, colour in {"cat_01": (200, 40, 40), "dog_01": (30, 70, 210)}.items():
        a = np.zeros((40, 36, 4), np.uint8)
        a[..., :3] = colour
        a[8:14, 6:30, :3] = (250, 220, 0)
        a[..., 3] = np.where((yy - 20) ** 2 / 400 + (xx - 18) ** 2 / 324 < 1, 255, 0)
        Image.fromarray(a, "RGBA").save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def aa_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site_aa")
    cfg = RunConfig(models=["alexnet:fc6,fc7", "alexnet_aa:fc6,fc7"], patches=f"folder:{_patches(root / 'in')}",
                    sizes=[SIZE], stride=STRIDE, weights="random", analyses=["similarity", "location", "consistency"],
                    out=str(root / "results"), site=False, device="cpu", batch_size=32, compile="off")
    api.run(cfg)
    build(root / "results")
    return root / "results"


@pytest.fixture(scope="module")
def aa_parts(aa_run):
    return {(p.model, p.patch_id): p for p in ResultsDir(aa_run).parts()}


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail("the website tests need the system Chromium: apt-get install chromium (no playwright install)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def open_page(browser, site: Path, query: str = ""):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    pg.goto((site / "index.html").resolve().as_uri() + query)
    wait_ready(pg)
    return pg


@pytest.fixture
def page(browser, aa_run):
    pg = open_page(browser, aa_run / "site")
    yield pg
    pg.close()


def wait_ready(pg) -> None:
    pg.wait_for_function("document.body.dataset.ready !== undefined && document.body.dataset.ready !== ''")


def choose(pg, selector: str, value: str) -> None:
    pg.select_option(selector, value)
    wait_ready(pg)


def heat(pg, side: str = "a") -> dict:
    return pg.eval_on_selector(f"#heat-{side}", "c => Object.assign({}, c.dataset)")


def query(pg) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(pg.url).query))


def controls(pg) -> dict:
    return pg.evaluate("""() => Object.fromEntries(['kind', 'size', 'anchor', 'patch', 'cmap', 'model-a', 'layer-a',
        'model-b', 'layer-b', 'floor-a', 'floor-b'].map(id => [id, document.getElementById(id).value])
        .concat(['compare', 'follow', 'link', 'floor-auto-a', 'floor-auto-b'].map(id => [id, document.getElementById(id).checked])))""")


def set_floor(pg, side: str, value: float) -> None:
    pg.eval_on_selector(f"#floor-{side}", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input', {bubbles: true})); }",
                        str(value))
    wait_ready(pg)


def hover(pg, r: int, c: int, side: str = "a") -> dict:
    n = int(heat(pg, side)["n"])
    box = pg.locator(f"#heat-{side}").bounding_box()
    pg.mouse.move(box["x"] + (c + 0.5) * box["width"] / n, box["y"] + (r + 0.5) * box["height"] / n)
    return pg.evaluate("""() => ({pos: Object.assign({}, document.getElementById('hover-pos').dataset),
        a: Object.assign({}, document.getElementById('hover-value-a').dataset),
        b: Object.assign({}, document.getElementById('hover-value-b').dataset),
        text: document.getElementById('hover-value-a').textContent})""")


def pixels(pg, canvas_id: str) -> np.ndarray:
    data = pg.evaluate("""id => { const c = document.getElementById(id);
        return [c.height, c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""", canvas_id)
    return np.asarray(data[2], np.uint8).reshape(data[0], data[1], 4)


def patch_index(pg, patch_id: str) -> int:
    return pg.evaluate("() => SL_INDEX.patches.map(p => p.id)").index(patch_id)


# ------------------------------------------------------------------------------------------------- URL state
def test_a_link_reopens_the_view(browser, aa_run):
    view = ("?kind=location&size=75&model_a=alexnet_aa&layer_a=fc7&patch=dog_01&compare=1&follow=0"
            "&model_b=alexnet&layer_b=fc6&link=0&floor_a=2.500&floor_b=auto&cmap=YlOrRd")
    pg = open_page(browser, aa_run / "site", view)
    try:
        got = controls(pg)
        j = patch_index(pg, "dog_01")
        assert (got["kind"], got["size"], got["patch"], got["cmap"]) == ("location", "75", f"p:{j}", "YlOrRd")
        assert (got["model-a"], got["layer-a"], got["model-b"], got["layer-b"]) == ("alexnet_aa", "fc7", "alexnet", "fc6")
        assert got["compare"] and not got["follow"] and not got["link"]
        assert not got["floor-auto-a"] and float(got["floor-a"]) == 2.5 and got["floor-auto-b"]
        assert heat(pg)["floor"] == "2.500" and heat(pg)["kind"] == "location"
        assert query(pg)["model_a"] == "alexnet_aa" and query(pg)["floor_a"] == "2.500"
        # change controls: the URL follows (replaceState, no new history entry)
        length = pg.evaluate("() => history.length")
        choose(pg, "#kind", "similarity")
        choose(pg, "#anchor", "TL")
        choose(pg, "#cmap", "viridis")
        q = query(pg)
        assert (q["kind"], q["anchor"], q["cmap"]) == ("similarity", "TL", "viridis")
        assert pg.evaluate("() => history.length") == length
        before = {side: heat(pg, side) for side in "ab"}
        state = controls(pg)
        pg.reload()
        wait_ready(pg)
        assert controls(pg) == state
        assert {side: heat(pg, side) for side in "ab"} == before
        assert pg.errors == []
    finally:
        pg.close()


def test_unknown_url_values_fall_back_to_defaults(browser, page, aa_run):
    default = {side: heat(page, side) for side in "ab"}
    bad = "?kind=nope&size=999&anchor=XX&model_a=vgg&layer_a=fc9&patch=nobody&cat=none&model_b=zzz&floor_a=abc&cmap=jet&link=x"
    pg = open_page(browser, aa_run / "site", bad)
    try:
        assert {side: heat(pg, side) for side in "ab"} == default
        assert pg.errors == []
        assert query(pg)["kind"] == "similarity" and query(pg)["model_a"] == "alexnet"
    finally:
        pg.close()


# ------------------------------------------------------------------------------------------------- the twin
def test_panel_b_shows_the_anti_aliased_twin_and_follows_a(page):
    assert page.is_visible("#panel-b") and page.is_checked("#follow")
    assert (heat(page, "a")["model"], heat(page, "b")["model"]) == ("alexnet", "alexnet_aa")
    assert heat(page, "a")["layer"] == heat(page, "b")["layer"]
    for kind in ("similarity", "location", "top1"):
        choose(page, "#kind", kind)
        assert (heat(page, "a")["model"], heat(page, "b")["model"]) == ("alexnet", "alexnet_aa"), kind
    choose(page, "#kind", "similarity")
    choose(page, "#layer-a", "fc7")
    assert heat(page, "b")["model"] == "alexnet_aa" and heat(page, "b")["layer"] == "fc7"
    choose(page, "#anchor", "BR")
    choose(page, "#patch", f"p:{patch_index(page, 'cat_01')}")
    assert (heat(page, "b")["anchor"], heat(page, "b")["sel"], heat(page, "b")["size"]) == ("BR", heat(page)["sel"], "75")
    choose(page, "#model-a", "alexnet_aa")  # the twin's twin is the plain network
    assert heat(page, "b")["model"] == "alexnet" and heat(page, "b")["layer"] == "fc7"
    # choosing panel B by hand stops the following
    choose(page, "#layer-b", "fc6")
    assert not page.is_checked("#follow")
    choose(page, "#model-a", "alexnet")
    assert (heat(page, "b")["model"], heat(page, "b")["layer"]) == ("alexnet", "fc6")
    page.check("#follow")
    wait_ready(page)
    assert (heat(page, "b")["model"], heat(page, "b")["layer"]) == ("alexnet_aa", "fc7")
    assert page.errors == []


def _renamed_site(site: Path, dest: Path, names: dict[str, list[str]]) -> Path:
    """A copy of `site` whose index lists each model under other names (the same map files): twin pairing by name."""
    shutil.copytree(site, dest)
    path = dest / "data" / "index.js"
    index = json.loads(path.read_text()[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    index["models"] = [new for old in index["models"] for new in names[old]]
    index["groups"] = [dict(g, model=new) for g in index["groups"] for new in names[g["model"]]]
    path.write_text("window.SL_INDEX = " + json.dumps(index) + ";\n")
    return dest


def test_twins_by_name_keep_their_weights_and_include_aps(browser, aa_run, tmp_path):
    names = {"alexnet": ["alexnet@a.pth", "alexnet@b.pth", "resnet50"], "alexnet_aa": ["alexnet_aa@b.pth", "resnet50_aps"]}
    pg = open_page(browser, _renamed_site(aa_run / "site", tmp_path / "site", names))
    try:
        # alexnet@a.pth has no twin with its own weights; alexnet@b.pth has
        assert (heat(pg, "a")["model"], heat(pg, "b")["model"]) == ("alexnet@b.pth", "alexnet_aa@b.pth")
        choose(pg, "#model-a", "resnet50")
        assert heat(pg, "b")["model"] == "resnet50_aps"
        choose(pg, "#model-a", "resnet50_aps")
        assert heat(pg, "b")["model"] == "resnet50"
        choose(pg, "#model-a", "alexnet@a.pth")
        assert pg.is_hidden("#follow-label")
        assert pg.errors == []
    finally:
        pg.close()


def test_untrained_stays_labelled(page):
    assert "UNTRAINED" in page.inner_text("#untrained-banner")
    for side in "ab":
        assert page.is_visible(f"#panel-{side} .panel-title .badge")
        assert "random (untrained)" in page.inner_text(f"#panel-{side} .panel-title")


# ------------------------------------------------------------------------------------------------- map kinds
def test_location_error_map_shows_the_stored_error(page, aa_parts):
    choose(page, "#kind", "location")
    assert page.is_disabled("#anchor") and heat(page)["checksum"] not in ("", "none")
    expected = np.mean([aa_parts[("alexnet", p)].get("location", "fc6", "err_shuffled") for p in ("cat_01", "dog_01")], axis=0)
    for r, c in [(0, 0), (2, 3), (4, 1)]:
        got = hover(page, r, c)
        assert abs(float(got["a"]["value"]) - expected[r, c]) <= float(got["a"]["step"]) / 2 + 1e-4
        assert got["text"].split()[1] == "px"
    assert float(heat(page)["top"]) == pytest.approx(expected.max(), abs=1e-3)
    choose(page, "#kind", "location_paper")
    expected = aa_parts[("alexnet", "cat_01")].get("location", "fc6", "err_paper")
    choose(page, "#patch", f"p:{patch_index(page, 'cat_01')}")
    got = hover(page, 1, 1)
    assert abs(float(got["a"]["value"]) - expected[1, 1]) <= float(got["a"]["step"]) / 2 + 1e-4
    assert page.errors == []


def test_top1_class_map_and_its_legend(page, aa_parts):
    choose(page, "#kind", "top1")
    options = page.eval_on_selector_all("#patch option", "os => os.map(o => o.value)")
    assert options and all(o.startswith("p:") for o in options)  # no mean of class indices
    assert page.is_hidden("#panel-a .colorbar") and page.is_hidden("#cmap-label")
    choose(page, "#patch", f"p:{patch_index(page, 'dog_01')}")
    for side, model in (("a", "alexnet"), ("b", "alexnet_aa")):
        top1 = aa_parts[(model, "dog_01")].get("consistency", "fc8", "top1")
        legend = page.get_attribute(f"#panel-{side} .legend", "data-classes")
        assert sorted(int(c) for c in legend.split(",")) == sorted(np.unique(top1).tolist())
        img = pixels(page, f"heat-{side}")
        colours = page.evaluate("() => SL_INDEX.classes")
        for r, c in [(0, 0), (2, 2), (4, 3)]:
            assert img[r, c, :3].tolist() == colours[str(int(top1[r, c]))]["colour"]
        names = page.inner_text(f"#panel-{side} .legend")
        assert all(colours[str(int(k))]["name"] in names for k in np.unique(top1))
    got = hover(page, 3, 2)
    top1 = aa_parts[("alexnet", "dog_01")].get("consistency", "fc8", "top1")
    assert int(float(got["a"]["value"])) == int(top1[3, 2])
    assert f"({int(top1[3, 2])})" in got["text"]
    assert page.errors == []


# ------------------------------------------------------------------------------------------------- colour
def test_each_panel_has_its_own_floor(page):
    assert page.is_checked("#link") and page.is_disabled("#floor-b")
    set_floor(page, "a", 0.5)
    assert heat(page, "a")["floor"] == heat(page, "b")["floor"] == "0.500"
    page.uncheck("#link")
    wait_ready(page)
    assert not page.is_disabled("#floor-b")
    a_before = heat(page, "a")
    b_before = heat(page, "b")
    set_floor(page, "b", 0.9)
    assert heat(page, "a") == a_before
    assert heat(page, "b")["floor"] == "0.900" and heat(page, "b")["checksum"] != b_before["checksum"]
    assert (query(page)["floor_a"], query(page)["floor_b"], query(page)["link"]) == ("0.500", "0.900", "0")
    page.check("#floor-auto-b")
    wait_ready(page)
    assert heat(page, "b")["floor"] != "0.900" and heat(page, "a")["floor"] == "0.500"
    assert page.errors == []


def _stored(site: Path, kind: str, model: str, layer: str, sel: str) -> np.ndarray:
    """A map as the site stores it (within site.MAX_ERROR of the float32): the colours come from these values."""
    from shiftlens.site import decode_map

    index = json.loads((site / "data" / "index.js").read_text()[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    g = next(g for g in index["groups"] if (g["kind"], g["model"], g["layer"]) == (kind, model, layer))
    text = (site / g["files"][sel]).read_text()
    return decode_map(json.loads(text.split(",", 1)[1].rstrip().rstrip(";").rstrip(")")))


def test_ylorrd_is_a_colour_map_choice(page, aa_run, aa_parts):
    assert "YlOrRd" in page.eval_on_selector_all("#cmap option", "os => os.map(o => o.value)")
    choose(page, "#cmap", "YlOrRd")
    floor = float(heat(page)["floor"])
    expected = aa_parts[("alexnet", "cat_01")].get("similarity", "fc6", "maps")
    expected = (expected + aa_parts[("alexnet", "dog_01")].get("similarity", "fc6", "maps")) / 2
    stored = _stored(aa_run / "site", "similarity", "alexnet", "fc6", "all")
    from shiftlens.site import MAX_ERROR

    assert np.abs(stored - expected).max() <= MAX_ERROR["unit"] * (1 + 1e-6)
    expected = stored
    lut = (np.asarray(matplotlib.colormaps["YlOrRd"](np.linspace(0, 1, 256)))[:, :3] * 255).round().astype(int)
    img = pixels(page, "heat-a")
    hits = 0
    for r in range(5):
        for c in range(5):
            t = (expected[2, r, c] - floor) / (1 - floor)  # anchor C
            k = int(round(min(max(t, 0.0), 1.0) * 255))
            if abs(t * 255 - round(t * 255)) < 0.4:  # away from a rounding edge of the quantised value
                assert np.abs(img[r, c, :3].astype(int) - lut[k]).max() <= 0, (r, c)
                hits += 1
    assert hits >= 10
    assert page.errors == []


# ------------------------------------------------------------------------------------------------- protocols
CANVAS = 64


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in ("field_01", "street_01"):
        Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8), "RGB").save(folder / f"{name}.png")
    return folder


# ------------------------------------------------------------------------------------------------- layout (issue 27)
def page_width(browser, url: str, width: int) -> tuple[int, list[str]]:
    """The page's full width (px) at a viewport `width` px wide, and its console errors."""
    pg = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    try:
        pg.goto(url)
        pg.wait_for_function("document.body.dataset.ready !== undefined && document.body.dataset.ready !== ''")
        pg.wait_for_function("Array.from(document.querySelectorAll('.table-card')).every(c => c.dataset.loaded)")
        return pg.evaluate("() => document.documentElement.scrollWidth"), errors
    finally:
        pg.close()


@pytest.mark.parametrize("width", [1400, 390])
def test_the_page_fits_the_window(browser, aa_run, width):
    got, errors = page_width(browser, (aa_run / "site" / "index.html").resolve().as_uri(), width)
    assert got <= width and errors == []


def test_tables_and_figures_come_in_the_papers_order(page):
    tables = page.eval_on_selector_all(".table-card", "cs => cs.map(c => c.dataset.name)")
    assert tables == ["similarity", "similarity_per_patch", "location", "location_cross_object", "location_per_patch",
                      "consistency", "consistency_per_patch", "intervals"]  # config.ANALYSES (not alphabetical:
    # consistency first), then the intervals over all of them
    figures = page.eval_on_selector_all("#figure-list figcaption", "fs => fs.map(f => f.textContent)")
    assert figures == ["similarity_p75", "location_error_p75"]
    assert page.errors == []


def test_paper_rank_orders_analyses_then_summary_then_sizes():
    from shiftlens.site import paper_rank

    names = ["units_per_unit", "paper_comparison", "class_prob", "location", "similarity_per_patch", "separability",
             "similarity", "my_own", "similarity_p125", "intervals", "similarity_p75", "invariance_tau_p75", "units"]
    assert sorted(names, key=paper_rank) == [
        "similarity", "similarity_p75", "similarity_p125", "similarity_per_patch", "separability", "location",
        "invariance_tau_p75", "class_prob", "units", "units_per_unit", "intervals", "paper_comparison", "my_own"]


def test_a_thumbnail_shows_its_patch_alone(page):
    thumbs = page.locator("#thumbs img.pick")
    assert thumbs.count() == 2  # all patches: each thumbnail is a button
    assert thumbs.nth(1).evaluate("i => getComputedStyle(i).cursor") == "pointer"
    assert thumbs.nth(1).get_attribute("role") == "button"
    before = heat(page)["checksum"]
    name = thumbs.nth(1).get_attribute("alt")
    thumbs.nth(1).click()
    wait_ready(page)
    j = patch_index(page, name)
    assert controls(page)["patch"] == f"p:{j}" and query(page)["patch"] == name
    assert heat(page)["checksum"] != before
    # alone, the thumbnail is no button and does not look like one
    big = page.locator("#thumbs img")
    assert big.count() == 1 and big.get_attribute("class") == "big" and big.get_attribute("role") is None
    assert big.evaluate("i => getComputedStyle(i).cursor") != "pointer"
    # the keyboard reaches it too
    choose(page, "#patch", "all")
    page.locator("#thumbs img.pick").nth(0).focus()
    page.keyboard.press("Enter")
    wait_ready(page)
    assert controls(page)["patch"] == f"p:{patch_index(page, page.get_attribute('#thumbs img', 'alt'))}"
    assert page.errors == []


PROTOCOL_RUNS = {
    "texture": dict(sizes=[24], stride=16, background="texture:" + texture_names()[0]),
    "circular": dict(sizes=[24], stride=16, shift="circular", background="texture:" + texture_names()[-1]),
    "crop": dict(sizes=[96], stride=16, protocol="crop"),
}


@pytest.fixture(scope="module", params=sorted(PROTOCOL_RUNS))
def protocol_run(request, tmp_path_factory, constant_model) -> tuple[str, Path]:
    name = request.param
    root = tmp_path_factory.mktemp(f"site_{name}")
    fields = dict(PROTOCOL_RUNS[name])
    patches = f"image:{_images(root / 'images')}" if fields.get("protocol") == "crop" else f"folder:{_patches(root / 'in')}"
    cfg = RunConfig(models=[f"{constant_model}:spatial"], patches=patches, canvas=CANVAS, weights="random",
                    analyses=["similarity"], out=str(root / "results"), site=False, device="cpu", batch_size=16,
                    compile="off", **fields)
    api.run(cfg)
    build(root / "results")
    return name, root / "results"


def expected_image(results: Path, patch_id: str, size: int, y: int, x: int) -> np.ndarray:
    rd = ResultsDir(results)
    run = rd.read_run()
    cfg = run.config
    png = np.asarray(Image.open(rd.patch_png(size, patch_id)).convert("RGBA"))
    if cfg.protocol == "crop":
        return png[y:y + CANVAS, x:x + CANVAS, :3]
    background = parse_background(cfg.background, CANVAS)
    if not background.flat:  # what the run used: its background.png
        background = np.asarray(Image.open(rd.background_png).convert("RGB"))
    else:
        background = background.rgb
    if cfg.shift == "circular":
        return np.roll(_composite(png, 0, 0, background), (y, x), axis=(0, 1))
    return _composite(png, y, x, background)


def _composite(png: np.ndarray, y: int, x: int, background) -> np.ndarray:
    if isinstance(background, np.ndarray):
        out = background.copy()
        p = png.shape[0]
        region = out[y:y + p, x:x + png.shape[1]]
        region[:] = np.where(png[..., 3:] > 0, png[..., :3], region)
        return out
    return composite(png, y, x, CANVAS, background)


def test_hover_image_follows_the_protocol(browser, protocol_run):
    name, results = protocol_run
    cfg = ResultsDir(results).read_run().config
    pg = open_page(browser, results / "site")
    try:
        line = pg.eval_on_selector("#protocol-line", "e => Object.assign({text: e.textContent}, e.dataset)")
        assert (line["protocol"], line["shift"], line["background"]) == (cfg.protocol, cfg.shift, cfg.background)
        assert cfg.background in line["text"] and cfg.protocol in line["text"]
        if name != "crop":
            assert (results / "site" / "background.png").is_file()
        size = cfg.sizes[0]
        o = axis_positions(CANVAS, size, cfg.stride, cfg.protocol, cfg.shift)
        n = len(o)
        assert heat(pg)["n"] == str(n)
        for r, c in [(n - 1, 1), (1, n - 1), (n - 1, n - 1)]:
            hover(pg, r, c)
            y, x = int(o[r]), int(o[c])
            pg.wait_for_function(f"document.getElementById('shifted').dataset.drawn === '{y},{x}'")
            first = pg.eval_on_selector("#shifted", "c => c.dataset.patch")
            got = pixels(pg, "shifted")[..., :3]
            assert got.shape == (CANVAS, CANVAS, 3)
            want = expected_image(results, first, size, y, x)
            assert np.array_equal(got, want), (name, r, c, int(np.abs(got.astype(int) - want).max()))
        assert pg.errors == []
    finally:
        pg.close()


def test_site_index_records_protocol_and_offsets(protocol_run):
    name, results = protocol_run
    text = (results / "site" / "data" / "index.js").read_text()
    index = json.loads(text[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    cfg = ResultsDir(results).read_run().config
    assert (index["protocol"], index["shift"], index["background"]["label"]) == (cfg.protocol, cfg.shift, cfg.background)
    size = cfg.sizes[0]
    assert index["offsets"][str(size)] == axis_positions(CANVAS, size, cfg.stride, cfg.protocol, cfg.shift).tolist()
    assert (index["background"]["image"] is None) == (name == "crop")
