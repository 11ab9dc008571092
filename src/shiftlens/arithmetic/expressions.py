"""Scene expressions: `A - B + C` over named scenes, and the scene they should equal in pixel space."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from shiftlens.errors import ShiftlensError
from shiftlens.scenes import Scene, combine

_TOKEN = re.compile(r"\s*([+-])?\s*([A-Za-z_][\w.-]*)\s*")


@dataclass(frozen=True)
class Expression:
    """A named expression: integer coefficients (+1 / -1) on named scenes, in the order written."""

    name: str
    text: str
    terms: tuple[tuple[int, str], ...]

    @property
    def coefficient_sum(self) -> int:
        return sum(c for c, _ in self.terms)

    def expected(self, scenes: Mapping[str, Scene]) -> Scene:
        """The pixel-space result E: the operands' objects as a multiset (subtracting an absent object is an error)."""
        return combine([(c, scenes[s], f"expression {self.name!r} ({self.text}): operand {s!r}") for c, s in self.terms])


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
    return Expression(name, text, tuple(terms))
