"""Problems: an expression's operands with coefficients, the expected scene, and the object whose position is probed.

The seeded benchmark draws three kinds, in turn, over the patch set at random grid positions (objects never
overlap, so pixel arithmetic is exact for them):
- move:   f(A@p) - f(A@q) + f(B@q)  against f(B@p)   (an analogy: no pixel-space identity; probe B)
- add:    f({X@a}) + f({Y@b})        against f({X@a, Y@b})   (probe Y, the added object)
- remove: f({X@a, Y@b}) - f({Y@b})   against f({X@a})        (probe X, the object that stays)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from shiftlens.analyses.arithmetic.expressions import Expression
from shiftlens.canvases import offsets
from shiftlens.errors import ShiftlensError
from shiftlens.scenes import Scene, SceneObject

KINDS = ("move", "add", "remove")


@dataclass(frozen=True)
class Problem:
    name: str
    kind: str
    """move, add, remove, or expression."""
    operands: tuple[tuple[int, Scene, str], ...]
    expected: Scene
    probe: int | None
    """Index in `expected.objects` of the object whose position retrieval probes; None for a blank E."""

    @property
    def text(self) -> str:
        return term_text([(c, label) for c, _, label in self.operands])


def term_text(terms: Sequence[tuple[int, str]]) -> str:
    """`[(1, "a"), (-2, "b")]` -> "a - 2 b": the terms as written once merged."""
    out = ""
    for c, label in terms:
        sign = "- " if c < 0 else "+ " if out else ""
        out += sign + (f"{abs(c)} " if abs(c) != 1 else "") + label + " "
    return out.strip()


def expression_problems(expr: Expression, scenes: Mapping[str, Scene]) -> list[Problem]:
    """One problem per probed object: the objects E gains from operands after the first, or all of E's objects
    when it gains none (a pure subtraction)."""
    expected = expr.expected(scenes)
    operands = tuple((c, scenes[s], s) for c, s in expr.terms)
    first = set(scenes[expr.terms[0][1]].objects) if expr.terms[0][0] > 0 else set()
    added = [i for i, o in enumerate(expected.objects) if o not in first]
    probes: Sequence[int | None] = added or list(range(len(expected.objects))) or [None]
    return [Problem(expr.name, "expression", operands, expected, p) for p in probes]


def _overlap(a: tuple[int, int], b: tuple[int, int], size: int) -> bool:
    return abs(a[0] - b[0]) < size and abs(a[1] - b[1]) < size


def random_problems(patch_ids: Sequence[str], n: int, seed: int, size: int, canvas: int, stride: int) -> list[Problem]:
    """`n` problems (move, add, remove in turn), reproducible from `seed`."""
    if n <= 0:
        return []
    if len(patch_ids) < 2:
        raise ShiftlensError(f"the random-problem benchmark needs at least 2 patches, the patch set has {len(patch_ids)}: "
                             "give more patches or --problems 0")
    grid = offsets(canvas, size, stride)
    if canvas - size < size:
        raise ShiftlensError(f"{size}px objects cannot sit side by side without overlap on the {canvas}px canvas: use "
                             f"--size {canvas // 2} or less")
    rng = np.random.default_rng(seed)

    def two_positions() -> tuple[tuple[int, int], tuple[int, int]]:
        while True:
            p = (int(rng.choice(grid)), int(rng.choice(grid)))
            q = (int(rng.choice(grid)), int(rng.choice(grid)))
            if not _overlap(p, q, size):
                return p, q

    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        a_id, b_id = (str(x) for x in rng.choice(np.asarray(patch_ids, dtype=object), size=2, replace=False))
        p, q = two_positions()
        A = lambda pos: SceneObject(a_id, size, *pos)  # noqa: E731
        B = lambda pos: SceneObject(b_id, size, *pos)  # noqa: E731
        name = f"{kind}_{i:03d}"
        if kind == "move":
            ops = ((1, Scene((A(p),)), f"{a_id}@{p[0]},{p[1]}"), (-1, Scene((A(q),)), f"{a_id}@{q[0]},{q[1]}"),
                   (1, Scene((B(q),)), f"{b_id}@{q[0]},{q[1]}"))
            out.append(Problem(name, kind, ops, Scene((B(p),)), 0))
        elif kind == "add":
            ops = ((1, Scene((A(p),)), f"{a_id}@{p[0]},{p[1]}"), (1, Scene((B(q),)), f"{b_id}@{q[0]},{q[1]}"))
            out.append(Problem(name, kind, ops, Scene((A(p), B(q))), 1))
        else:
            ops = ((1, Scene((A(p), B(q))), f"{a_id}@{p[0]},{p[1]}+{b_id}@{q[0]},{q[1]}"),
                   (-1, Scene((B(q),)), f"{b_id}@{q[0]},{q[1]}"))
            out.append(Problem(name, kind, ops, Scene((A(p),)), 0))
    return out
