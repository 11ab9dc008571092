"""The baseline: shifted images processed the way the paper's original scripts did it.

1. every shifted image is composited and written to disk as a PNG with Pillow;
2. an ImageFolder-style Dataset reads each PNG back with PIL, applies ToTensor + Normalize, and a DataLoader batches
   them (default num_workers=0, as the scripts ran);
3. the network runs eager in fp32 (default NCHW memory format), forward hooks copy the tapped layers;
4. the features of every image are appended to a text CSV file per layer.

`shiftlens bench` imports this file and calls `run_baseline`; it also runs alone:

    python benchmarks/png_baseline.py --model alexnet --images 128
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


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


def main() -> None:
    from shiftlens.canvases import grid
    from shiftlens.models import build_with_weights, parse_spec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="alexnet")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workdir", default="/tmp/shiftlens-png-baseline")
    a = ap.parse_args()
    spec = parse_spec(a.model)
    model, _ = build_with_weights(spec.entry, "imagenet" if a.model == "efficientnet_lite0" else "random", 0)
    yy, xx = np.mgrid[:75, :75] / 75
    rgba = np.zeros((75, 75, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 255, (75, 75, 3), dtype=np.uint8)
    rgba[..., 3] = np.where((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16, 255, 0)
    ys, xs = grid(224, 75, 1)
    sel = np.linspace(0, len(ys) - 1, a.images).astype(int)
    res = run_baseline(model, [spec.entry.layer(l).module for l in spec.layers], rgba, ys[sel], xs[sel],
                       Path(a.workdir), spec.entry.normalisation.mean, spec.entry.normalisation.std, a.batch_size)
    print(res)


if __name__ == "__main__":
    main()
