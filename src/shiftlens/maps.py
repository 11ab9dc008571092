"""The similarity maps as a zarr store that xarray opens: one group per model/layer/size, dims (patch, anchor, y, x).

`xr.open_zarr("maps.zarr", group="efficientnet_lite0/pool/p75")["similarity"]` gives the labelled array; y and x
are the patch's top-left offsets in pixels. The store is rebuilt from the parts into a temporary folder and
swapped in, so a reader never sees half a store; its `.shiftlens-files` lists what shiftlens wrote (store.atomic_dir),
so a file a user adds is kept (zarr warns that such files are no part of the hierarchy when it lists the whole tree).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from shiftlens.analyses.base import ANCHORS
from shiftlens.canvases import axis_positions
from shiftlens.store import Part, atomic_dir


def groups(parts: list[Part]) -> dict[tuple[str, str, int], list[Part]]:
    out: dict[tuple[str, str, int], list[Part]] = {}
    for part in parts:
        for layer in part.layers("similarity"):
            out.setdefault((part.model, layer, part.patch_size), []).append(part)
    return out


def dataset(parts: list[Part], model: str, layer: str, size: int, canvas: int, stride: int, protocol: str = "paste",
            shift: str = "move") -> xr.Dataset:
    """y and x: the protocol's offsets (canvases.positions): the patch's top-left corner, the circular shift, or
    the crop window's top-left corner."""
    maps = np.stack([p.get("similarity", layer, "maps") for p in parts])
    o = axis_positions(canvas, size, stride, protocol, shift)
    first = parts[0]
    return xr.Dataset(
        {"similarity": (("patch", "anchor", "y", "x"), maps)},
        coords={
            "patch": [p.patch_id for p in parts],
            "category": ("patch", [p.category for p in parts]),
            "anchor": list(ANCHORS),
            "y": o,
            "x": o,
        },
        attrs={"model": model, "layer": layer, "patch_size": size, "weights": first.weights,
               "untrained": first.untrained, "stride": stride, "canvas": canvas, "protocol": protocol, "shift": shift},
    )


def write(parts: list[Part], path: Path, canvas: int, stride: int, protocol: str = "paste", shift: str = "move",
          extra: Callable[[Path], None] | None = None) -> None:
    """`extra(store)` adds other groups (the units analysis's) to the store before it is swapped in."""
    with atomic_dir(path, prefix=".maps.", suffix=".zarr") as tmp, warnings.catch_warnings():
        # zarr 3 warns that fixed-width unicode (the patch and anchor labels) is not yet in its v3 spec;
        # xarray writes and reads it fine.
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        for (model, layer, size), members in groups(parts).items():
            ds = dataset(members, model, layer, size, canvas, stride, protocol, shift)
            ds.to_zarr(tmp, group=f"{model}/{layer}/p{size}", mode="a", consolidated=False, zarr_format=3)
        if extra is not None:
            extra(tmp)


def open_group(path: Path, model: str, layer: str, size: int) -> xr.Dataset:
    return xr.open_zarr(path, group=f"{model}/{layer}/p{size}", consolidated=False)
