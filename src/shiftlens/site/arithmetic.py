"""The Arithmetic page: `build(results_dir)` writes `results_dir/site/` for a folder made by `shiftlens arithmetic`.

Static, no network, works from file://: index.html and arithmetic.js (hand-written, in assets/), data/arithmetic.js
(`window.SL_ARITH`: the run summary, the expressions with their numbers, every table's CSV text, the figures),
figures/*.png and tables/*.csv copied for display and download.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from shiftlens.errors import ShiftlensError
from shiftlens.analyses.arithmetic.record import ArithmeticRecord
from shiftlens.store import ResultsDir, atomic_dir, copy_file

ASSETS = Path(__file__).parent / "assets"
PAGE = ("arithmetic.html", "arithmetic.js")


def _summary(run: ArithmeticRecord) -> dict[str, Any]:
    return {
        "models": [{"model": k, "layers": m.layers, "weights": m.weights.label, "untrained": m.weights.untrained}
                   for k, m in run.models.items()],
        "untrained": run.untrained,
        "device": run.device.model_dump(),
        "precision": run.precision,
        "status": run.status,
        "started": run.started,
        "finished": run.finished,
        "fingerprint": run.fingerprint,
        "scenes": run.scenes,
        "expressions": run.expressions,
        "problems": run.problems,
        "inversions": [r.model_dump(exclude={"settings", "key"}) for r in run.inversions],
        "notes": run.notes,
        "config": {k: getattr(run.config, k) for k in ("patches", "size", "stride", "canvas", "weights", "seed",
                                                       "inverter", "inversion_steps")},
    }


def _expressions(run: ArithmeticRecord, per: pd.DataFrame | None) -> list[dict[str, Any]]:
    from shiftlens.figures.arithmetic import figure_name

    out = []
    for name, text in run.expressions.items():
        rows: list[dict[str, Any]] = []
        if per is not None:
            sub = per[(per["kind"] == "expression") & (per["problem"] == name)]
            cols = ["model", "layer", "weights", "probe", "cos_result", "cos_uncorrected", "cos_best_operand",
                    "cos_gain", "rank", "n_candidates", "pixel_error"]
            rows = json.loads(sub[cols].to_json(orient="records"))
        fig = f"figures/{figure_name(name)}.png"
        out.append({"name": name, "text": text, "figure": fig if fig in run.figures else None, "rows": rows})
    return out


def build(results_dir: Path | str) -> Path:
    """Write `results_dir/site/` (the Arithmetic page) from an arithmetic run; returns the site folder."""
    rd = ResultsDir(results_dir)
    run = rd.read_run(ArithmeticRecord)
    if run is None:
        raise ShiftlensError(f"{rd.root} holds no run.json: give a results folder made by `shiftlens arithmetic`")
    with rd.lock():
        rd.refuse_links()  # nothing from outside the folder is published through a link
        with atomic_dir(rd.site_dir, prefix=".site.") as tmp:
            _build_into(rd, run, tmp)
    return rd.site_dir


def _build_into(rd: ResultsDir, run: ArithmeticRecord, site: Path) -> None:
    copy_file(ASSETS / "arithmetic.html", site / "index.html")
    copy_file(ASSETS / "arithmetic.js", site / "arithmetic.js")
    tables: dict[str, str] = {}
    for name in run.tables:  # each checked against the digest run.json recorded
        tables[name] = rd.checked_table(run, name)
        (site / "tables").mkdir(exist_ok=True)
        (site / "tables" / f"{name}.csv").write_text(tables[name], encoding="utf-8")
    figures = []
    for rel in run.figures:
        src = rd.root / rel
        if rd.is_inside(src, rd.figures_dir) and src.is_file():  # a name in run.json never leads out
            copy_file(src, site / "figures" / src.name)
            figures.append({"name": src.stem, "file": f"figures/{src.name}"})
    per = (pd.read_csv(io.StringIO(tables["arithmetic_per_problem"])) if "arithmetic_per_problem" in tables
           else None)
    data = {
        "format": 1,
        "title": f"shiftlens feature arithmetic: {rd.root.resolve().name}",
        "summary": _summary(run),
        "expressions": _expressions(run, per),
        "tables": tables,
        "figures": figures,
    }
    (site / "data").mkdir()
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str).replace("</", "<\\/")
    (site / "data" / "arithmetic.js").write_text(f"window.SL_ARITH = {text};\n", encoding="utf-8")
