"""The site at many objects: the map encoding (error bound, browser decoder = Python decoder), the patch picker's
category filter and search (narrowing, URL state across a reload), and the size benchmark's accounting.

The many-object site is built from the size benchmark's synthetic results folder (benchmarks/site_size.py) with
drawn patches and a coarse stride, so it takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import site_size
from shiftlens.errors import ShiftlensError
from shiftlens.site import MAX_ERROR, QMAX, _script, build, decode_map, encode_map, nearest_kept, quantise, thin_index
from tests.test_site import ARGS, CHROMIUM, choose, heat, hover_cell, open_page, option_values, wait_ready

OBJECTS, CATEGORIES = 36, 6


# ------------------------------------------------------------------------------------------------- encoding
@pytest.mark.parametrize("scale", ["unit", "data"])
def test_encoded_maps_stay_within_the_stated_error(scale):
    rng = np.random.default_rng(3)
    top = 1.0 if scale == "unit" else 60.0
    smooth = np.cumsum(np.cumsum(rng.normal(0, 0.01, (5, 40, 40)), 1), 2) * top
    for arr in (smooth, rng.uniform(-top, top, (5, 40, 40)), rng.uniform(0, top, (17, 23))):
        arr = arr.astype(np.float32)
        payload = encode_map(arr, MAX_ERROR[scale])
        back = decode_map(payload)
        assert back.shape == arr.shape
        assert payload["step"] == pytest.approx(max(2 * MAX_ERROR[scale], (arr.max() - arr.min()) / QMAX))
        assert np.abs(back - arr).max() <= payload["step"] / 2 * (1 + 1e-6)
        if arr.max() - arr.min() <= 2 * MAX_ERROR[scale] * QMAX:
            assert np.abs(back - arr).max() <= MAX_ERROR[scale] * (1 + 1e-6)
    const = decode_map(encode_map(np.full((3, 3), 0.25, np.float32), MAX_ERROR["unit"]))
    assert np.all(const == np.float32(0.25))


def test_a_range_too_wide_for_16_bits_keeps_half_a_step():
    arr = np.linspace(-5e3, 5e3, 400).reshape(20, 20)
    payload = encode_map(arr, MAX_ERROR["data"])
    assert payload["step"] > 2 * MAX_ERROR["data"]
    assert np.abs(decode_map(payload) - arr).max() <= payload["step"] / 2 + 1e-9


def test_class_maps_are_exact_and_smooth_maps_shrink():
    rng = np.random.default_rng(0)
    top1 = rng.choice([3, 281, 999], size=(30, 30)).astype(np.int16)
    top1[:, :15] = 281
    assert np.array_equal(decode_map(encode_map(top1, None)), top1)
    yy, xx = np.mgrid[:150, :150]
    smooth = (0.5 + 0.4 * np.cos(yy / 20) * np.sin(xx / 30)).astype(np.float32)
    new = len(_script("g0/p0", encode_map(smooth, MAX_ERROR["unit"])))
    b64, lo, hi = quantise(smooth)
    old = len(_script("g0/p0", {"lo": lo, "hi": hi, "shape": list(smooth.shape), "q": b64}))
    assert old / new > 3


def test_legacy_size_is_computed_as_the_former_encoding_wrote_it():
    rng = np.random.default_rng(1)
    arr = rng.uniform(0.2, 1.0, (5, 19, 19)).astype(np.float32)
    b64, lo, hi = quantise(arr)
    exact = len(_script("g3/p17", {"lo": lo, "hi": hi, "shape": list(arr.shape), "q": b64}))
    assert abs(site_size._legacy_len("g3/p17", encode_map(arr, MAX_ERROR["unit"])) - exact) <= 8


# ------------------------------------------------------------------------------------------------- a many-object site
@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many") / "results"
    scale = site_size.Scale("stamps", OBJECTS, CATEGORIES, OBJECTS, stride=56, stamps=False)
    rd = site_size.make_results(root, scale, noise=0.002)
    build(rd.root)
    return rd.root


def test_size_benchmark_accounts_for_every_file(many):
    sizes = site_size.site_sizes(many / "site")
    on_disk = sum(f.stat().st_size for f in (many / "site").rglob("*") if f.is_file())
    assert sizes["bytes"] == on_disk
    new, old = sizes["sections"], sizes["legacy_sections"]
    assert set(new) == set(old) and all(old[k] == new[k] for k in new if not k.startswith("maps"))
    assert sizes["files"] > OBJECTS * 3 * 2 * 2  # a file per patch per (model, layer, size), at least
    assert sizes["map_values"] > 0
    errors = site_size.map_errors(site_size.ResultsDir(many), many / "site")
    assert errors["unit"] <= MAX_ERROR["unit"] * (1 + 1e-6) and errors["data"] <= MAX_ERROR["data"] * (1 + 1e-6)
    assert errors["classes"] == 0


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, many):
    pg = open_page(browser, many)
    yield pg
    pg.close()


def _patch_ids(pg) -> list[str]:
    ids = pg.evaluate("() => SL_INDEX.patches.map(p => p.id)")
    return [ids[int(v[2:])] for v in option_values(pg, "#patch") if v.startswith("p:")]


def test_browser_decoder_matches_python(page, many):
    index = json.loads((many / "site" / "data" / "index.js").read_text()[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    for g in index["groups"][:4]:
        for sel in ("all", f"p{g['patches'][-1]}"):
            text = (many / "site" / g["files"][sel]).read_text()
            payload = json.loads(text.split(",", 1)[1].rstrip().rstrip(";").rstrip(")"))
            got = page.evaluate("async (p) => Array.from((await SL.decodeMap(p)).values)", payload)
            assert np.array_equal(np.asarray(got), decode_map(payload).ravel())
    assert page.errors == []


def test_search_and_category_filter_narrow_the_patch_list(page):
    ids = _patch_ids(page)
    assert len(ids) == OBJECTS and page.get_attribute("#pcount", "data-shown") == str(OBJECTS)
    before = heat(page)["checksum"]
    page.fill("#psearch", "object01")
    want = [i for i in ids if "object01" in i]
    assert 0 < len(want) < OBJECTS and _patch_ids(page) == want
    assert page.get_attribute("#pcount", "data-shown") == str(len(want))
    assert heat(page)["checksum"] == before and heat(page)["sel"] == "all"  # narrowing the list keeps the view
    page.fill("#psearch", "")
    cats = option_values(page, "#pcat")
    assert cats[0] == "" and len(cats) == CATEGORIES + 1
    page.select_option("#pcat", cats[2])
    in_cat = _patch_ids(page)
    assert in_cat and all(i.startswith(cats[2] + "/") for i in in_cat)
    assert [v for v in option_values(page, "#patch") if v.startswith("cat:")] == ["cat:" + cats[2]]
    page.fill("#psearch", in_cat[1].split("/")[-1].upper())  # case does not matter; words must all match
    assert _patch_ids(page) == [in_cat[1]]
    page.press("#psearch", "Enter")  # Enter shows the first patch listed
    wait_ready(page)
    assert heat(page)["sel"].startswith("p:") and heat(page)["checksum"] != before
    assert page.errors == []


def test_picker_state_survives_a_reload(page):
    cats = option_values(page, "#pcat")
    page.select_option("#pcat", cats[3])
    page.fill("#psearch", "object")
    listed = _patch_ids(page)
    page.select_option("#patch", option_values(page, "#patch")[-1])
    wait_ready(page)
    view = heat(page)
    page.reload()
    wait_ready(page)
    assert page.input_value("#pcat") == cats[3] and page.input_value("#psearch") == "object"
    assert _patch_ids(page) == listed
    assert heat(page)["sel"] == view["sel"] and heat(page)["checksum"] == view["checksum"]
    page.fill("#psearch", "no such patch")
    assert _patch_ids(page) == [listed[-1]]  # only the patch on show stays listed
    assert page.get_attribute("#pcount", "data-shown") == "0"
    assert page.errors == []


# ------------------------------------------------------------------------------------------------- thinned maps
@pytest.mark.parametrize("n,every", [(150, 2), (100, 2), (19, 3), (7, 4), (2, 2)])
def test_thinning_keeps_the_anchor_cells_and_reads_each_position_from_its_nearest_kept_one(n, every):
    keep = thin_index(n, every)
    assert {0, (n - 1) // 2, n - 1} <= set(keep.tolist()) and np.all(np.diff(keep) > 0)
    assert all(i in keep for i in range(0, n, every))
    near = keep[nearest_kept(n, keep)]
    for i in range(n):  # brute force: the nearest kept position, the lower one on a tie
        best = min(keep.tolist(), key=lambda k: (abs(k - i), k))
        assert near[i] == best


def test_a_thinned_map_decodes_to_full_size_exact_where_kept():
    rng = np.random.default_rng(5)
    arr = rng.uniform(0, 1, (5, 150, 150)).astype(np.float32)
    full = encode_map(arr, MAX_ERROR["unit"])
    thin = encode_map(arr, MAX_ERROR["unit"], every=2)
    assert "thin" not in full and thin["thin"] == [150, 2] and thin["shape"] == [5, 76, 76]
    assert len(thin["z"]) < 0.3 * len(full["z"])
    back = decode_map(thin)
    assert back.shape == arr.shape
    keep = thin_index(150, 2)
    assert np.abs(back[:, keep][:, :, keep] - arr[:, keep][:, :, keep]).max() <= MAX_ERROR["unit"] * (1 + 1e-6)
    near = keep[nearest_kept(150, keep)]
    assert np.array_equal(back, back[:, near][:, :, near])  # every position shows a kept one's value
    assert np.abs(back - arr).max() > 0.1  # and the dropped ones really lose their own (uniform noise)
    top1 = rng.choice([3, 281], size=(150, 150)).astype(np.int16)
    assert np.array_equal(decode_map(encode_map(top1, None, 2)), top1[near][:, near])
    assert "thin" not in encode_map(arr[0, :10, :10], MAX_ERROR["unit"], every=1)


def test_site_thins_large_patch_maps_but_not_means(tmp_path):
    root = tmp_path / "results"
    scale = site_size.Scale("stamps", 4, 2, 4, stride=8, stamps=False)  # grids 19 and 13 per side
    rd = site_size.make_results(root, scale, noise=0.002)
    build(rd.root, max_cells=10)
    index = json.loads((root / "site" / "data" / "index.js").read_text()[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    by_n = {g["n"]: g for g in index["groups"] if g["kind"] == "similarity"}
    assert by_n[19]["thin"] == 2 and by_n[13]["thin"] == 2 and {g["thin"] for g in index["groups"]} == {2}
    g = by_n[19]
    _, per_patch = site_size._payload(root / "site" / g["files"][f"p{g['patches'][0]}"])
    _, mean = site_size._payload(root / "site" / g["files"]["all"])
    assert per_patch["thin"] == [19, 2] and per_patch["shape"][-2:] == [11, 11]
    assert "thin" not in mean and mean["shape"][-2:] == [19, 19]
    errors = site_size.map_errors(rd, root / "site")
    assert errors["unit"] <= MAX_ERROR["unit"] * (1 + 1e-6) and errors["data"] <= MAX_ERROR["data"] * (1 + 1e-6)
    build(rd.root, max_cells=0)
    index = json.loads((root / "site" / "data" / "index.js").read_text()[len("window.SL_INDEX = "):].rstrip().rstrip(";"))
    assert {g["thin"] for g in index["groups"]} == {1}
    with pytest.raises(ShiftlensError, match="max_cells"):
        build(rd.root, max_cells=-1)


def test_real_maps_measure_what_thinning_loses(tmp_path):
    root = tmp_path / "results"
    rd = site_size.make_results(root, site_size.Scale("stamps", 2, 2, 2, stride=8, stamps=False), noise=0.002)
    info = site_size.real_maps(rd.root, every=2)
    t = info["thinned"]
    assert t["every"] == 2 and t["bytes"] < info["bytes"] and t["shrink"] > info["shrink"]
    sim = t["lost"]["similarity"]
    assert 0 < sim["median"] <= sim["p99"] <= sim["max"]
    assert 0 <= t["lost"]["top1"]["share_of_dropped_positions_showing_another_class"] <= 1
    full = np.arange(36, dtype=np.float64).reshape(6, 6)
    lost = site_size.thinning_error(full, 2)  # kept 0, 2, 4, 5: rows/cols 1 and 3 are dropped
    assert lost.size == 36 - 16 and lost.min() >= 1 and lost.max() == 7


@pytest.fixture(scope="module")
def thinned(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("thinned") / "results"
    rd = site_size.make_results(root, site_size.Scale("stamps", 4, 2, 4, stride=8, stamps=False), noise=0.002)
    build(rd.root, max_cells=10)
    return rd.root


def test_browser_expands_thinned_maps_as_python_does_and_the_hover_says_so(browser, thinned):
    pg = open_page(browser, thinned)
    try:
        index = pg.evaluate("() => SL_INDEX")
        g = next(g for g in index["groups"] if g["thin"] > 1)
        _, payload = site_size._payload(thinned / "site" / g["files"][f"p{g['patches'][0]}"])
        got = pg.evaluate("async (p) => Array.from((await SL.decodeMap(p)).values)", payload)
        assert np.array_equal(np.asarray(got), decode_map(payload).ravel())
        choose(pg, "#patch", f"p:{g['patches'][0]}")
        assert int(heat(pg)["n"]) == g["n"]
        hover_cell(pg, 1, 1)  # a dropped position (kept: 0, 2, 4, ..., the centre and the last)
        assert pg.get_attribute("#hover-note", "data-thinned") == "1"
        assert "every 2nd position" in pg.text_content("#hover-note") and "maps.zarr" in pg.text_content("#hover-note")
        hover_cell(pg, 2, 2)  # a kept one
        assert pg.get_attribute("#hover-note", "data-thinned") == "0"
        assert pg.errors == []
    finally:
        pg.close()
