"""One benchmark run: every section in turn on one device, then what follows from them (the `auto` precision, the
speedups, the projection of the paper's protocol, the targets). Returns one JSON-ready dict."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks import memory, png_baseline, precision, speed, svm_speed, units_memory
from benchmarks.common import Log, Settings, bench_patches, precisions_for, sample_count
from benchmarks.targets import evaluate
from shiftlens import api
from shiftlens.canvases import grid
from shiftlens.store import ResultsDir
from shiftlens.stream import AUTO_PRECISION, resolve_device, resolve_precision

FORMAT = 1
"""`shiftlens_bench` in the JSON: bumped when a key the report or the docs read changes meaning."""
PAPER_IMAGES_PER_NETWORK = 6_500_000
PAPER_NETWORKS = ("alexnet", "resnet50", "mobilenet_v2")
"""Each also runs as its anti-aliased twin in the paper's protocol: 6 networks."""
QUICK_PRESET_BUDGET_S = 300.0
SPEED_NOTE = ("alexnet, resnet50 and mobilenet_v2 use random weights (ImageNet weights are not downloadable here); "
              "speed does not depend on weight values. efficientnet_lite0 uses its packaged ImageNet weights.")


def _load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


class _Sections:
    """Seconds spent per section, summed when a section runs twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        t = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + t - self._t, 1)
        self._t = t


def run_bench(st: Settings, log: Log = lambda s: None) -> dict[str, Any]:
    t_start = time.perf_counter()
    device = resolve_device(st.device)
    precisions = [p for p in (st.precisions or precisions_for(device)) if p in precisions_for(device)]
    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]
    sections = _Sections()
    info: dict[str, Any] = {
        "shiftlens_bench": FORMAT, "quick": st.quick, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": {"type": device.type, "name": api.device_name(device), "threads": torch.get_num_threads(),
                   "cpu_count": os.cpu_count(), "machine": platform.machine(),
                   "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "load_average_start": _load_average(), "versions": api.versions(), "settings": asdict(st), "note": SPEED_NOTE,
        "auto_precision_in_code": dict(AUTO_PRECISION), "section_seconds": sections.seconds,
    }
    if st.peak:
        info["matmul_peak_gflops"] = speed.matmul_peak(device, precisions)
        log(f"matmul peak: {info['matmul_peak_gflops']}")
    sections.mark("matmul_peak")
    patch = bench_patches(1)[0][0]
    info["patch"] = {"id": patch.id, "source": "sample"}
    info["models"] = {}
    with tempfile.TemporaryDirectory(prefix="shiftlens-bench-") as tmp:
        results = ResultsDir(Path(tmp) / "results")
        for name in st.models:
            info["models"][name] = speed.bench_model(name, st, device, precisions, patch, results, log)
            sections.mark(f"model {name}")
        if precision.REAL_MODEL in st.models and len(precisions) > 1:
            info["precision_error"] = precision.precision_error_real(st, device, precisions, log)
            sections.mark("precision_error")
        info["png_baseline"] = {"script": "benchmarks/png_baseline.py", "images": st.png_images}
        for name in [m for m in st.png_models if m in st.models]:
            res = png_baseline.measure(name, st, device, patch, Path(tmp), log)
            info["models"][name]["png_baseline_ips"] = round(res["images_per_s"], 2)
            info["models"][name]["png_baseline"] = res
        sections.mark("png_baseline")
    if st.svm:
        info["svm"] = svm_speed.svm_bench(st, device, log)
        sections.mark("svm")
    if st.memory:
        info["peak_rss_mb"] = memory.peak_rss(st, device, log)
        sections.mark("peak_rss")
        # the units analysis's accumulator against its bound: AlexNet fc6, 75 px, at stride 2 (quick) or 1
        try:
            info["units_accumulator"] = units_memory.measure(5_625 if st.quick else 22_500, 4_096)
            log(f"units accumulator: {info['units_accumulator']['ratio_to_bound']}x its bound")
        except RuntimeError as exc:
            info["units_accumulator"] = {"available": False, "note": str(exc)}
        sections.mark("units_accumulator")
    if st.peak:  # once more at the end: on a shared machine the best of both is closer to the real peak
        again = speed.matmul_peak(device, precisions)
        info["matmul_peak_gflops"] = {p: max(v, again[p]) for p, v in info["matmul_peak_gflops"].items()}
        sections.mark("matmul_peak")
    info["auto_precision"] = auto_precision(info, device)
    auto = resolve_precision("auto", device)
    for m in info["models"].values():
        add_speedups(m, auto)
    info["projection"] = projection(info, auto)
    info["quick_preset"] = quick_preset_estimate(info)
    info["targets"] = evaluate(info)
    info["seconds"] = round(time.perf_counter() - t_start, 1)
    info["load_average_end"] = _load_average()
    return info


def auto_precision(info: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """What `--precision auto` should be on this device, from the real-weights error where it was measured."""
    errors = info.get("precision_error", {}).get("errors", {})
    lite = info["models"].get(precision.REAL_MODEL, {}).get("precisions", {})
    speeds = {p: v["pipeline_ips"] for p, v in lite.items()}
    return {"device": device.type,
            "rule": f"fastest precision with largest map error < {precision.MAP_ERROR_LIMIT} "
                    "(EfficientNet-Lite0 ImageNet weights, sample patches), else fp32",
            "choice": precision.auto_choice(errors, speeds) if errors and speeds else "fp32"}


def add_speedups(m: dict[str, Any], auto: str) -> None:
    """A model's fastest precision, and its pipeline speed over the PNG baseline's at `auto` and at the fastest."""
    pr = m["precisions"]
    best = max(pr, key=lambda p: pr[p]["pipeline_ips"])
    m["best_precision"] = best
    if "png_baseline_ips" in m:
        png = m["png_baseline_ips"]
        m["speedup_vs_png"] = {"auto": round(pr[auto]["pipeline_ips"] / png, 2) if auto in pr else None,
                               "auto_precision": auto, "best": round(pr[best]["pipeline_ips"] / png, 2),
                               "best_precision": best}


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
        precs = {n: models[n]["best_precision"] if label == "best" else label for n in PAPER_NETWORKS}
        if all(p in models[n]["precisions"] for n, p in precs.items()):
            secs = sum(2 * PAPER_IMAGES_PER_NETWORK / models[n]["precisions"][p]["pipeline_ips"] for n, p in precs.items())
            out[f"hours_{label}"] = round(secs / 3600, 1)
    return out


def quick_preset_estimate(info: dict[str, Any]) -> dict[str, Any]:
    """Time of `shiftlens run quick` (sample patches x EfficientNet-Lite0, sizes 75 and 125) per stride and precision."""
    lite = info["models"].get("efficientnet_lite0")
    if not lite:
        return {"note": "needs efficientnet_lite0 in the run"}
    n_patches = sample_count()
    out: dict[str, Any] = {"patches": n_patches, "sizes": [75, 125], "budget_s": QUICK_PRESET_BUDGET_S, "by_precision": {}}
    for prec, v in lite["precisions"].items():
        rows = {}
        for stride in (4, 6, 8, 10, 12, 16):
            images = n_patches * sum(len(grid(224, s, stride)[0]) for s in (75, 125))
            rows[str(stride)] = {"images": images, "seconds": round(images / v["pipeline_ips"], 1)}
        fits = [int(s) for s, r in rows.items() if r["seconds"] <= QUICK_PRESET_BUDGET_S]
        out["by_precision"][prec] = {"ips": v["pipeline_ips"], "strides": rows,
                                     "smallest_stride_within_budget": min(fits) if fits else None}
    return out
