"""Figures of an arithmetic run (matplotlib, written atomically under figures/).

- `arithmetic_expr_EXPR.png`, one per expression, in the layout of the paper's Fig. 6: the operand scenes and the
  expected pixel-space scene E, then per model and layer the inverted operands and the inverted result r, with the
  numbers under each panel (operands: cos(f(S_i), f(E)); result: cos(r, f(E)), the best operand's cosine, E's rank
  among the retrieval candidates and the pixel error; every image: the feature loss its inverter reached).
- `arithmetic_retrieval.png`: top-1 retrieval accuracy and median pixel error per model/layer and problem kind.

Untrained weights are labelled "untrained" in every title and row label.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shiftlens.analyses.arithmetic.expressions import Expression  # noqa: E402
from shiftlens.patches import Patch  # noqa: E402
from shiftlens.scenes import Scene, SceneRenderer  # noqa: E402
from shiftlens.analyses.arithmetic.record import ArithmeticRecord  # noqa: E402
from shiftlens.store import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from shiftlens.analyses.arithmetic.inversions import Inversions

KIND_ORDER = ("expression", "move", "add", "remove")


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def figure_name(expression: str) -> str:
    return "arithmetic_expr_" + (re.sub(r"[^A-Za-z0-9_-]+", "_", expression).strip("_") or "expr")


def _label(model: str, layer: str, weights: str) -> str:
    return f"{model} {layer}\n{weights}"


def _untrained(record: ArithmeticRecord) -> bool:
    return any(m.weights.untrained for m in record.models.values())


def expression_figure(path: Path, e: Expression, record: ArithmeticRecord, per: pd.DataFrame,
                      inverted: Mapping[str, "Inversions"], scenes: Mapping[str, Scene], renderer: SceneRenderer) -> Path:
    """The paper's Fig. 6 for one expression, with the numbers it could not give."""
    ops = list(e.terms)
    ncol = len(ops) + 1
    rows_df = per[(per["kind"] == "expression") & (per["problem"] == e.name)]
    layers = list(dict.fromkeys(zip(rows_df["model"], rows_df["layer"])))
    nrow = 1 + len(layers)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.3 * ncol + 0.6, 3.3 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for j, (c, s) in enumerate(ops):
        axes[0, j].imshow(renderer.render_uint8(scenes[s]))
        times = f"{abs(c)} " if abs(c) != 1 else ""
        axes[0, j].set_title(f"{'−' if c < 0 else '+' if j else ''} {times}{s}", fontsize=10)
    axes[0, -1].imshow(renderer.render_uint8(e.expected(scenes)))
    axes[0, -1].set_title("= expected E", fontsize=10)
    axes[0, 0].set_ylabel("pixels", fontsize=9)
    for i, (model, layer) in enumerate(layers, 1):
        sub = rows_df[(rows_df["model"] == model) & (rows_df["layer"] == layer)]
        first = sub.iloc[0]
        axes[i, 0].set_ylabel(_label(model, layer, first["weights"]), fontsize=8)
        inv = inverted.get(model)
        have = inv is not None and layer in inv.meta.layers
        for j, (_, s) in enumerate(ops):
            ax = axes[i, j]
            text = ""
            if have:
                img, loss = inv.image(layer, f"scene:{s}")
                ax.imshow(img)
                cos = inv.meta.operand_cos[layer][e.name][j]
                text = f"cos(f(S),f(E)) {cos:.3f}\nfeature loss {loss:.3f}"
            else:
                ax.axis("off")
            ax.set_xlabel(text, fontsize=7)
        ax = axes[i, -1]
        ranks = ", ".join(f"{r:g}" for r in sub["rank"].dropna())
        errs = ", ".join(f"{x:.0f}" for x in sub["pixel_error"].dropna())
        text = (f"result r: cos(r,f(E)) {first['cos_result']:.3f}\nbest operand {first['cos_best_operand']:.3f}\n"
                f"rank of E {ranks or '-'} / {int(first['n_candidates'])}\npixel error {errs or '-'} px")
        if have:
            img, loss = inv.image(layer, f"result:{e.name}")
            ax.imshow(img)
            text += f"\nfeature loss {loss:.3f}"
        else:
            text += "\n(not inverted)"
        ax.set_xlabel(text, fontsize=7)
    title = f"{e.name}: {e.text}\nimages: {_inverters(record)}"
    if _untrained(record):
        title += "   [untrained weights: random (untrained)]"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _inverters(record: ArithmeticRecord) -> str:
    """How the images were made, for the title: the inverter per layer kind, a decoder with its training steps."""
    how = []
    for r in record.inversions:
        text = r.inverter
        if r.inverter == "decoder":
            text += (f" ({r.settings.get('source', '')}, trained on {r.settings.get('weights', '?')} features, "
                     f"{r.settings.get('steps_done', '?')} steps)")
        elif r.inverter == "optimise":
            text += f" ({r.settings.get('settings', {}).get('steps', '?')} steps)"
        how.append(text)
    return ", ".join(dict.fromkeys(how)) or "none (numbers only)"


