"""The baseline: shifted images processed the way the paper's original scripts did it.

1. every shifted image is composited and written to disk as a PNG with Pillow;
2. an ImageFolder-style Dataset reads each PNG back with PIL, applies ToTensor + Normalize, and a DataLoader batches
   them (default num_workers=0, as the scripts ran);
3. the network runs eager in fp32 (default NCHW memory format), forward hooks copy the tapped layers;
4. the features of every image are appended to a text CSV file per layer.

The benchmark calls `measure` (the speed-vs-PNG target's denominator); it also runs alone, from the repository root:

    python -m benchmarks.png_baseline --model alexnet --images 128
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.common import CANVAS, Log, Settings, batch_for, bench_patches, build
from shiftlens.canvases import grid
from shiftlens.patches import Patch


def composite(rgba: np.ndarray, y: int, x: int, canvas: int = 224, background=(255, 255, 255)) -> np.ndarray:
    out = np.empty((canvas, canvas, 3), np.uint8)
    out[:] = np.asarray(background, np.uint8)
    p, q = rgba.shape[:2]
    region = out[y : y + p, x : x + q]
    region[:] = np.where(rgba[..., 3:] > 0, rgba[..., :3], region)
    return out


class ShiftedImages(Dataset):
    """ImageFolder-style: a sorted list of files, each opened with PIL and transformed."""

    def __init__(self, root: Path, transform) -> None:
        self.files = sorted(root.glob("*.png"))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with open(self.files[i], "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.transform(img), i


def run_baseline(model: torch.nn.Module, layers: list[str], rgba: np.ndarray, ys, xs, workdir: Path,
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), batch_size: int = 64, device: str = "cpu",
                 num_workers: int = 0) -> dict:
    """Writes PNGs, reads them through a DataLoader, runs fp32 eager, writes CSV. Returns images/s and stage times."""
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    images_dir = workdir / "images" / "patch"
    images_dir.mkdir(parents=True)
    model = model.to(device).eval()
    captured: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(module, inputs, output):
            captured[name] = output.detach().clone()  # copied before the in-place ReLU
        return fn

    handles = [model.get_submodule(l).register_forward_hook(hook(l)) for l in layers]
    t0 = time.perf_counter()
    # 1. images as PNG
    for i, (y, x) in enumerate(zip(ys, xs)):
        Image.fromarray(composite(rgba, int(y), int(x))).save(images_dir / f"{i:07d}_y{int(y)}_x{int(x)}.png")
    t_png = time.perf_counter()
    # 2-4. DataLoader, fp32 eager forward, CSV
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    loader = DataLoader(ShiftedImages(images_dir, tf), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    files = {l: open(workdir / f"features_{l.replace('.', '_')}.csv", "w", newline="") for l in layers}
    writers = {l: csv.writer(f) for l, f in files.items()}
    t_forward = 0.0
    with torch.no_grad():
        for batch, idx in loader:
            s = time.perf_counter()
            model(batch.to(device))
            t_forward += time.perf_counter() - s
            for l in layers:
                feats = captured[l].flatten(1).cpu().numpy()
                for j, row in zip(idx.tolist(), feats):
                    writers[l].writerow([j, *row.tolist()])
    for f in files.values():
        f.close()
    for h in handles:
        h.remove()
    total = time.perf_counter() - t0
    n = len(ys)
    return {"images": n, "seconds": round(total, 3), "images_per_s": n / total,
            "png_write_s": round(t_png - t0, 3), "forward_s": round(t_forward, 3),
            "load_and_csv_s": round(total - (t_png - t0) - t_forward, 3),
            "csv_mb": round(sum((workdir / f"features_{l.replace('.', '_')}.csv").stat().st_size for l in layers) / 2**20, 1)}


def measure(name: str, st: Settings, device: torch.device, patch: Patch, workdir: Path, log: Log) -> dict[str, Any]:
    """The baseline on `st.png_images` positions of the bench's patch, spread over its stride-1 grid, with the model
    and batch size the pipeline is timed with."""
    built = build(name)
    rgba = patch.resized(st.patch_size)
    ys, xs = grid(CANVAS, st.patch_size, 1)
    sel = np.linspace(0, len(ys) - 1, st.png_images).astype(int)
    entry = built.spec.entry
    res = run_baseline(built.model, [entry.layer(l).module for l in built.spec.layers], rgba, ys[sel], xs[sel],
                       workdir / f"png_{name}", mean=entry.normalisation.mean, std=entry.normalisation.std,
                       batch_size=batch_for(st, name, device), device=str(device))
    log(f"{name} png baseline: {res['images_per_s']:.1f} img/s")
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="alexnet")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=0, help="images per batch (0: the model's auto size)")
    a = ap.parse_args(argv)
    patch = bench_patches(1)[0][0]
    with tempfile.TemporaryDirectory(prefix="shiftlens-png-baseline-") as tmp:
        res = measure(a.model, Settings(png_images=a.images, batch_size=a.batch_size), torch.device("cpu"), patch,
                      Path(tmp), print)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
