"""Scene expressions: `A - B + C` over named scenes, and the scene they should equal in pixel space.

A scene named more than once is one term whose coefficient is the sum of its signs, where the name first appears
(`s + s + s` is 3 s: one operand, one set of probes); a scene whose signs cancel is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from shiftlens.errors import ShiftlensError
from shiftlens.scenes import Scene, combine, multiplicities

_TOKEN = re.compile(r"\s*([+-])?\s*([A-Za-z_][\w.-]*)\s*")


@dataclass(frozen=True)
class Expression:
    """A named expression: an integer coefficient on each named scene, in the order the names first appear."""

    name: str
    text: str
    terms: tuple[tuple[int, str], ...]

    @property
    def coefficient_sum(self) -> int:
        return sum(c for c, _ in self.terms)

    def expected(self, scenes: Mapping[str, Scene]) -> Scene:
        """The pixel-space result E: the operands' objects as a multiset (subtracting an absent object is an error)."""
        return combine(self._labelled(scenes))

    def _labelled(self, scenes: Mapping[str, Scene]) -> list[tuple[int, Scene, str]]:
        return [(c, scenes[s], f"expression {self.name!r} ({self.text}): operand {s!r}") for c, s in self.terms]

    def check(self, scenes: Mapping[str, Scene]) -> list[str]:
        """Refuses (one line) an expression whose expected scene is blank: there is no object to retrieve, and for
        a tap linear in the pixels r == f(blank) whatever the network. Returns the notes worth a line: E equal to an
        operand (r is then that operand's feature plus what cancels), and objects E holds more than once."""
        where = f"expression {self.name!r} ({self.text})"
        expected = self.expected(scenes)
        if not expected.objects:
            raise ShiftlensError(f"{where}: its expected scene is blank (the operands' objects cancel), so there is "
                                 "no object to find: check the scenes' objects, or leave the expression out")
        notes = [f"{where}: its expected scene is the same as operand {s!r}, so the arithmetic is compared with "
                 f"a scene an operand already shows (cos_gain says whether it adds anything)"
                 for _, s in self.terms if set(scenes[s].objects) == set(expected.objects) and len(self.terms) > 1]
        if self.terms == ((1, self.terms[0][1]),):
            notes.append(f"{where}: a single operand is its own expected scene, so r == f(E) and cos(r, f(E)) = 1 "
                         "by construction")
        repeated = [f"{o} x{n}" for o, n in multiplicities(self._labelled(scenes)).items() if n > 1]
        if repeated:
            notes.append(f"{where}: E holds {', '.join(repeated)} at one place, which the pixels show once; the "
                         "linear identity r == f(E) does not hold for such stacked copies")
        return notes


def parse_expression(text: str, name: str, scenes: Mapping[str, Scene]) -> Expression:
    """`three - two` -> Expression; every name must be a defined scene."""
    terms: list[tuple[int, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos or (terms and m.group(1) is None):
            raise ShiftlensError(f"expression {name!r}: cannot read {text!r} at {text[pos:]!r}: write scene names "
                                 "joined by + and -, e.g. \"three - two\"")
        terms.append((-1 if m.group(1) == "-" else 1, m.group(2)))
        pos = m.end()
    if not terms:
        raise ShiftlensError(f"expression {name!r} is empty: write scene names joined by + and -, e.g. \"three - two\"")
    for _, s in terms:
        if s not in scenes:
            known = ", ".join(scenes) or "none"
            raise ShiftlensError(f"expression {name!r} uses scene {s!r}, which is not defined (defined: {known}): add "
                                 f"--scene {s}=PATCH@Y,X ... or a [scenes.{s}] table")
    merged: dict[str, int] = {}
    for c, s in terms:
        merged[s] = merged.get(s, 0) + c
    for s, c in merged.items():
        if c == 0:
            raise ShiftlensError(f"expression {name!r} ({text}): scene {s!r} is added and subtracted as often, so it "
                                 "cancels out: leave it out of the expression")
    return Expression(name, text, tuple((c, s) for s, c in merged.items()))
