"""The report: a speed table, the targets table (`info["targets"]`, the same rows as the JSON), and a few lines;
and the JSON file itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from shiftlens.store import atomic_write_text

SPEED_COLUMNS = ("model", "weights", "batch", "precision", "forward img/s", "pipeline img/s", "pipeline/forward",
                 "GFLOP/s", "% matmul peak", "PNG baseline img/s", "speedup vs PNG", "max map err", "max table err")
TARGET_COLUMNS = ("target", "value", "goal", "met")


def _load(values: list[float] | None) -> str:
    return f"{values[0]:.1f}" if values else "?"


def speed_table(info: dict[str, Any]) -> Table:
    peak = info.get("matmul_peak_gflops", {})
    st = info["settings"]
    t = Table(title=f"benchmark{' --quick' if info['quick'] else ''} on {info['device']['name']} "
                    f"(batch {st['batch_size'] or 'auto'}, {'compiled' if st['compile'] else 'eager'}; "
                    f"load avg at start {_load(info.get('load_average_start'))})")
    for col in SPEED_COLUMNS:
        t.add_column(col, justify="left" if col in SPEED_COLUMNS[:4] else "right")
    for name, m in info["models"].items():
        png = m.get("png_baseline_ips")
        for i, (prec, v) in enumerate(m["precisions"].items()):
            first = i == 0
            err = m.get("precision_error", {}).get(prec)
            gflops = v.get("gflops")
            t.add_row(name if first else "", m["weights"] if first else "", str(m["batch_size"]) if first else "", prec,
                      f"{v['forward_ips']:,.1f}", f"{v['pipeline_ips']:,.1f}", f"{v['pipeline_vs_forward']:.2f}",
                      f"{gflops:,.0f}" if gflops else "",
                      f"{100 * gflops / peak[prec]:.0f}%" if gflops and peak.get(prec) else "",
                      f"{png:,.1f}" if png and first else "", f"{v['pipeline_ips'] / png:.1f}x" if png else "",
                      f"{err['map']:.1e}" if err else "", f"{err['table']:.1e}" if err else "")
    return t


def target_table(info: dict[str, Any]) -> Table:
    t = Table(title="Targets (ratios from this one run)")
    for col in TARGET_COLUMNS:
        t.add_column(col)
    for r in info["targets"]:
        t.add_row(r["target"], f"{r['value']}", r["goal"], "[green]yes[/]" if r["met"] else "[red]no[/]")
    return t


def summary_lines(info: dict[str, Any]) -> list[str]:
    lines = [f"note: {info['note']}"]
    peak = info.get("matmul_peak_gflops")
    if peak:
        lines.append("matmul peak (2048^3): " + ", ".join(f"{p} {g:,.0f} GFLOP/s" for p, g in peak.items()))
    pe = info.get("precision_error")
    if pe:
        lines.append(f"precision error on real weights ({pe['model']} {pe['weights']}, {pe['n_patches']} {pe['patches']} "
                     f"patches, sizes {pe['sizes']}, stride {pe['stride']}): " +
                     ", ".join(f"{p}: map {e['map']:.1e}, table {e['table']:.1e}" for p, e in pe["errors"].items()))
    ap = info["auto_precision"]
    lines.append(f"--precision auto on {ap['device']}: measured choice {ap['choice']} ({ap['rule']}); "
                 f"in code now: {info['auto_precision_in_code'].get(ap['device'])}")
    svm = info.get("svm")
    if svm:
        lines.append(f"svm (batched vs sklearn SVC, {svm['dims']} dims, {svm['problems']}): " +
                     ", ".join(f"{x['samples']:,} samples {x['svm_speedup']}x (diff {x['svm_acc_diff']} pt)"
                               for x in svm["sizes"]))
    mem = info.get("peak_rss_mb")
    if mem:
        lines.append(f"peak RSS ({mem['model']}, fresh process each): 1 patch {mem['1']} MB, 4 patches {mem['4']} MB "
                     f"(ratio {mem['ratio_4_vs_1']})" if "1" in mem else f"peak RSS: {mem['note']}")
    pj = info["projection"]
    hours = {k[len("hours_"):]: v for k, v in pj.items() if k.startswith("hours_")}
    if hours:
        lines.append(f"paper protocol ({pj['images_per_network']:,} images x {pj['networks']} networks) on this device: " +
                     ", ".join(f"{k} {v:,.1f} h ({v / 24:,.1f} days)" for k, v in hours.items()) + f"; {pj['assumption']}")
    qp = info["quick_preset"]
    for prec, v in qp.get("by_precision", {}).items():
        lines.append(f"`shiftlens run quick` with {prec} ({v['ips']:.1f} img/s): stride 8 -> "
                     f"{v['strides']['8']['seconds']:.0f} s; smallest stride within {qp['budget_s']:.0f} s: "
                     f"{v['smallest_stride_within_budget']}")
    lines.append(f"took {info['seconds']:.0f} s; load average at end {_load(info.get('load_average_end'))}")
    return lines


def report(info: dict[str, Any]) -> list[Table | str]:
    """Rich renderables, in print order: the speed table, the targets table, then the summary lines."""
    return [speed_table(info), target_table(info), *summary_lines(info)]


def write(info: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")
