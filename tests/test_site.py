"""The results website: built from a tiny random-weights run, driven in headless Chromium (system chromium).

The run: two models (efficientnet_lite0 with two layers, mobilenet_v2), sizes 75 and 125, stride 24, two patches
of two categories. A synthetic `class/class/prob` map (n x n) is added to each part when the run has none, so the
similarity / class-probability toggle is exercised with the layout that analysis writes.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from shiftlens import api
from shiftlens.analyses.base import ANCHORS, anchors
from shiftlens.canvases import offsets
from shiftlens.cli import app
from shiftlens.config import RunConfig
from shiftlens.site import MAX_ERROR, QMAX, dequantise, make_server, quantise
from shiftlens.store import ResultsDir, file_key

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
STRIDE = 24
COLOURS = {"dog_1": (200, 30, 30), "cat_1": (20, 60, 220)}


def _make_patches(folder: Path) -> None:
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:60, :50]
    for i, (name, colour) in enumerate(COLOURS.items()):
        a = np.zeros((60, 50, 4), np.uint8)
        a[..., :3] = colour
        a[..., 3] = np.where((yy - 30) ** 2 / 900 + (xx - 25) ** 2 / 625 < 1, 255, 0)
        a[12:20, 12:38, :3] = (255, 255, 0) if i == 0 else (0, 200, 0)
        Image.fromarray(a, "RGBA").save(folder / f"{name}.png")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    _make_patches(root / "patches_in")
    cfg = RunConfig(models=["efficientnet_lite0:pool,fc", "mobilenet_v2"], patches=f"folder:{root / 'patches_in'}",
                    sizes=[75, 125], stride=STRIDE, weights="random", out=str(root / "results"), site=False,
                    max_patches=2, device="cpu", batch_size=64)
    api.run(cfg)
    rd = ResultsDir(root / "results")
    rng = np.random.default_rng(1)
    for path in sorted((rd.root / "parts").glob("*/p*/*.npz")):
        part = rd.load_part(path)
        if not any(k.startswith("class/") for k in part.arrays):
            arrays = dict(part.arrays)
            arrays["class/class/prob"] = rng.uniform(0.0, 0.9, (part.n, part.n)).astype(np.float32)
            rd.save_part(part.meta, arrays)
    result = CliRunner().invoke(app, ["report", str(rd.root)])
    assert result.exit_code == 0, result.output
    assert (rd.root / "site" / "index.html").is_file()
    return rd.root


@pytest.fixture(scope="module")
def parts(results):
    return {(p.model, p.patch_size, p.patch_id): p for p in ResultsDir(results).parts()}


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail("the website tests need the system Chromium: apt-get install chromium (no playwright install)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def open_page(browser, run_dir: Path):
    """The run's site opened from file:// and ready, with every console error, page error and failed request
    collected in `page.errors`."""
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
    pg.goto((run_dir / "site" / "index.html").resolve().as_uri())
    wait_ready(pg)
    pg.errors = errors
    return pg


@pytest.fixture
def page(browser, results):
    pg = open_page(browser, results)
    yield pg
    pg.close()


def wait_ready(pg) -> None:
    pg.wait_for_function("document.body.dataset.ready !== undefined && document.body.dataset.ready !== ''")


def choose(pg, selector: str, value: str) -> None:
    pg.select_option(selector, value)
    wait_ready(pg)


def heat(pg, side: str = "a") -> dict:
    return pg.eval_on_selector(f"#heat-{side}", "c => Object.assign({}, c.dataset)")


def option_values(pg, selector: str) -> list[str]:
    return pg.eval_on_selector_all(f"{selector} option", "os => os.map(o => o.value)")


def hover_cell(pg, r: int, c: int, side: str = "a") -> dict:
    n = int(heat(pg, side)["n"])
    box = pg.locator(f"#heat-{side}").bounding_box()
    pg.mouse.move(box["x"] + (c + 0.5) * box["width"] / n, box["y"] + (r + 0.5) * box["height"] / n)
    out = pg.evaluate("""() => ({pos: Object.assign({}, document.getElementById('hover-pos').dataset),
        a: Object.assign({}, document.getElementById('hover-value-a').dataset),
        b: Object.assign({}, document.getElementById('hover-value-b').dataset),
        text: document.getElementById('hover-value-a').textContent})""")
    return out


def canvas_pixel(pg, canvas_id: str, y: int, x: int) -> list[int]:
    return pg.evaluate(
        "([id, y, x]) => Array.from(document.getElementById(id).getContext('2d').getImageData(x, y, 1, 1).data)",
        [canvas_id, int(y), int(x)])


def expected_map(parts, model: str, layer: str, size: int, sel: str, kind: str = "similarity") -> np.ndarray:
    members = [p for (m, s, _), p in parts.items() if m == model and s == size]
    if sel.startswith("p:"):
        members = [p for p in members if p.patch_id == sel[2:]]
    elif sel.startswith("cat:"):
        members = [p for p in members if p.category == sel[4:]]
    name = "maps" if kind == "similarity" else "prob"
    arrs = [np.asarray(p.get(kind, layer, name), np.float64).reshape(-1, p.n, p.n) for p in members]
    return np.mean(arrs, axis=0)


def patch_value(pg, patch_id: str) -> str:
    ids = pg.evaluate("() => SL_INDEX.patches.map(p => p.id)")
    return f"p:{ids.index(patch_id)}"


# ------------------------------------------------------------------------------------------------- unit tests
def test_patch_origin_names_the_package_version_licence_and_file():
    from shiftlens.site import patch_origin
    from shiftlens.store import PatchRecord

    rec = PatchRecord(id="animals/birds/crow", category="animals/birds", source="tuxpaint", licence="GPL-2",
                      provenance={"package": "tuxpaint-stamps-default", "version": "2022.06.04-1",
                                  "file": "/usr/share/tuxpaint/stamps/animals/birds/crow.png"}, file="x")
    assert patch_origin(rec) == ("tuxpaint-stamps-default 2022.06.04-1, licence GPL-2, "
                                 "/usr/share/tuxpaint/stamps/animals/birds/crow.png")


def test_quantise_round_trip_within_half_a_step():
    rng = np.random.default_rng(0)
    a = rng.uniform(-0.3, 1.0, (5, 31, 31)).astype(np.float32)
    b64, lo, hi = quantise(a)
    back = dequantise(b64, lo, hi, a.shape)
    step = (hi - lo) / QMAX
    assert np.abs(back - a).max() <= step / 2 + 1e-12
    assert lo == pytest.approx(float(a.min())) and hi == pytest.approx(float(a.max()))
    const = quantise(np.ones((2, 2), np.float32))
    assert np.all(dequantise(*const, (2, 2)) == 1.0)


def test_site_files_are_static_and_self_contained(results):
    site = results / "site"
    index = (site / "data" / "index.js").read_text()
    assert index.startswith("window.SL_INDEX = ")
    data = json.loads(index[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    assert set(data["models"]) == {"efficientnet_lite0", "mobilenet_v2"}
    assert set(data["kinds"]) == {"similarity", "class"}
    for g in data["groups"]:
        for f in g["files"].values():
            assert (site / f).is_file()
    for t in data["tables"]:
        assert (site / t["file"]).is_file() and (site / t["js"]).is_file()
    assert {t["name"] for t in data["tables"]} == {p.stem for p in (results / "tables").glob("*.csv")}
    assert {f["file"] for f in data["figures"]} == {f"figures/{p.name}" for p in (results / "figures").glob("*.png")}
    for p in data["patches"]:
        assert "licence" in p["origin"] and p["id"] in p["origin"]  # the source's file, as run.json records it
        for size in p["sizes"]:
            assert (site / "patches" / f"p{size}" / f"{p['file']}.png").is_file()
    text = "".join(f.read_text() for f in site.glob("*.html")) + (site / "app.js").read_text()
    assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text
    assert "fetch(" not in (site / "app.js").read_text().split("*/", 1)[1]
    # every page the site has works here: the Arithmetic page belongs to `shiftlens arithmetic` folders only
    assert {"index.html", "app.js", "canvas.js"} <= {f.name for f in site.iterdir()}
    assert not list(site.glob("arithmetic.*")) and not list(site.glob("units.*"))  # this run has no units analysis


# ------------------------------------------------------------------------------------------------- browser
def test_page_loads_without_console_errors(page, results):
    assert page.errors == []
    assert heat(page)["checksum"] not in ("", "none")
    assert page.is_visible("#untrained-banner")
    assert "UNTRAINED" in page.inner_text("#untrained-banner")
    assert "efficientnet_lite0" in page.inner_text("#models-table") and "mobilenet_v2" in page.inner_text("#models-table")
    assert page.inner_text("#timings-table").count("efficientnet_lite0/p") == 2
    # figures show and load
    n_fig = len(list((results / "figures").glob("*.png")))
    page.wait_for_function(f"Array.from(document.querySelectorAll('#figure-list img')).filter(i => i.complete && i.naturalWidth > 0).length === {n_fig}")


def test_each_control_changes_the_heatmap(page):
    def changed(action) -> None:
        before = heat(page)
        action()
        after = heat(page)
        assert after["checksum"] != before["checksum"], (before, after)
        assert page.errors == []

    changed(lambda: choose(page, "#model-a", "mobilenet_v2"))
    assert heat(page)["model"] == "mobilenet_v2"
    changed(lambda: choose(page, "#model-a", "efficientnet_lite0"))
    assert option_values(page, "#layer-a") == ["pool", "fc"]
    other = "pool" if heat(page)["layer"] == "fc" else "fc"
    changed(lambda: choose(page, "#layer-a", other))
    assert heat(page)["layer"] == other
    changed(lambda: choose(page, "#size", "125"))
    assert heat(page)["size"] == "125" and heat(page)["n"] == str(len(offsets(224, 125, STRIDE)))
    changed(lambda: choose(page, "#anchor", "TL"))
    assert heat(page)["anchor"] == "TL"
    assert option_values(page, "#patch")[:3] == ["all", "cat:cat", "cat:dog"]
    changed(lambda: choose(page, "#patch", patch_value(page, "dog_1")))
    assert page.is_visible("#thumbs img.big")
    assert page.get_attribute("#thumbs img", "src").endswith(f"p125/{file_key('dog_1')}.png")
    assert "licence unknown" in page.inner_text("#thumbs .origin") and "dog_1" in page.inner_text("#thumbs .origin")
    changed(lambda: choose(page, "#patch", "cat:cat"))

    def set_floor(value: float) -> None:
        page.eval_on_selector("#floor-a", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input', {bubbles: true})); }",
                              str(value))
    floor0 = float(heat(page)["floor"])
    changed(lambda: set_floor(round((floor0 + 1.0) / 2, 3)))
    assert float(heat(page)["floor"]) == pytest.approx(round((floor0 + 1.0) / 2, 3))
    assert not page.is_checked("#floor-auto-a")
    changed(lambda: choose(page, "#cmap", "viridis"))
    assert heat(page)["cmap"] == "viridis"
    changed(lambda: choose(page, "#cmap", "gray"))
    # kind toggle: class probability (no anchor)
    changed(lambda: choose(page, "#kind", "class"))
    assert heat(page)["kind"] == "class" and page.is_disabled("#anchor")
    assert option_values(page, "#layer-a") == ["class"]
    assert page.errors == []


@pytest.mark.parametrize("model,layer,size,anchor,sel", [
    ("efficientnet_lite0", "pool", 75, "C", "all"),
    ("efficientnet_lite0", "fc", 125, "TR", "cat:dog"),
    ("mobilenet_v2", "fc", 75, "BL", "p:cat_1"),
])
def test_hover_shows_stored_value_and_shifted_image(page, parts, results, model, layer, size, anchor, sel):
    choose(page, "#model-a", model)
    choose(page, "#layer-a", layer)
    choose(page, "#size", str(size))
    choose(page, "#anchor", anchor)
    choose(page, "#patch", patch_value(page, sel[2:]) if sel.startswith("p:") else sel)
    expected = expected_map(parts, model, layer, size, sel)[ANCHORS.index(anchor)]
    o = offsets(224, size, STRIDE)
    n = len(o)
    for r, c in [(0, 0), (n - 1, 1), (n // 2, n - 1), (1, n // 2)]:
        got = hover_cell(page, r, c)
        assert (int(got["pos"]["row"]), int(got["pos"]["col"])) == (r, c)
        assert (int(got["pos"]["y"]), int(got["pos"]["x"])) == (o[r], o[c])
        step = float(got["a"]["step"])
        assert step <= 2 * MAX_ERROR["unit"] * (1 + 1e-9)  # the site's stated precision (site.encode_map)
        assert abs(float(got["a"]["value"]) - expected[r, c]) <= step / 2 + 1e-6, (r, c, got, expected[r, c])
        assert abs(float(got["text"].split()[0]) - expected[r, c]) <= step / 2 + 1e-6  # the value shown
    # the composed image: the patch at (y, x) on the white canvas, and the anchor image beside it
    r, c = n - 1, 1
    hover_cell(page, r, c)
    y, x = int(o[r]), int(o[c])
    page.wait_for_function(f"document.getElementById('shifted').dataset.drawn === '{y},{x}'")
    first = sel[2:] if sel.startswith("p:") else page.eval_on_selector("#shifted", "c => c.dataset.patch")
    png = np.asarray(Image.open(results / "patches" / f"p{size}" / f"{file_key(first)}.png").convert("RGBA"))
    inside = np.argwhere(png[..., 3] > 0)
    py, px = inside[len(inside) // 2]
    assert canvas_pixel(page, "shifted", y + py, x + px)[:3] == png[py, px, :3].tolist()
    assert canvas_pixel(page, "shifted", y + py, x + px)[:3] != [255, 255, 255]
    outside = (0, 223) if (x > 0 or y + size <= 223) else (223, 0)
    assert canvas_pixel(page, "shifted", *outside)[:3] == [255, 255, 255]
    ar, ac = divmod(anchors(n)[anchor], n)
    page.wait_for_function(f"document.getElementById('anchor-img').dataset.drawn === '{o[ar]},{o[ac]}'")
    assert canvas_pixel(page, "anchor-img", int(o[ar]) + py, int(o[ac]) + px)[:3] == png[py, px, :3].tolist()
    assert page.errors == []


def test_side_by_side_panel_shares_the_scale(page, parts):
    assert page.is_checked("#compare") and page.is_visible("#panel-b")
    a, b = heat(page, "a"), heat(page, "b")
    assert (a["model"], b["model"]) == ("efficientnet_lite0", "mobilenet_v2")
    assert a["floor"] == b["floor"] and a["cmap"] == b["cmap"]
    # auto floor is the min over both panels
    ea = expected_map(parts, "efficientnet_lite0", a["layer"], 75, "all")[ANCHORS.index("C")]
    eb = expected_map(parts, "mobilenet_v2", b["layer"], 75, "all")[ANCHORS.index("C")]
    assert float(a["floor"]) <= min(ea.min(), eb.min()) + 1e-3
    got = hover_cell(page, 2, 3, side="b")
    assert abs(float(got["b"]["value"]) - eb[2, 3]) <= float(got["b"]["step"]) / 2 + 1e-6
    assert abs(float(got["a"]["value"]) - ea[2, 3]) <= float(got["a"]["step"]) / 2 + 1e-6
    # panel B: its own model and layer
    before = heat(page, "b")["checksum"]
    choose(page, "#model-b", "efficientnet_lite0")
    choose(page, "#layer-b", "fc")
    assert heat(page, "b")["layer"] == "fc" and heat(page, "b")["checksum"] != before
    assert heat(page, "a")["floor"] == heat(page, "b")["floor"]
    page.uncheck("#compare")
    wait_ready(page)
    assert not page.is_visible("#panel-b")
    page.check("#compare")
    wait_ready(page)
    assert page.is_visible("#panel-b")
    assert page.errors == []


def test_tap_on_touch_screen_shows_the_cell(browser, results, parts):
    ctx = browser.new_context(viewport={"width": 420, "height": 900}, has_touch=True, is_mobile=True)
    pg = ctx.new_page()
    try:
        pg.goto((results / "site" / "index.html").resolve().as_uri())
        wait_ready(pg)
        n = int(heat(pg)["n"])
        pg.locator("#heat-a").scroll_into_view_if_needed()
        box = pg.locator("#heat-a").bounding_box()
        pg.touchscreen.tap(box["x"] + (2 + 0.5) * box["width"] / n, box["y"] + (1 + 0.5) * box["height"] / n)
        pos = pg.eval_on_selector("#hover-pos", "e => Object.assign({}, e.dataset)")
        assert (int(pos["row"]), int(pos["col"])) == (1, 2)
        expected = expected_map(parts, heat(pg)["model"], heat(pg)["layer"], 75, "all")[ANCHORS.index("C")]
        value = float(pg.get_attribute("#hover-value-a", "data-value"))
        assert abs(value - expected[1, 2]) <= float(pg.get_attribute("#hover-value-a", "data-step")) / 2 + 1e-6
    finally:
        ctx.close()


def test_class_probability_hover(page, parts):
    choose(page, "#kind", "class")
    choose(page, "#model-a", "mobilenet_v2")
    choose(page, "#patch", patch_value(page, "dog_1"))
    expected = expected_map(parts, "mobilenet_v2", "class", 75, "p:dog_1", kind="class")[0]
    got = hover_cell(page, 1, 2)
    assert abs(float(got["a"]["value"]) - expected[1, 2]) <= float(got["a"]["step"]) / 2 + 1e-6
    assert not page.is_visible("#anchor-fig")
    assert page.errors == []


def test_tables_sort_and_download(page, results):
    names = sorted(p.stem for p in (results / "tables").glob("*.csv"))
    assert sorted(page.eval_on_selector_all(".table-card", "cs => cs.map(c => c.dataset.name)")) == names
    for name in names:
        page.wait_for_selector(f"#table-{name}[data-loaded=true]")
        href = page.get_attribute(f"#table-{name} a.download", "href")
        assert (results / "site" / href).read_bytes() == (results / "tables" / f"{name}.csv").read_bytes()
    df = pd.read_csv(results / "tables" / "similarity_per_patch.csv")
    card = "#table-similarity_per_patch"
    col = list(df.columns).index("mean")

    def column() -> list[float]:
        return [float(t) for t in page.eval_on_selector_all(
            f"{card} tbody tr td:nth-child({col + 1})", "tds => tds.map(t => t.textContent)")]

    assert len(column()) == len(df)
    page.click(f"{card} th[data-col='{col}']")
    assert column() == sorted(column()) and page.get_attribute(f"{card} th[data-col='{col}']", "aria-sort") == "ascending"
    page.click(f"{card} th[data-col='{col}']")
    assert column() == sorted(column(), reverse=True)
    assert column()[0] == pytest.approx(df["mean"].max(), abs=1e-5)
    # text column, and the filter box
    mcol = list(df.columns).index("model")
    page.click(f"{card} th[data-col='{mcol}']")
    models = page.eval_on_selector_all(f"{card} tbody tr td:nth-child({mcol + 1})", "tds => tds.map(t => t.textContent)")
    assert models == sorted(models)
    page.fill(f"{card} input", "mobilenet")
    assert len(column()) == int((df["model"] == "mobilenet_v2").sum())
    assert page.errors == []


def test_report_on_a_folder_without_a_run_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "run.json" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------------- serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_server_binds_localhost(results):
    server = make_server(results / "site", 0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10).read().decode()
        assert "data/index.js" in body
        js = urllib.request.urlopen(f"http://127.0.0.1:{port}/data/index.js", timeout=10).read().decode()
        assert js.startswith("window.SL_INDEX")
    finally:
        server.shutdown()
        server.server_close()


def test_serve_command_builds_and_serves_on_localhost(results, tmp_path):
    # a copy without site/: serve builds it first
    copy = tmp_path / "run"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("site", "maps.zarr"))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shiftlens", "serve", str(copy), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        body = None
        while time.time() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        assert body is not None and "shiftlens" in body, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert (copy / "site" / "index.html").is_file()
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True) \
            if shutil.which("ss") else None
        if listening is not None and listening.returncode == 0 and listening.stdout.strip():
            assert all("127.0.0.1:" in line for line in listening.stdout.strip().splitlines())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = proc.stdout.read()
    assert f"http://127.0.0.1:{port}/" in out
