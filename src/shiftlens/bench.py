"""`shiftlens bench`: how fast shiftlens runs on this device, against the network's own speed and the paper's way.

Everything is measured in one run, so the ratios compare numbers taken under the same conditions; the timed parts
that a ratio compares are interleaved round by round (forward, pipeline, forward, pipeline, ...), and each ratio is
the median of the per-round ratios, which keeps it honest on a machine shared with other work.

The timing code lives in the package (this module) so that `shiftlens bench` works from any install; the paper-style
PNG baseline is the script `benchmarks/png_baseline.py` of the repository, found from the working directory or from
the source checkout (`--baseline PATH` names it explicitly). Without it that row is skipped with a note.

AlexNet, ResNet-50 and MobileNetV2 run with random weights here (their ImageNet weights need a download): the speed
of a network does not depend on its weight values. EfficientNet-Lite0 runs with its packaged ImageNet weights, and
the precision error that chooses `--precision auto` is measured on it and on the bundled sample patches.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from shiftlens.errors import ShiftlensError
from shiftlens.models.fold import fold_batchnorm

MODELS = ("alexnet", "resnet50", "mobilenet_v2", "efficientnet_lite0")
REAL_WEIGHTS = {"efficientnet_lite0"}  # weights that ship with the package; the others run with random weights
PAPER_IMAGES_PER_NETWORK = 6_500_000
PAPER_NETWORKS = ("alexnet", "resnet50", "mobilenet_v2")  # each also as its anti-aliased twin: 6 networks
MAP_ERROR_LIMIT = 0.005
QUICK_PRESET_BUDGET_S = 300.0
SPEED_NOTE = ("alexnet, resnet50 and mobilenet_v2 use random weights (ImageNet weights are not downloadable here); "
              "speed does not depend on weight values. efficientnet_lite0 uses its packaged ImageNet weights.")


def precisions_for(device: torch.device) -> list[str]:
    return ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]


@dataclass
class Settings:
    quick: bool = False
    device: str = "auto"
    models: tuple[str, ...] = MODELS
    precisions: tuple[str, ...] | None = None  # None: all for the device
    batch_size: int = 0  # 0: the run's auto batch size for the device (stream.AUTO_BATCH), used by every section
    compile: bool = True  # compile the pipeline and the bare forward alike, as long runs do (`--compile auto`)
    rounds: int = 3
    unit_seconds: float = 4.0  # target duration of one timed pipeline unit (one patch's grid)
    patch_size: int = 75
    png_models: tuple[str, ...] = ("alexnet", "resnet50")
    png_images: int = 256
    error_patches: int = 10
    error_sizes: tuple[int, ...] = (75, 125)
    error_stride: int = 8
    svm_grids: tuple[int, ...] = (19, 75, 150)  # n x n positions of a 75 px patch: strides 8, 2 and 1 (the paper's)
    svm: bool = True
    memory: bool = True
    memory_model: str = "efficientnet_lite0"
    memory_stride: int = 16
    peak: bool = True
    baseline: str | None = None

    @classmethod
    def preset(cls, quick: bool, **overrides) -> "Settings":
        if quick:
            base = dict(quick=True, rounds=2, unit_seconds=1.5, png_images=64, error_patches=2, error_stride=24,
                        svm_grids=(19, 38, 75), memory_stride=32)
        else:
            base = {}
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


# -- helpers --------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def unit_grid(n: int, canvas: int = 224, near: int = 75) -> tuple[int, int]:
    """(patch size, stride) giving exactly n positions per axis, patch size as close to `near` as possible."""
    for p in sorted(range(16, canvas + 1), key=lambda p: (abs(p - near), p)):
        if n == 1:
            return p, canvas
        for s in range(1, canvas):
            if (canvas - p) // s + 1 == n:
                return p, s
    raise ShiftlensError(f"no grid with {n} positions per axis on a {canvas}px canvas")


def unit_side(batch_size: int, images: float, max_side: int = 150) -> int:
    """The side n of an n x n grid whose n*n images are whole batches, as close as possible to `images`."""
    sides = [n for n in range(1, max_side + 1) if (n * n) % batch_size == 0] or [max_side]
    return min(sides, key=lambda n: abs(math.log(n * n / max(images, 1))))


def bench_patches(n: int):
    """The bundled sample patches (real photographs); synthetic blobs when the sample is missing."""
    from shiftlens.config import RunConfig
    from shiftlens.patches import Patch, load_patches

    try:
        patches = load_patches(RunConfig(patches="sample"))
    except ShiftlensError:
        patches = []
    if len(patches) >= n:
        return patches[:n], "sample"
    rng = np.random.default_rng(0)
    out = list(patches)
    while len(out) < n:
        i = len(out)
        yy, xx = np.mgrid[:96, :96] / 96
        rgba = np.zeros((96, 96, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        rgba[..., 3] = np.where((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16, 255, 0)
        out.append(Patch(id=f"synthetic_{i:02d}", category="synthetic", rgba=rgba, source="synthetic"))
    return out, "sample+synthetic" if patches else "synthetic"


def find_baseline(explicit: str | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ShiftlensError(f"baseline script {path} does not exist: give benchmarks/png_baseline.py")
        return path
    candidates = [Path.cwd() / "benchmarks" / "png_baseline.py",
                  Path(__file__).resolve().parents[2] / "benchmarks" / "png_baseline.py"]
    return next((c for c in candidates if c.is_file()), None)


def load_baseline(path: Path):
    spec = importlib.util.spec_from_file_location("shiftlens_png_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the parts ------------------------------------------------------------------------------------------------------
def matmul_peak(device: torch.device, precisions: list[str], n: int = 2048, reps: int = 4) -> dict[str, float]:
    """Best GFLOP/s of an n x n x n matmul per precision (the roofline the networks are compared against)."""
    from shiftlens.stream import DTYPES

    out = {}
    for prec in precisions:
        a = torch.randn(n, n, device=device).to(DTYPES[prec])
        b = torch.randn(n, n, device=device).to(DTYPES[prec])
        torch.mm(a, b)
        best = min(timed(lambda: torch.mm(a, b), device)[0] for _ in range(reps))
        out[prec] = round(2 * n**3 / best / 1e9, 1)
    return out


def flops_per_image(model: torch.nn.Module, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def batch_for(st: Settings, name: str, device: torch.device) -> int:
    """The batch size a run would use for this model (`--batch-size 0` = the model's auto size on the device)."""
    from shiftlens.models import parse_spec
    from shiftlens.stream import resolve_batch_size

    return resolve_batch_size(st.batch_size, device, parse_spec(name).entry.auto_batch)


def unit_config(model: str, size: int, stride: int, batch_size: int, device: str, out: str):
    from shiftlens.config import RunConfig

    return RunConfig(models=[model], patches="sample", sizes=[size], stride=stride, batch_size=batch_size,
                     device=device, precision="fp32", out=out, site=False, analyses=["similarity"])


def pipeline_unit(extractor, spec, label, patch, rgba, cfg, results, tag: str) -> dict[str, np.ndarray]:
    """The real pipeline for one patch: render, forward with all taps, similarity, store (one part file)."""
    from shiftlens.api import run_patch

    arrays = run_patch(extractor, spec, label, patch, rgba, cfg)
    meta = {"model": spec.key, "weights": label, "untrained": label != "imagenet", "patch_size": rgba.shape[0],
            "patch_id": patch.id, "category": patch.category, "n": int(next(iter(arrays.values())).shape[-1]),
            "fingerprint": tag}
    results.save_part(spec.key, rgba.shape[0], f"{patch.id}_{tag}", arrays, meta)
    return arrays


def map_table_error(ref: list[dict[str, np.ndarray]], other: list[dict[str, np.ndarray]], ids: list[tuple[str, int]]) -> dict[str, float]:
    """Largest |difference| of any similarity-map cell and of any similarity-table value (per-patch means, and the
    mean and std over patches)."""
    from shiftlens.analyses.base import Part
    from shiftlens.analyses.similarity import Similarity

    map_err = max(float(np.abs(r[k].astype(np.float64) - o[k].astype(np.float64)).max())
                  for r, o in zip(ref, other) for k in r)

    def parts(arrs):
        return [Part(model="m", weights="w", patch_size=size, patch_id=pid, category="c",
                     n=next(iter(a.values())).shape[-1], arrays=a) for a, (pid, size) in zip(arrs, ids)]

    t_ref, t_other = Similarity.tables(parts(ref), None), Similarity.tables(parts(other), None)
    table_err = 0.0
    for name in ("similarity", "similarity_per_patch"):
        cols = [c for c in ("mean", "std") if c in t_ref[name]]
        diff = np.abs(t_ref[name][cols].to_numpy(np.float64) - t_other[name][cols].to_numpy(np.float64))
        table_err = max(table_err, float(diff.max()))
    return {"map": map_err, "table": table_err}


def bench_model(name: str, st: Settings, device: torch.device, precisions: list[str], patch, results,
                log: Callable[[str], None]) -> dict[str, Any]:
    """forward_ips and pipeline_ips per precision, interleaved round by round, plus FLOPs and precision error."""
    from shiftlens.models import build_with_weights, parse_spec
    from shiftlens.stream import FeatureExtractor, autocast, compile_for_inference

    spec = parse_spec(name)
    weights = "imagenet" if name in REAL_WEIGHTS else "random"
    model, prov = build_with_weights(spec.entry, weights, 0)
    flops = flops_per_image(model, torch.device("cpu"))
    # no taps: the bare network, batch-norm folded as the pipeline's FeatureExtractor folds it
    bare = fold_batchnorm(copy.deepcopy(model).eval(), []).to(device).to(memory_format=torch.channels_last).eval()
    if st.compile:  # compiled like the pipeline's extractor, so the ratio compares like with like
        bare = compile_for_inference(bare)
    layer_specs = [spec.entry.layer(l) for l in spec.layers]
    bs = batch_for(st, name, device)
    out: dict[str, Any] = {"weights": prov["label"], "layers": list(spec.layers), "flops_per_image": flops,
                           "batch_size": bs, "precisions": {}}
    grid_n = None
    maps: dict[str, dict[str, np.ndarray]] = {}
    for prec in precisions:
        extractor = FeatureExtractor(model, layer_specs, spec.entry.normalisation, device, prec, compile=st.compile,
                                     pad_to=bs)
        if grid_n is None:  # one unit grid for every precision, sized from the fp32 speed
            rgba0 = patch.resized(st.patch_size)
            x = extractor.renderer(rgba0, 224, (255, 255, 255)).render(np.zeros(bs, int), np.zeros(bs, int)).clone()

            def bare_fwd():
                with torch.inference_mode(), autocast(device, prec):
                    bare(x)

            bare_fwd()
            bare_fwd()
            ips0 = bs / timed(bare_fwd, device)[0]
            grid_n = unit_side(bs, ips0 * st.unit_seconds)
            size, stride = unit_grid(grid_n, 224, st.patch_size)
            rgba = patch.resized(size)
            cfg = unit_config(name, size, stride, bs, device.type, str(results.root))
            out["unit"] = {"patch": patch.id, "patch_size": size, "stride": stride, "images": grid_n * grid_n}
        ren = extractor.renderer(rgba, 224, (255, 255, 255))
        from shiftlens.canvases import grid as grid_fn

        ys, xs = grid_fn(224, size, stride)
        x = ren.render(ys[:bs], xs[:bs]).clone()  # a pre-rendered batch of the same patch
        k = grid_n * grid_n // bs

        def forward():
            with torch.inference_mode(), autocast(device, prec):
                for _ in range(k):
                    bare(x)

        forward()  # warm-up (oneDNN primitives for this precision and shape)
        pipeline_unit(extractor, spec, prov["label"], patch, rgba, cfg, results, f"{prec}w")
        rounds = []
        for r in range(st.rounds):
            tf, _ = timed(forward, device)
            tp, arrays = timed(lambda: pipeline_unit(extractor, spec, prov["label"], patch, rgba, cfg, results, f"{prec}{r}"), device)
            rounds.append({"forward_s": round(tf, 4), "pipeline_s": round(tp, 4)})
            maps.setdefault(prec, arrays)
        images = grid_n * grid_n
        f_ips = max(images / r["forward_s"] for r in rounds)
        p_ips = max(images / r["pipeline_s"] for r in rounds)
        ratio = statistics.median(r["forward_s"] / r["pipeline_s"] for r in rounds)
        out["precisions"][prec] = {"forward_ips": round(f_ips, 2), "pipeline_ips": round(p_ips, 2),
                                   "compiled": extractor.compiled, "compile_error": extractor.compile_error,
                                   "pipeline_vs_forward": round(ratio, 3),
                                   "gflops": round(flops * f_ips / 1e9, 1) if flops else None, "rounds": rounds}
        log(f"{name} {prec}: forward {f_ips:,.1f} img/s, pipeline {p_ips:,.1f} img/s, ratio {ratio:.2f}")
        extractor.taps.close()
        del extractor
        if st.compile:
            torch._dynamo.reset()
    ids = [(patch.id, size)]
    out["precision_error"] = {prec: map_table_error([maps["fp32"]], [maps[prec]], ids)
                              for prec in precisions if prec != "fp32" and "fp32" in maps}
    del bare, model
    return out


def precision_error_real(st: Settings, device: torch.device, precisions: list[str], results,
                         log: Callable[[str], None]) -> dict[str, Any]:
    """fp32 vs each faster precision on EfficientNet-Lite0 with its ImageNet weights and the sample patches."""
    from shiftlens.models import build_with_weights, parse_spec
    from shiftlens.stream import FeatureExtractor

    spec = parse_spec("efficientnet_lite0")
    model, prov = build_with_weights(spec.entry, "imagenet", 0)
    bs = batch_for(st, spec.key, device)
    patches, source = bench_patches(st.error_patches)
    arrays: dict[str, list] = {}
    ids = [(p.id, s) for p in patches for s in st.error_sizes]
    t0 = time.perf_counter()
    # The reference is eager fp32; every other variant runs as the pipeline runs it (compiled when st.compile), and
    # "fp32+compile" shows what compiling alone changes.
    variants = [("fp32", "fp32", False)] + ([("fp32+compile", "fp32", True)] if st.compile else []) + \
        [(prec, prec, st.compile) for prec in precisions if prec != "fp32"]
    for key, prec, comp in variants:
        ex = FeatureExtractor(model, [spec.entry.layer(l) for l in spec.layers], spec.entry.normalisation, device, prec,
                              compile=comp, pad_to=bs)
        cfg = unit_config(spec.key, st.error_sizes[0], st.error_stride, bs, device.type, str(results.root))
        arrays[key] = [pipeline_unit(ex, spec, prov["label"], p, p.resized(s), cfg, results, f"err{key}")
                       for p, s in ((p, s) for p in patches for s in st.error_sizes)]
        ex.taps.close()
        if comp:
            torch._dynamo.reset()
    out = {"model": "efficientnet_lite0", "weights": prov["label"], "layers": list(spec.layers), "patches": source,
           "n_patches": len(patches), "sizes": list(st.error_sizes), "stride": st.error_stride,
           "reference": "fp32, eager", "compiled": st.compile,
           "errors": {key: map_table_error(arrays["fp32"], arrays[key], ids) for key, _, _ in variants if key != "fp32"},
           "seconds": round(time.perf_counter() - t0, 1)}
    for prec, e in out["errors"].items():
        log(f"precision error efficientnet_lite0 {prec}: map {e['map']:.2e}, table {e['table']:.2e}")
    return out


def png_baseline(name: str, module, st: Settings, device: torch.device, patch, workdir: Path,
                 log: Callable[[str], None]) -> dict[str, Any]:
    from shiftlens.canvases import grid as grid_fn
    from shiftlens.models import build_with_weights, parse_spec

    spec = parse_spec(name)
    weights = "imagenet" if name in REAL_WEIGHTS else "random"
    model, prov = build_with_weights(spec.entry, weights, 0)
    rgba = patch.resized(st.patch_size)
    ys, xs = grid_fn(224, st.patch_size, 1)
    sel = np.linspace(0, len(ys) - 1, st.png_images).astype(int)
    layers = [spec.entry.layer(l).module for l in spec.layers]
    res = module.run_baseline(model, layers, rgba, ys[sel], xs[sel], workdir / f"png_{name}",
                              mean=spec.entry.normalisation.mean, std=spec.entry.normalisation.std,
                              batch_size=batch_for(st, name, device), device=str(device))
    log(f"{name} png baseline: {res['images_per_s']:.1f} img/s")
    return res


def svm_bench(st: Settings, device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    """The batched solver against `SVC(kernel='linear')` on one patch's real features at several grid sizes.

    One stride-s grid holds the coarser grids (every 2nd or 4th position in each direction), so the features are
    computed once, for the finest grid. The target is read at the finest (the paper's stride-1 grid has 22,500)."""
    try:
        svm_mod = importlib.import_module("shiftlens.analyses.svm")
        fit = svm_mod.fit_predict_cv
        ref = svm_mod.sklearn_cv
    except (ImportError, AttributeError) as exc:
        return {"available": False, "note": f"batched solver not available in this version ({exc.__class__.__name__}: {exc})"}
    from shiftlens.analyses.folds import fold_masks, task_labels
    from shiftlens.canvases import grid as grid_fn
    from shiftlens.models import build_with_weights, parse_spec
    from shiftlens.stream import FeatureExtractor, stream, stream_order

    spec = parse_spec("efficientnet_lite0:pool")
    model, prov = build_with_weights(spec.entry, "imagenet", 0)
    prec = "bf16" if "bf16" in precisions_for(device) else "fp32"  # the features only need to be the same for both
    bs = batch_for(st, spec.key, device)
    ex = FeatureExtractor(model, [spec.entry.layer("pool")], spec.entry.normalisation, device, prec,
                          compile=st.compile, pad_to=bs)
    patches, source = bench_patches(1)
    fine = max(st.svm_grids)
    size, stride = unit_grid(fine, 224, 75)
    ys, xs = grid_fn(224, size, stride)
    t0 = time.perf_counter()
    feats = torch.empty(fine * fine, 1280, device=device)
    ren = ex.renderer(patches[0].resized(size), 224, (255, 255, 255))
    for idx, f in stream(ex, ren, ys, xs, stream_order(fine * fine, []), bs):
        feats[idx] = f["pool"]
    ex.taps.close()
    if st.compile:
        torch._dynamo.reset()
    log(f"svm: {fine * fine} feature vectors in {time.perf_counter() - t0:.0f} s")
    sizes = []
    for n in sorted(st.svm_grids):
        size_n, stride_n = unit_grid(n, 224, 75)
        step = stride_n // stride
        if size_n != size or stride_n % stride or (n - 1) * step >= fine:
            continue  # not a sub-grid of the finest one
        pick = (np.arange(n)[:, None] * step * fine + np.arange(n)[None, :] * step).ravel()
        X = feats[torch.as_tensor(pick, device=device)]
        labels = task_labels(n)  # the separability analysis's own tasks and paper-protocol folds
        folds = fold_masks(labels, "paper", 0)
        lab_t, fold_t = torch.as_tensor(labels, device=device), torch.as_tensor(folds, device=device)
        fit(X, lab_t, fold_t)  # warm-up
        reps = 2 if n * n <= 6000 else 1
        t_torch = min(timed(lambda: fit(X, lab_t, fold_t), device)[0] for _ in range(reps))
        acc_torch = fit(X, lab_t, fold_t).cpu().numpy()
        t0 = time.perf_counter()
        acc_ref = ref(X.cpu().numpy(), labels, folds)
        t_ref = time.perf_counter() - t0
        diff = float(np.abs(acc_torch.mean(1) - acc_ref.mean(1)).max() * 100)
        sizes.append({"samples": n * n, "stride": stride_n, "torch_s": round(t_torch, 4), "sklearn_s": round(t_ref, 4),
                      "svm_speedup": round(t_ref / t_torch, 2), "svm_acc_diff": round(diff, 3),
                      "acc_torch": acc_torch.mean(1).round(4).tolist(), "acc_sklearn": acc_ref.mean(1).round(4).tolist()})
        log(f"svm {n * n} samples: batched {t_torch:.3f} s vs sklearn {t_ref:.3f} s ({t_ref / t_torch:.1f}x), "
            f"accuracy diff {diff:.2f} points")
    top = sizes[-1]
    return {"available": True, "features": f"efficientnet_lite0 pool (imagenet, {prec}), 75 px patch {patches[0].id} ({source})",
            "dims": 1280, "problems": "2 tasks x 5 folds (the paper protocol: StratifiedKFold, no shuffle)", "sizes": sizes,
            "samples": top["samples"], "svm_speedup": top["svm_speedup"],
            "svm_acc_diff": max(x["svm_acc_diff"] for x in sizes)}


RSS_CHILD = r"""
import json, resource, sys, tempfile, torch
from shiftlens import api
from shiftlens.config import RunConfig
a = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    cfg = RunConfig(models=[a["model"]], patches="sample", max_patches=a["patches"], sizes=[75], stride=a["stride"],
                    weights="imagenet" if a["model"] == "efficientnet_lite0" else "random", device=a["device"],
                    precision="auto", batch_size=a["batch_size"], out=tmp + "/out", site=False, analyses=["similarity"])
    api.run(cfg)
print(json.dumps({"ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}))
"""


def peak_rss(st: Settings, device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    """Peak resident memory of a whole `api.run` over 1 and over 4 sample patches, each in a fresh process."""
    out: dict[str, Any] = {"model": st.memory_model, "stride": st.memory_stride, "sizes": [75]}
    for n in (1, 4):
        arg = json.dumps({"model": st.memory_model, "patches": n, "stride": st.memory_stride, "device": device.type,
                          "batch_size": st.batch_size})
        proc = subprocess.run([sys.executable, "-c", RSS_CHILD, arg], capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            return {"available": False, "note": f"memory child failed: {proc.stderr.strip().splitlines()[-1:]}"}
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out[str(n)] = round(res["ru_maxrss_kb"] / 1024, 1)
        if res.get("cuda_peak_mb") is not None:
            out[f"cuda_{n}"] = round(res["cuda_peak_mb"], 1)
    out["ratio_4_vs_1"] = round(out["4"] / out["1"], 3)
    log(f"peak RSS: 1 patch {out['1']:.0f} MB, 4 patches {out['4']:.0f} MB")
    return out


# -- the run --------------------------------------------------------------------------------------------------------
def auto_choice(errors: dict[str, dict[str, float]], speeds: dict[str, float]) -> str:
    """The fastest precision whose largest map error is below MAP_ERROR_LIMIT, else fp32."""
    ok = [p for p, e in errors.items() if e["map"] < MAP_ERROR_LIMIT and speeds.get(p, 0) > speeds.get("fp32", 0)]
    return max(ok, key=lambda p: speeds[p]) if ok else "fp32"


def run_bench(st: Settings, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    from shiftlens.api import device_name, versions
    from shiftlens.models.registry import resolve_device
    from shiftlens.store import ResultsDir
    from shiftlens.stream import AUTO_PRECISION, resolve_precision

    t_start = time.perf_counter()
    device = resolve_device(st.device)
    precisions = [p for p in (st.precisions or precisions_for(device)) if p in precisions_for(device)]
    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]
    info: dict[str, Any] = {
        "shiftlens_bench": 1, "quick": st.quick, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": {"type": device.type, "name": device_name(device), "threads": torch.get_num_threads(),
                   "cpu_count": os.cpu_count(), "machine": platform.machine(),
                   "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions(), "settings": asdict(st), "note": SPEED_NOTE,
        "auto_precision_in_code": dict(AUTO_PRECISION),
    }
    sections: dict[str, float] = {}
    info["section_seconds"] = sections

    def mark(name: str, t0: float) -> float:
        t = time.perf_counter()
        sections[name] = round(sections.get(name, 0.0) + t - t0, 1)
        return t

    t = time.perf_counter()
    if st.peak:
        info["matmul_peak_gflops"] = matmul_peak(device, precisions)
        log(f"matmul peak: {info['matmul_peak_gflops']}")
    t = mark("matmul_peak", t)
    patches, source = bench_patches(1)
    patch = patches[0]
    info["patch"] = {"id": patch.id, "source": source}
    with tempfile.TemporaryDirectory(prefix="shiftlens-bench-") as tmp:
        results = ResultsDir(Path(tmp) / "results")
        results.root.mkdir(parents=True)
        info["models"] = {}
        for name in st.models:
            info["models"][name] = bench_model(name, st, device, precisions, patch, results, log)
            t = mark(f"model {name}", t)
        if "efficientnet_lite0" in st.models and len(precisions) > 1:
            info["precision_error"] = precision_error_real(st, device, precisions, results, log)
            t = mark("precision_error", t)
        baseline = find_baseline(st.baseline)
        if baseline is None:
            info["png_baseline"] = {"available": False, "note": "benchmarks/png_baseline.py not found: run from the repository root or pass --baseline"}
        else:
            module = load_baseline(baseline)
            info["png_baseline"] = {"available": True, "script": str(baseline), "images": st.png_images}
            for name in [m for m in st.png_models if m in st.models]:
                res = png_baseline(name, module, st, device, patch, Path(tmp), log)
                m = info["models"][name]
                m["png_baseline_ips"] = round(res["images_per_s"], 2)
                m["png_baseline"] = res
        t = mark("png_baseline", t)
    if st.svm:
        info["svm"] = svm_bench(st, device, log)
        t = mark("svm", t)
    if st.memory:
        info["peak_rss_mb"] = peak_rss(st, device, log)
        t = mark("peak_rss", t)
    if st.peak:  # once more at the end: on a shared machine the best of both is closer to the real peak
        again = matmul_peak(device, precisions)
        info["matmul_peak_gflops"] = {p: max(v, again[p]) for p, v in info["matmul_peak_gflops"].items()}
        t = mark("matmul_peak", t)
    # auto precision: from the real-weights error where measured, else fp32
    real = info.get("precision_error", {}).get("errors", {})
    lite = info["models"].get("efficientnet_lite0", {}).get("precisions", {})
    speeds = {p: v["pipeline_ips"] for p, v in lite.items()}
    info["auto_precision"] = {"device": device.type, "rule": f"fastest precision with largest map error < {MAP_ERROR_LIMIT} "
                              "(EfficientNet-Lite0 ImageNet weights, sample patches), else fp32",
                              "choice": auto_choice(real, speeds) if real and speeds else "fp32"}
    auto = resolve_precision("auto", device)
    for name, m in info["models"].items():
        pr = m["precisions"]
        best = max(pr, key=lambda p: pr[p]["pipeline_ips"])
        m["best_precision"] = best
        if "png_baseline_ips" in m:
            m["speedup_vs_png"] = {"auto": round(pr[auto]["pipeline_ips"] / m["png_baseline_ips"], 2) if auto in pr else None,
                                   "auto_precision": auto,
                                   "best": round(pr[best]["pipeline_ips"] / m["png_baseline_ips"], 2), "best_precision": best}
    info["projection"] = projection(info, auto)
    info["quick_preset"] = quick_preset_estimate(info)
    info["targets"] = targets(info)
    info["seconds"] = round(time.perf_counter() - t_start, 1)
    info["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return info


def projection(info: dict[str, Any], auto: str) -> dict[str, Any]:
    """Hours for the paper protocol: 6.5 million images for each of 6 networks (each anti-aliased twin assumed as
    fast as its base network: a lower bound, the blur layers add work)."""
    out: dict[str, Any] = {"images_per_network": PAPER_IMAGES_PER_NETWORK, "networks": 2 * len(PAPER_NETWORKS),
                           "assumption": "anti-aliased twins timed as their base network (a lower bound)"}
    models = info["models"]
    if not all(n in models for n in PAPER_NETWORKS):
        out["note"] = "needs alexnet, resnet50 and mobilenet_v2 in the run"
        return out
    for label in sorted({"fp32", auto, "best"}):
        secs = 0.0
        for n in PAPER_NETWORKS:
            pr = models[n]["precisions"]
            p = models[n]["best_precision"] if label == "best" else label
            if p not in pr:
                break
            secs += 2 * PAPER_IMAGES_PER_NETWORK / pr[p]["pipeline_ips"]
        else:
            out[f"hours_{label}"] = round(secs / 3600, 1)
    return out


def quick_preset_estimate(info: dict[str, Any]) -> dict[str, Any]:
    """Time of `shiftlens run quick` (sample patches x EfficientNet-Lite0, sizes 75 and 125) per stride and precision."""
    from shiftlens.canvases import grid as grid_fn

    lite = info["models"].get("efficientnet_lite0")
    if not lite:
        return {"note": "needs efficientnet_lite0 in the run"}
    n_patches = len(bench_patches(0)[0]) or 10
    out: dict[str, Any] = {"patches": n_patches, "sizes": [75, 125], "budget_s": QUICK_PRESET_BUDGET_S, "by_precision": {}}
    for prec, v in lite["precisions"].items():
        rows = {}
        for stride in (4, 6, 8, 10, 12, 16):
            images = n_patches * sum(len(grid_fn(224, s, stride)[0]) for s in (75, 125))
            rows[str(stride)] = {"images": images, "seconds": round(images / v["pipeline_ips"], 1)}
        fits = [int(s) for s, r in rows.items() if r["seconds"] <= QUICK_PRESET_BUDGET_S]
        out["by_precision"][prec] = {"ips": v["pipeline_ips"], "strides": rows,
                                     "smallest_stride_within_budget": min(fits) if fits else None}
    return out


def targets(info: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, m in info["models"].items():
        for prec, v in m["precisions"].items():
            rows.append({"target": f"pipeline_vs_forward {name} {prec}", "value": v["pipeline_vs_forward"], "goal": ">= 0.85",
                         "met": v["pipeline_vs_forward"] >= 0.85})
    for name, goal in (("alexnet", 5.0), ("resnet50", 4.0)):
        s = info["models"].get(name, {}).get("speedup_vs_png")
        if s:
            rows.append({"target": f"speedup_vs_png {name} ({s['best_precision']})", "value": s["best"], "goal": f">= {goal:g}",
                         "met": s["best"] >= goal})
            if s.get("auto") is not None and s["auto_precision"] != s["best_precision"]:
                rows.append({"target": f"speedup_vs_png {name} ({s['auto_precision']}, auto)", "value": s["auto"],
                             "goal": f">= {goal:g}", "met": s["auto"] >= goal})
    svm = info.get("svm", {})
    if svm.get("available"):
        rows.append({"target": f"svm_speedup ({svm['samples']:,} samples)", "value": svm["svm_speedup"], "goal": ">= 20", "met": svm["svm_speedup"] >= 20})
        rows.append({"target": "svm_acc_diff (points)", "value": svm["svm_acc_diff"], "goal": "<= 1", "met": svm["svm_acc_diff"] <= 1})
    mem = info.get("peak_rss_mb", {})
    if "ratio_4_vs_1" in mem:
        rows.append({"target": "peak_rss 4 patches / 1 patch", "value": mem["ratio_4_vs_1"], "goal": "<= 1.10",
                     "met": mem["ratio_4_vs_1"] <= 1.10})
    return rows


# -- report ---------------------------------------------------------------------------------------------------------
def report(info: dict[str, Any]):
    """Rich renderables: the speed table, the targets, and a few lines."""
    from rich.table import Table

    peak = info.get("matmul_peak_gflops", {})
    dev = info["device"]
    t = Table(title=f"shiftlens bench{' --quick' if info['quick'] else ''} on {dev['name']} "
                    f"(batch {info['settings']['batch_size'] or 'auto'}, {'compiled' if info['settings'].get('compile') else 'eager'}; load avg at start {info.get('load_average_start', ['?'])[0]:.1f})")
    for col in ("model", "weights", "batch", "precision", "forward img/s", "pipeline img/s", "pipeline/forward", "GFLOP/s",
                "% matmul peak", "PNG baseline img/s", "speedup vs PNG", "max map err", "max table err"):
        t.add_column(col, justify="right" if col not in ("model", "weights", "batch", "precision") else "left")
    for name, m in info["models"].items():
        for i, (prec, v) in enumerate(m["precisions"].items()):
            err = m.get("precision_error", {}).get(prec)
            png = m.get("png_baseline_ips")
            t.add_row(name if i == 0 else "", m["weights"] if i == 0 else "", str(m.get("batch_size", "")) if i == 0 else "", prec, f"{v['forward_ips']:,.1f}",
                      f"{v['pipeline_ips']:,.1f}", f"{v['pipeline_vs_forward']:.2f}",
                      f"{v['gflops']:,.0f}" if v.get("gflops") else "",
                      f"{100 * v['gflops'] / peak[prec]:.0f}%" if v.get("gflops") and peak.get(prec) else "",
                      f"{png:,.1f}" if png and i == 0 else "",
                      f"{v['pipeline_ips'] / png:.1f}x" if png else "",
                      f"{err['map']:.1e}" if err else "", f"{err['table']:.1e}" if err else "")
    out = [t]
    lines = [f"note: {info['note']}"]
    if peak:
        lines.append("matmul peak (2048^3): " + ", ".join(f"{p} {g:,.0f} GFLOP/s" for p, g in peak.items()))
    pe = info.get("precision_error")
    if pe:
        lines.append(f"precision error on real weights ({pe['model']} {pe['weights']}, {pe['n_patches']} {pe['patches']} patches, "
                     f"sizes {pe['sizes']}, stride {pe['stride']}): " +
                     ", ".join(f"{p}: map {e['map']:.1e}, table {e['table']:.1e}" for p, e in pe["errors"].items()))
    ap = info["auto_precision"]
    lines.append(f"--precision auto on {ap['device']}: measured choice {ap['choice']} ({ap['rule']}); "
                 f"in code now: {info['auto_precision_in_code'].get(ap['device'])}")
    svm = info.get("svm")
    if svm:
        lines.append(("svm (batched vs sklearn SVC, " + f"{svm['dims']} dims, {svm['problems']}): " +
                      ", ".join(f"{x['samples']:,} samples {x['svm_speedup']}x (diff {x['svm_acc_diff']} pt)"
                                for x in svm["sizes"])) if svm.get("available")
                     else f"svm: not available ({svm['note']})")
    mem = info.get("peak_rss_mb")
    if mem:
        lines.append(f"peak RSS ({mem.get('model')}, fresh process each): 1 patch {mem.get('1')} MB, 4 patches {mem.get('4')} MB "
                     f"(ratio {mem.get('ratio_4_vs_1')})" if "1" in mem else f"peak RSS: {mem.get('note')}")
    pj = info["projection"]
    hours = {k[6:]: v for k, v in pj.items() if k.startswith("hours_")}
    if hours:
        lines.append(f"paper protocol ({pj['images_per_network']:,} images x {pj['networks']} networks) on this device: " +
                     ", ".join(f"{k} {v:,.1f} h ({v / 24:,.1f} days)" for k, v in hours.items()) + f"; {pj['assumption']}")
    qp = info["quick_preset"]
    for prec, v in qp.get("by_precision", {}).items():
        lines.append(f"`shiftlens run quick` with {prec} ({v['ips']:.1f} img/s): stride 8 -> {v['strides']['8']['seconds']:.0f} s; "
                     f"smallest stride within {qp['budget_s']:.0f} s: {v['smallest_stride_within_budget']}")
    tt = Table(title="Targets (ratios from this one run)")
    for col in ("target", "value", "goal", "met"):
        tt.add_column(col)
    for r in info["targets"]:
        tt.add_row(r["target"], f"{r['value']}", r["goal"], "[green]yes[/]" if r["met"] else "[red]no[/]")
    lines.append(f"took {info['seconds']:.0f} s; load average at end {info.get('load_average_end', ['?'])[0]:.1f}")
    return out + [tt] + lines


def write(info: dict[str, Any], path: Path) -> None:
    from shiftlens.store import atomic_write_text

    atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")
