"""Redraw docs/site.png, the README's picture of the results website, from a built results folder.

    python tools/site_screenshot.py RESULTS_DIR [--out docs/site.png] [--query "?kind=similarity&..."]

Opens RESULTS_DIR/site/index.html in headless system Chromium (as the website tests do), waits for the heatmaps,
hovers one cell so the shifted image shows, and saves the top of the page.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/site.png"))
    ap.add_argument("--query", default="")
    ap.add_argument("--cell", default="4,6", help="row,column of the heatmap cell to hover")
    ap.add_argument("--height", type=int, default=820)
    a = ap.parse_args()
    index = a.results / "site" / "index.html"
    if not index.is_file():
        raise SystemExit(f"{index} does not exist: build the site with `shiftlens report {a.results}` first")
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": a.height})
        page.goto(index.resolve().as_uri() + a.query)
        page.wait_for_function("document.body.dataset.ready !== undefined && document.body.dataset.ready !== ''")
        r, c = (int(v) for v in a.cell.split(","))
        box = page.locator("#heat-a").bounding_box()
        n = int(page.eval_on_selector("#heat-a", "c => c.dataset.n"))
        page.mouse.move(box["x"] + (c + 0.5) * box["width"] / n, box["y"] + (r + 0.5) * box["height"] / n)
        page.wait_for_function("document.getElementById('shifted').dataset.drawn !== undefined")
        page.wait_for_timeout(300)
        page.screenshot(path=str(a.out))
        browser.close()
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
