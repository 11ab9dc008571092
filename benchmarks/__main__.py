"""`python -m benchmarks [--quick] [--out PATH] ...`, from the repository root (`shiftlens bench` runs the same)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure shiftlens's speed against the network's own forward pass and the paper's PNG pipeline, "
                    "the batched SVM against scikit-learn, and peak memory, in one run; write the results JSON.")
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes on a laptop CPU")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the results JSON "
                    "(default: benchmarks/results.json)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--models", help="comma-separated subset of alexnet,resnet50,mobilenet_v2,efficientnet_lite0")
    ap.add_argument("--batch-size", type=int, help="images per forward pass (default: each model's auto size)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="torch.compile the pipeline and the bare forward alike (default: on)")
    ap.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="ray: measure only the Ray executor's scaling over --workers and its start-up cost, "
                         "added to the results JSON as ray_scaling")
    ap.add_argument("--workers", default="1,2", help="with --executor ray: worker counts to compare (default: 1,2)")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    # imported after parsing, so that --help answers at once
    from benchmarks.common import Settings
    from benchmarks.report import report, write
    from benchmarks.run import run_bench
    from shiftlens.errors import ShiftlensError

    models = tuple(m.strip() for m in a.models.split(",") if m.strip()) if a.models else None
    if a.executor == "ray":
        return _ray_scaling(a, out, err)
    try:
        st = Settings.preset(a.quick, device=a.device, batch_size=a.batch_size, compile=a.compile, models=models)
        info = run_bench(st, log=lambda s: err.print(s, highlight=False))
        write(info, a.out)
    except ShiftlensError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    for item in report(info):
        out.print(item, highlight=False)
    out.print(f"written: {a.out}", highlight=False)
    return 0


def _ray_scaling(a: argparse.Namespace, out: Console, err: Console) -> int:
    """The Ray section alone, merged into the results JSON beside the other sections' results."""
    import json

    from benchmarks import ray_scaling
    from benchmarks.report import write
    from shiftlens.errors import ShiftlensError

    try:
        workers = [int(w) for w in a.workers.split(",") if w.strip()]
    except ValueError:
        err.print(f"[bold red]error:[/] --workers {escape(a.workers)}: give worker counts such as 1,2", highlight=False)
        return 2
    try:
        info = json.loads(a.out.read_text()) if a.out.is_file() else {}
    except json.JSONDecodeError:
        info = {}
    try:
        info["ray_scaling"] = ray_scaling.measure(workers, a.quick, a.compile, log=lambda s: err.print(s, highlight=False))
    except ShiftlensError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    write(info, a.out)
    for line in ray_scaling.summary(info["ray_scaling"], info.get("projection", {}).get("hours_fp32")):
        out.print(line, highlight=False)
    out.print(f"written: {a.out}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
