"""The part-3 numbers for a list of problems on one model: every scene's features in one pass, then per layer
cos(r, f(E)), the best single operand's cosine, and position retrieval."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from shiftlens.analyses.arithmetic.features import cosine, result_vector, scene_features
from shiftlens.analyses.arithmetic.problems import Problem
from shiftlens.analyses.arithmetic.retrieval import candidates, retrieve
from shiftlens.scenes import BLANK, Scene, SceneRenderer
from shiftlens.stream import FeatureExtractor


def scenes_needed(problems: Sequence[Problem], canvas: int, stride: int) -> list[Scene]:
    """Every scene the problems' numbers need (the blank, operands, expected scenes, candidates), once each."""
    out: dict[Scene, None] = {BLANK: None}
    for pr in problems:
        for _, s, _ in pr.operands:
            out[s] = None
        out[pr.expected] = None
        if pr.probe is not None:
            out.update(dict.fromkeys(candidates(pr.expected, pr.probe, canvas, stride)[0]))
    return list(out)


def measure(problems: Sequence[Problem], extractor: FeatureExtractor, renderer: SceneRenderer, layers: Sequence[str],
            canvas: int, stride: int, batch_size: int, on_batch: Callable[[int], None] = lambda n: None) -> list[dict]:
    """One row per (problem, layer): the numbers of tables/arithmetic_per_problem.csv without the model columns."""
    scenes = scenes_needed(problems, canvas, stride)
    feats = scene_features(extractor, renderer, scenes, batch_size, on_batch)
    index = {s: i for i, s in enumerate(scenes)}
    rows = []
    for layer in layers:
        f = feats[layer]
        blank = f[index[BLANK]]
        for pr in problems:
            coefs = [c for c, _, _ in pr.operands]
            ops = f[[index[s] for _, s, _ in pr.operands]]
            target = f[index[pr.expected]]
            r = result_vector(coefs, ops, blank)
            cos_ops = np.atleast_1d(cosine(ops, target))
            size = pr.expected.objects[pr.probe if pr.probe is not None else 0].size if pr.expected.objects else 0
            row = dict(layer=layer, patch_size=size, problem=pr.name, kind=pr.kind, expression=pr.text, expected=str(pr.expected),
                       coefficient_sum=int(sum(coefs)),
                       cos_result=float(cosine(r, target)),
                       cos_uncorrected=float(cosine(np.asarray(coefs, float) @ ops, target)),
                       cos_best_operand=float(cos_ops.max()))
            row["cos_gain"] = row["cos_result"] - row["cos_best_operand"]
            if pr.probe is None:
                row.update(probe="", rank=np.nan, top1=np.nan, pixel_error=np.nan, n_candidates=0)
            else:
                cands, pos, truth = candidates(pr.expected, pr.probe, canvas, stride)
                ret = retrieve(np.atleast_1d(cosine(f[[index[s] for s in cands]], r)), pos, truth)
                row.update(probe=str(pr.expected.objects[pr.probe]), rank=ret.rank, top1=ret.top1,
                           pixel_error=ret.pixel_error, n_candidates=ret.n_candidates)
            rows.append(row)
    return rows