def retrieval_figure(path: Path, summary: pd.DataFrame, record: ArithmeticRecord) -> Path:
    """Top-1 retrieval accuracy and median pixel error per model/layer (x) and problem kind (bars)."""
    groups = list(dict.fromkeys(zip(summary["model"], summary["layer"], summary["weights"])))
    kinds = [k for k in KIND_ORDER if k in set(summary["kind"])]
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(groups) * 2), 4.4), layout="constrained")
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(kinds))
    for ax, col, label in ((axes[0], "top1_accuracy", "top-1 retrieval accuracy"),
                           (axes[1], "median_pixel_error", "median pixel error (px)")):
        for k, kind in enumerate(kinds):
            vals = []
            for model, layer, weights in groups:
                row = summary[(summary["model"] == model) & (summary["layer"] == layer)
                              & (summary["weights"] == weights) & (summary["kind"] == kind)]
                vals.append(float(row[col].iloc[0]) if len(row) else np.nan)
            ax.bar(x + (k - (len(kinds) - 1) / 2) * width, vals, width, label=kind)
        ax.set_xticks(x, [f"{m}\n{layer}" + ("\nuntrained" if "untrained" in w else "") for m, layer, w in groups],
                      fontsize=8)
        ax.set_ylabel(label)
        if col == "top1_accuracy":
            ax.set_ylim(0, 1.05)
        else:  # errors are >= 0: an axis from 0, also when every error is 0
            top = np.nanmax(summary[col].to_numpy(float)) if summary[col].notna().any() else 0.0
            ax.set_ylim(0, max(1.0, 1.1 * top))
    n = summary.groupby("kind")["n_problems"].max().to_dict()
    # below the panels: inside, the legend would cover the bars of an accuracy near 1
    fig.legend(axes[0].containers, [f"{k} (n={n.get(k, 0)})" for k in kinds], fontsize=8, loc="outside lower center",
               ncols=len(kinds))
    title = "Feature arithmetic: is the expected scene the candidate closest to r?"
    if _untrained(record):
        title += "  [untrained weights labelled]"
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def make_figures(figures_dir: Path, record: ArithmeticRecord, summary: pd.DataFrame, per: pd.DataFrame,
                 inverted: Mapping[str, "Inversions"], scenes: Mapping[str, Scene], expressions: Sequence[Expression],
                 patches: Mapping[str, Patch], canvas: int, background: Sequence[int] = (255, 255, 255),
                 keep_aspect: bool = False) -> list[Path]:
    """Every figure of an arithmetic run; returns their paths."""
    renderer = SceneRenderer(patches, canvas, background, keep_aspect=keep_aspect)
    out = []
    for e in expressions:
        out.append(expression_figure(figures_dir / f"{figure_name(e.name)}.png", e, record, per, inverted, scenes,
                                     renderer))
    if len(summary):
        out.append(retrieval_figure(figures_dir / "arithmetic_retrieval.png", summary, record))
    return out
