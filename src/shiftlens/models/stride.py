"""The network's total stride, measured: how far the input must move for the coarsest feature map to move one cell.

The grid pattern of the similarity maps repeats at this period (analyses/invariance.py's grid share). Built-in
models declare it; for `torchvision:`, `timm:` and `custom()` models `probe_net_stride` measures it from shapes
alone (meta device or fake tensors: no weights, no memory, no download).

How: run the network at three input sides, `SIZES` = 224, 672 and 1568, and record the shape of every module's
output. A map of total stride s grows by exactly D/s cells per side when the input grows by D px, for every D that
s divides (each strided layer floors, but floors of whole multiples are exact); a token count on a grid of stride t
grows by exactly (x1**2 - x0**2) / t**2. Both growths, D = 448 and D = 1344, must give the same whole s (or t);
the largest s over all maps, (N, C, H, W) or (N, H, W, C), is the network's stride. The sides are multiples of 224
so that window-attention networks (7x7 windows at stride 32) accept them, and 448 = 2**6 * 7 resolves every
power-of-two stride up to 64.

The probe is either right or says why not (`StrideProbe.note`), never a guess: an output that follows the input
by no whole stride (a stride of 3 * 2**k, 128 or more, a grid rounded up), dims that grow unlike a square map's,
tokens on a grid coarser than every map (tokens merged after the last map), a network that refuses another input
size, or one that cannot run on shapes alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from shiftlens.models.shapes import build_for_shapes, call_on_shapes

SIZES = (224, 672, 1568)


@dataclass(frozen=True)
class StrideProbe:
    stride: int | None
    note: str = ""
    """Why `stride` is None, as one line for the invariance analysis ("grid share left out: NOTE")."""


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def output_shapes(model: nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    """{"module path#call#k": shape} of every tensor every module returns, for one (1, 3, size, size) input
    (shapes only: shapes.call_on_shapes)."""
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}

    def hook(name: str):
        def record(module, inputs, output) -> None:
            call = calls[name] = calls.get(name, -1) + 1
            for k, t in enumerate(_tensors(output)):
                shapes[f"{name or '<model>'}#{call}#{k}"] = tuple(t.shape)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()]
    training = model.training
    model.eval()  # a given module comes back in the mode it came in
    try:
        call_on_shapes(model, model, size)
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    return shapes


def _where(key: str) -> str:
    name, call, _ = key.split("#")
    return f"module {name}" + (f" (call {int(call) + 1})" if call != "0" else "")


def _whole(steps: list[int], growths: list[int]) -> int | None:
    """The whole number q with growth == step / q at every side, else None."""
    q = {step // g if g > 0 and step % g == 0 else None for step, g in zip(steps, growths)}
    return q.pop() if len(q) == 1 and None not in q else None


def _classify(shapes: list[tuple[int, ...]]) -> tuple[list[tuple[int, int]], list[int], bool]:
    """Each dim (but the batch) whose size follows the input: ([(dim, stride)] of dims that grow linearly, as a
    map's side does, [stride] of dims that grow with the square of the side, as a token count on a grid does,
    and whether some dim grows in neither way)."""
    sides, counts, odd = [], [], False
    for d in range(1, len(shapes[0])):
        sizes = [s[d] for s in shapes]
        if len(set(sizes)) == 1:
            continue
        growths = [n - sizes[0] for n in sizes[1:]]
        linear = _whole([x - SIZES[0] for x in SIZES[1:]], growths)
        square = _whole([x * x - SIZES[0] ** 2 for x in SIZES[1:]], growths)
        if linear:
            sides.append((d, linear))
        elif square and math.isqrt(square) ** 2 == square:
            counts.append(math.isqrt(square))
        else:
            odd = True
    return sides, counts, odd


def net_stride_from_shapes(runs: list[dict[str, tuple[int, ...]]]) -> StrideProbe:
    """The stride from `output_shapes` at each of `SIZES` (see the module docstring for the rules)."""
    if any(r.keys() != runs[0].keys() or any(len(r[k]) != len(v) for k, v in runs[0].items()) for r in runs[1:]):
        return StrideProbe(None, "the network calls different modules at different input sizes")
    best, token_grids = 0, []
    for key in runs[0]:
        shapes = [r[key] for r in runs]
        if len(shapes[0]) < 3:
            continue  # (N, D) features: flattened or pooled, no grid left to read
        sides, counts, odd = _classify(shapes)
        described = ", ".join(f"{s} px: {shape}" for s, shape in zip(SIZES, shapes))
        if odd:
            return StrideProbe(None, f"{_where(key)}'s output follows the input by no whole stride ({described})")
        if sides:
            (d1, s1), *rest = sides
            if len(rest) != 1 or rest[0] != (d1 + 1, s1):
                return StrideProbe(None, f"{_where(key)} returns an output whose dims follow the input unlike a "
                                         f"square map's ({described})")
            best = max(best, s1)
        token_grids += [(key, t) for t in counts]
    if not best:
        return StrideProbe(None, "no feature map follows the input size")
    for key, t in token_grids:
        if t > best:
            return StrideProbe(None, f"{_where(key)} returns tokens on a {t} px grid, coarser than every feature "
                                     f"map's (at most {best} px): tokens merged after the last map")
    return StrideProbe(best)


def probe_net_stride(model_at: Callable[[int], nn.Module]) -> StrideProbe:
    """The stride of the network `model_at(side)` returns (the same module for every side, or one built for it,
    as a ViT's position embedding needs); StrideProbe(None, why) when it cannot be measured."""
    runs = []
    for size in SIZES:
        try:
            runs.append(output_shapes(model_at(size), size))
        except Exception as exc:  # refused sizes, data-dependent code, ops without a meta kernel: all say why
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            where = "cannot run on shapes alone" if size == SIZES[0] else f"refuses a {size} px input"
            return StrideProbe(None, f"the network {where} ({exc.__class__.__name__}: {first})")
    return net_stride_from_shapes(runs)


def built_at_size(build: Callable[..., nn.Module], size_kwarg: str) -> Callable[[int], nn.Module]:
    """`model_at` for a builder that may take the input side as a keyword (timm's `img_size`, torchvision's
    `image_size`); builders without it give one model for every side."""
    plain: list[nn.Module] = []

    def model_at(size: int) -> nn.Module:
        if not plain:
            try:
                return build_for_shapes(build, **{size_kwarg: size})
            except TypeError:  # this architecture has no such argument: its maps follow any input side
                plain.append(build_for_shapes(build))
        return plain[0]

    return model_at
