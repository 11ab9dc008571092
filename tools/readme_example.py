"""Copy a run's tables and figures into docs/example/ and print the README's example section as Markdown.

    python tools/readme_example.py results/quick > /tmp/example.md
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

from shiftlens.store import ResultsDir

DOCS = Path(__file__).resolve().parents[1] / "docs" / "example"


def markdown(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [floatfmt.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(run_dir: str) -> None:
    run = Path(run_dir)
    record = ResultsDir(run).read_run()
    if record is None:
        sys.exit(f"{run} holds no run.json: give a results folder made by `shiftlens run`")
    if DOCS.exists():
        shutil.rmtree(DOCS)
    (DOCS / "tables").mkdir(parents=True)
    (DOCS / "figures").mkdir()
    for csv in sorted((run / "tables").glob("*.csv")):
        shutil.copy(csv, DOCS / "tables" / csv.name)
    for png in sorted((run / "figures").glob("*.png")):
        shutil.copy(png, DOCS / "figures" / png.name)
    shutil.copy(run / "run.json", DOCS / "run.json")

    sim = pd.read_csv(run / "tables" / "similarity.csv")
    sim["cell"] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(sim["mean"], sim["std"])]
    wide = sim.pivot_table(index=["model", "layer", "weights", "patch_size"], columns="anchor", values="cell",
                           aggfunc="first", sort=False)[["TL", "TR", "C", "BL", "BR"]].reset_index()
    sep = pd.read_csv(run / "tables" / "separability.csv")
    sep["cell"] = [f"{m:.3f} ({s:.3f})" for m, s in zip(sep["acc_mean"], sep["acc_std"])]
    sep_wide = sep.pivot_table(index=["model", "layer", "patch_size", "protocol"], columns="task", values="cell",
                               aggfunc="first", sort=False).reset_index()
    total = sum(t.seconds for t in record.timings.values())
    images = sum(t.images for t in record.timings.values())
    models = ", ".join(record.models)
    weights = ", ".join(sorted({m.weights.label for m in record.models.values()}))
    print(f"Output of `shiftlens run` (quick preset: {len(record.patches)} bundled objects x {models}, "
          f"weights {weights}, sizes {record.config.sizes}, stride {record.config.stride}, {record.precision}, "
          f"{record.device.name}; {images:,} images in {total:.0f} s of compute). The full output is in "
          "[`docs/example/`](docs/example/).\n")
    print("Similarity to each anchor, mean ± std over patches of each patch's mean map (as the paper's Tables 1 and 2):\n")
    print(markdown(wide))
    print("\nSeparability, mean accuracy (mean fold std), both fold protocols (as the paper's Tables 3 and 4):\n")
    print(markdown(sep_wide))
    for fig in sorted((DOCS / "figures").glob("*.png")):
        print(f"\n![{fig.stem}](docs/example/figures/{fig.name})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/quick")
