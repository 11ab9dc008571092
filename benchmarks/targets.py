"""The speed and memory targets, in one table: the JSON's `targets` and the report's table are both `evaluate(info)`.

Each target reads its value(s) from the results of one run, so every ratio compares numbers measured under the same
conditions. A target that reads nothing (its section was skipped) gives no row.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Literal

Results = dict[str, Any]
Reading = list[tuple[str, float]]
"""(qualifier, value) pairs: one per model and precision, say; the qualifier completes the row's name."""

_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    comparison: Literal[">=", "<="]
    goal: float
    read: Callable[[Results], Reading]
    png_model: str | None = None
    """The model whose PNG baseline this target needs (the bench runs the baseline for these models only)."""

    @property
    def goal_text(self) -> str:
        return f"{self.comparison} {self.goal:g}"

    def met(self, value: float) -> bool:
        return bool(_OPS[self.comparison](value, self.goal))

    def rows(self, info: Results) -> list[dict[str, Any]]:
        return [{"target": f"{self.name} {qualifier}".strip(), "value": value, "goal": self.goal_text,
                 "met": self.met(value)} for qualifier, value in self.read(info)]


def _pipeline_vs_forward(info: Results) -> Reading:
    return [(f"{name} {prec}", v["pipeline_vs_forward"])
            for name, m in info.get("models", {}).items() for prec, v in m["precisions"].items()]


def _speedup_vs_png(model: str) -> Callable[[Results], Reading]:
    """At the fastest precision, and also at `auto`'s when that is another one."""

    def read(info: Results) -> Reading:
        s = info.get("models", {}).get(model, {}).get("speedup_vs_png")
        if not s:
            return []
        out = [(f"({s['best_precision']})", s["best"])]
        if s.get("auto") is not None and s["auto_precision"] != s["best_precision"]:
            out.append((f"({s['auto_precision']}, auto)", s["auto"]))
        return out

    return read


def _svm(key: str, qualified: bool) -> Callable[[Results], Reading]:
    def read(info: Results) -> Reading:
        svm = info.get("svm")
        if not svm:
            return []
        return [(f"({svm['samples']:,} samples)" if qualified else "", svm[key])]

    return read


def _memory(info: Results) -> Reading:
    ratio = info.get("peak_rss_mb", {}).get("ratio_4_vs_1")
    return [] if ratio is None else [("", ratio)]


TARGETS: tuple[Target, ...] = (
    Target("pipeline_vs_forward", "pipeline img/s over the bare network's, every model and precision", ">=", 0.85,
           _pipeline_vs_forward),
    Target("speedup_vs_png alexnet", "pipeline img/s over the paper-style PNG baseline's, AlexNet", ">=", 5.0,
           _speedup_vs_png("alexnet"), png_model="alexnet"),
    Target("speedup_vs_png resnet50", "pipeline img/s over the paper-style PNG baseline's, ResNet-50", ">=", 4.0,
           _speedup_vs_png("resnet50"), png_model="resnet50"),
    Target("svm_speedup", "batched SVM over scikit-learn's SVC, 10 problems at the largest grid", ">=", 20.0,
           _svm("svm_speedup", qualified=True)),
    Target("svm_acc_diff (points)", "largest accuracy difference between the two SVM solvers", "<=", 1.0,
           _svm("svm_acc_diff", qualified=False)),
    Target("peak_rss 4 patches / 1 patch", "peak memory of a whole run over 4 patches over that over 1", "<=", 1.10,
           _memory),
)


def png_models() -> tuple[str, ...]:
    """The models the PNG baseline runs for: those a speedup target needs."""
    return tuple(t.png_model for t in TARGETS if t.png_model)


def evaluate(info: Results) -> list[dict[str, Any]]:
    """Every target's rows for these results, in the table's order: what the JSON stores and the report prints."""
    return [row for t in TARGETS for row in t.rows(info)]
