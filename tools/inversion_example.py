"""The figure of docs/inversion.md: bundled objects at two positions, and their natural pre-images from
EfficientNet-Lite0's pool and fc features (ImageNet weights), with the feature loss each reached.

    python tools/inversion_example.py                      # the defaults -> docs/inversion_example.png
    python tools/inversion_example.py --set steps=100 --set tv_weight=5 --out /tmp/try.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from shiftlens.canvases import composite  # noqa: E402
from shiftlens.config import RunConfig  # noqa: E402
from shiftlens.inversion import InversionSettings, invert, load_feature_net  # noqa: E402
from shiftlens.patches import load_patches  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "inversion_example.png"
OBJECTS = ["quokka_01", "cup_01", "rocket_01"]
POSITIONS = [(16, 16), (108, 108)]  # top-left and bottom-right quarters of the 224 px canvas
SIZE = 100


def parse_value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", default=",".join(OBJECTS), help="bundled object ids, comma-separated")
    ap.add_argument("--layers", default="pool,fc")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="an inversion setting")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    settings = InversionSettings.with_overrides(None, **overrides)
    patches = {p.id: p for p in load_patches(RunConfig())}
    objects = args.objects.split(",")
    layers = args.layers.split(",")
    canvases = [composite(patches[o].resized(SIZE), y, x) for o in objects for (y, x) in POSITIONS]
    images = torch.from_numpy(np.stack(canvases)).permute(0, 3, 1, 2).float() / 255
    results = {}
    for layer in layers:
        net = load_feature_net(f"efficientnet_lite0:{layer}")
        with torch.no_grad():
            targets = net(images)
        t0 = time.perf_counter()
        results[layer] = invert(net, None, targets, settings=settings)
        print(f"{layer}: {len(canvases)} images x {settings.steps} steps in {time.perf_counter() - t0:.0f} s "
              f"({torch.get_num_threads()} threads), feature loss "
              + ", ".join(f"{v:.3f}" for v in results[layer].feature_loss.tolist())
              + f" (median {results[layer].feature_loss.median().item():.3f})", flush=True)
    cols = 1 + len(layers)
    fig, axes = plt.subplots(len(canvases), cols, figsize=(1.75 * cols, 1.9 * len(canvases)), squeeze=False)
    for i, canvas in enumerate(canvases):
        panels = [(canvas, "original" if i == 0 else "")]
        panels += [(results[l].to_uint8()[i], f"{l}: loss {results[l].feature_loss[i].item():.2f}") for l in layers]
        for j, (img, label) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label if j else "", fontsize=7)
        axes[i, 0].set_ylabel(f"{objects[i // len(POSITIONS)]}\n@{POSITIONS[i % len(POSITIONS)]}", fontsize=7)
    for j, title in enumerate(["original", *[f"Lite0 {l}" for l in layers]]):
        axes[0, j].set_title(title, fontsize=8)
    fig.suptitle(f"optimise inverter, {settings.steps} steps, tv {settings.tv_weight}, seed {settings.seed}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=72)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
