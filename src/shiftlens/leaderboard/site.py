"""The Leaderboard page: `build(out, table)` writes OUT/site/ (static, no CDN, works from file://).

    index.html, leaderboard.js, style.css   hand-written assets (style.css is the results site's)
    data/leaderboard.js                     `SL.loaded("leaderboard", {...})`: rows, metric definitions and
                                            directions, the published-number columns, the figure
    figures/*.png, tables/*.csv             copies for display and download

Each row links to its model's own results site at ../models/KEY/site/index.html (relative, so the leaderboard
folder can be moved or copied whole).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from shiftlens.leaderboard import anchors
from shiftlens.leaderboard.metrics import METRICS
from shiftlens.store import ResultsDir, atomic_dir, copy_file

ASSETS = Path(__file__).parent / "assets"
STYLE = Path(__file__).parent.parent / "site" / "assets" / "style.css"
IDENTITY = {
    "model": "the model spec's name (with its own weights when the spec carries them)",
    "layer": "the tapped layer",
    "weights": "imagenet, random (UNTRAINED) or a checkpoint",
    "net_stride": "the network's total stride in px (declared or measured): the grid share's period",
}
PUBLISHED = {
    "published_crop_consistency": "PUBLISHED, different protocol: Zhang 2019's consistency, two random 224 px crops "
                                  "of ImageNet validation images (fraction)",
    "published_accuracy": "PUBLISHED, different protocol: Zhang 2019's ImageNet top-1 accuracy (fraction)",
    "published_circular_consistency": "PUBLISHED, different protocol: Chaman & Dokmanić 2021, circular shifts",
}


def _records(table: pd.DataFrame) -> list[dict]:
    clean = table.replace({np.nan: None})
    return json.loads(clean.to_json(orient="records"))


def payload(table: pd.DataFrame, notes: list[str] | None = None) -> dict:
    ranks = [f"rank_{m.name}" for m in METRICS if m.ranked]
    return {
        "rows": _records(table),
        "identity": IDENTITY,
        "metrics": [{"name": m.name, "direction": m.direction, "definition": m.definition, "ranked": m.ranked}
                    for m in METRICS],
        "ranks": ranks,
        "published": PUBLISHED,
        "published_meta": anchors.COLUMNS[3:],
        "notes": list(notes or []),
    }


def build(out: Path | str, table: pd.DataFrame, notes: list[str] | None = None) -> Path:
    """`notes`: lines shown as banners above the table (e.g. why the grid share is empty)."""
    rd = ResultsDir(out)
    with atomic_dir(rd.site_dir, prefix=".site.") as tmp:
        for f in ASSETS.iterdir():
            if f.is_file():
                copy_file(f, tmp / f.name)
        copy_file(STYLE, tmp / "style.css")
        data = payload(table, notes)
        figure = rd.root / "figures" / "canvas_vs_zhang2019.png"
        data["figure"] = None
        if figure.is_file():
            copy_file(figure, tmp / "figures" / figure.name)
            data["figure"] = f"figures/{figure.name}"
        for csv in sorted(rd.tables_dir.glob("*.csv")):
            copy_file(csv, tmp / "tables" / csv.name)
        (tmp / "data").mkdir()
        text = f"SL.loaded(\"leaderboard\",{json.dumps(data, separators=(',', ':'))});\n"
        (tmp / "data" / "leaderboard.js").write_text(text, encoding="utf-8")
    return rd.site_dir
