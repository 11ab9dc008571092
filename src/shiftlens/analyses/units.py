"""Inside a layer: for every unit, how much of its variance over the patch x position grid is position, how much
patch identity, and which canvases drive it most (natural exemplars), all computed while streaming.

For one model, layer and patch size, with a[i, p] a unit's value for patch i (N patches) at position p (P positions):

- m_p = mean over patches at position p (the unit's *tuning map*), m_i = mean over positions of patch i, m = mean;
- total variance  V = mean over (i, p) of (a[i, p] - m)^2;
- position        V_pos = mean over p of (m_p - m)^2;
- identity        V_id  = mean over i of (m_i - m)^2;
- interaction     V_int = V - V_pos - V_id (the grid is complete and balanced, so the three add up exactly);
- shares          V_pos / V, V_id / V, V_int / V. A unit with V <= (1e-6 |m|)^2 (constant up to float32 rounding)
  is *silent*: it has no shares and is left out of the means.

What streams where: a part (one patch) stores per unit its mean m_i, its sum of squared deviations over positions
(combined batch by batch with Chan's parallel formula, float64) and its own top-k (value, position); the per-position
sums over patches live in a cross-part accumulator (`unit_state.UnitAccumulator`, saved as shards). The build adds
the parts' (mean, M2) with the same formula, sums the shards for m_p, and merges the parts' top-k into the global
top-k. No feature matrix is ever held.

Layer numbers (`tables/units.csv`): mean shares over live units, pooled shares (sum of a part over all units / sum
of V), the fraction of live units whose position share exceeds their identity share, and the effective number of
position-coding units, the participation ratio of position variance across units, (sum V_pos)^2 / sum V_pos^2
(1 when one unit carries all of it, the number of units when all carry the same).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import xarray as xr

from shiftlens.analyses.base import Analysis, PlanContext, register_analysis
from shiftlens.analyses.unit_state import UnitAccumulator, load_sum, new_token, token_array
from shiftlens.canvases import axis_positions
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.store import Part, ResultsDir

if TYPE_CHECKING:
    from shiftlens.models import ModelSpec

NAME = "units"
FEATURED = 16
"""Units shown per kind in the figures: the most position-coding and the most identity-coding."""
SILENT_REL = 1e-6



def check_requested(units: list[int], specs: list[ModelSpec], canvas: int) -> list[str]:
    """`--units` against each analysed layer's unit count (measured on shapes alone, before any work): one line for
    an index no layer has, and a note for each layer an index is beyond (that layer's figures leave it out)."""
    if not units:
        return []
    from shiftlens.models.summary import feature_sizes  # builds on the meta device: only when units are asked for

    counts = {}
    for spec in specs:
        sizes = feature_sizes(spec.entry, canvas)
        counts.update({f"{spec.key}:{layer}": sizes.get(layer) for layer in spec.layers})
    known = {name: n for name, n in counts.items() if n is not None}
    if not known:
        return []
    notes = []
    for unit in dict.fromkeys(units):
        beyond = [name for name, n in known.items() if unit >= n]
        listed = ", ".join(f"{name} has {known[name]} units" for name in beyond)
        if len(beyond) == len(known):
            raise ShiftlensError(f"--units {unit} is out of range: {listed}; give indices from 0 to "
                                 f"{max(known.values()) - 1} (tables/units_per_unit.csv lists every unit)")
        if beyond:
            of = ", ".join(f"the {known[name]} units of {name}" for name in beyond)
            notes.append(f"--units {unit} is beyond {of}: only the other layers' figures show it")
    return notes

@register_analysis
class Units(Analysis):
    name = NAME
    cross_part = UnitAccumulator

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        acc = ctx.states.get(NAME)
        if not isinstance(acc, UnitAccumulator):
            raise RuntimeError("the units analysis needs the cross-part accumulator of its model and size in "
                               "ctx.states (analyses/cross_part.py: every executor gives it)")
        self.acc = acc
        self.acc.set_grid(ctx.n)
        self.k = min(ctx.config.units_topk, ctx.n * ctx.n)
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}
        self.m2: dict[str, torch.Tensor] = {}
        self.top_v: dict[str, torch.Tensor] = {}
        self.top_i: dict[str, torch.Tensor] = {}

    def update(self, idx: torch.Tensor, feats: dict[str, torch.Tensor]) -> None:
        nb = int(idx.shape[0])
        for layer in self.ctx.layers:
            f = feats[layer]
            self.acc.add(layer, idx, f)
            f64 = f.double()
            bmean = f64.mean(0)
            bm2 = (f64 - bmean).square().sum(0)
            if self.count == 0:
                self.mean[layer], self.m2[layer] = bmean, bm2
            else:  # Chan et al.: combine (count, mean, M2) of the part so far with the batch's
                total = self.count + nb
                delta = bmean - self.mean[layer]
                self.mean[layer] = self.mean[layer] + delta * (nb / total)
                self.m2[layer] = self.m2[layer] + bm2 + delta.square() * (self.count * nb / total)
            pos = idx.to(f.device).view(1, -1).expand(f.shape[1], -1)
            vals = f.float().T
            if layer in self.top_v:
                vals = torch.cat([self.top_v[layer], vals], 1)
                pos = torch.cat([self.top_i[layer], pos], 1)
            kk = min(self.k, vals.shape[1])
            v, j = vals.topk(kk, dim=1)
            self.top_v[layer], self.top_i[layer] = v, pos.gather(1, j)
        self.count += nb

    def finish(self, features=None) -> dict[str, np.ndarray]:
        if self.count != self.ctx.n * self.ctx.n:
            raise RuntimeError("units: the stream missed positions")
        token = new_token()
        self.acc.finished(self.ctx.patch_id, token)
        out = {}
        for layer in self.ctx.layers:
            out[f"{NAME}/{layer}/mean"] = self.mean[layer].cpu().numpy()
            out[f"{NAME}/{layer}/m2"] = self.m2[layer].cpu().numpy()
            out[f"{NAME}/{layer}/top_values"] = self.top_v[layer].cpu().numpy().astype(np.float32)
            out[f"{NAME}/{layer}/top_positions"] = self.top_i[layer].cpu().numpy().astype(np.int32)
            out[f"{NAME}/{layer}/token"] = token_array(token)
        return out

    @classmethod
    def tables(cls, parts: list[Part], config: RunConfig) -> dict[str, pd.DataFrame]:
        """Empty: the unit tables need the accumulator's shards besides the parts, so `UnitOutputs` makes them."""
        return {}

    @classmethod
    def outputs(cls, results: ResultsDir, parts: list[Part], config: RunConfig) -> "UnitOutputs | None":
        return UnitOutputs(results, parts, config) if parts else None

    @classmethod
    def check(cls, plan: PlanContext) -> list[str]:
        return check_requested(plan.config.units, plan.specs, plan.config.canvas)


# -- the build: from parts and shards to shares, exemplars, tables, maps -----------------------------------------


def merge_topk(values: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global top-k from per-part top-k: values, positions (N parts, D, k_part) -> (D, k) values, part indices and
    positions, highest first. Equals the top-k over every (part, position) because each part's own top-k holds
    all of its candidates for it."""
    n, d, kp = values.shape
    flat_v = values.transpose(1, 0, 2).reshape(d, n * kp).astype(np.float64)
    flat_part = np.broadcast_to(np.arange(n)[:, None], (n, kp)).reshape(-1)
    flat_pos = positions.transpose(1, 0, 2).reshape(d, n * kp)
    k = min(k, n * kp)
    # stable sort on -value: ties keep the earlier part and the part's own order
    order = np.argsort(-flat_v, axis=1, kind="stable")[:, :k]
    return (np.take_along_axis(flat_v, order, 1), flat_part[order], np.take_along_axis(flat_pos, order, 1))


@dataclass
class LayerUnits:
    """One model, layer and patch size: every unit's numbers, its exemplars, and the tuning maps of featured units."""

    model: str
    layer: str
    weights: str
    untrained: bool
    patch_size: int
    n: int
    patch_ids: list[str]
    mean: np.ndarray
    total: np.ndarray
    position: np.ndarray
    identity: np.ndarray
    ex_value: np.ndarray
    ex_patch: np.ndarray
    ex_pos: np.ndarray
    tuning: dict[int, np.ndarray] = field(default_factory=dict)
    """(n, n) tuning maps (per-position means) of the featured units."""

    @property
    def interaction(self) -> np.ndarray:
        return np.clip(self.total - self.position - self.identity, 0.0, None)

    @property
    def live(self) -> np.ndarray:
        return self.total > (SILENT_REL * np.abs(self.mean)) ** 2 + 1e-30

    def shares(self) -> dict[str, np.ndarray]:
        """Per-unit shares, NaN for silent units."""
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(self.live, self.total, np.nan)
            return {"position_share": self.position / t, "identity_share": self.identity / t,
                    "interaction_share": self.interaction / t}

    def featured(self, extra: list[int]) -> dict[str, list[int]]:
        """The most position-coding and most identity-coding live units, and the requested ones in range."""
        s = self.shares()
        live = np.flatnonzero(self.live)
        by_pos = live[np.argsort(-s["position_share"][live], kind="stable")]
        by_id = live[np.argsort(-s["identity_share"][live], kind="stable")]
        asked = [u for u in dict.fromkeys(extra) if 0 <= u < len(self.mean)]
        return {"position": by_pos[:FEATURED].tolist(), "identity": by_id[:FEATURED].tolist(), "requested": asked}

    def summary_row(self) -> dict:
        s = self.shares()
        live = self.live
        v = self.position[live]
        eff = float(v.sum() ** 2 / np.square(v).sum()) if live.any() and np.square(v).sum() > 0 else float("nan")
        tot = float(self.total[live].sum())
        frac = float((s["position_share"][live] > s["identity_share"][live]).mean()) if live.any() else float("nan")
        return dict(model=self.model, layer=self.layer, weights=self.weights, patch_size=self.patch_size,
                    n_units=len(self.mean), n_silent=int((~live).sum()), n_patches=len(self.patch_ids),
                    n_positions=self.n * self.n,
                    position_share=float(np.nanmean(s["position_share"])) if live.any() else float("nan"),
                    identity_share=float(np.nanmean(s["identity_share"])) if live.any() else float("nan"),
                    interaction_share=float(np.nanmean(s["interaction_share"])) if live.any() else float("nan"),
                    position_share_pooled=float(v.sum() / tot) if tot > 0 else float("nan"),
                    identity_share_pooled=float(self.identity[live].sum() / tot) if tot > 0 else float("nan"),
                    frac_position_dominant=frac, effective_position_units=eff,
                    effective_position_fraction=eff / int(live.sum()) if live.any() else float("nan"))


def _groups(parts: list[Part]) -> dict[tuple[str, str, int], list[Part]]:
    out: dict[tuple[str, str, int], list[Part]] = {}
    for part in parts:
        for layer in part.layers(NAME):
            out.setdefault((part.model, layer, part.patch_size), []).append(part)
    return out


def _tokens(members: list[Part], layer: str) -> dict[str, str]:
    return {p.patch_id: bytes(p.get(NAME, layer, "token")).decode() for p in members}


def layer_units(results: ResultsDir, members: list[Part], layer: str, extra_units: list[int],
                k: int) -> LayerUnits:
    """Every unit's numbers for one (model, layer, size) from its parts and the accumulator's shards."""
    first = members[0]
    n, npos = first.n, first.n * first.n
    means = np.stack([p.get(NAME, layer, "mean") for p in members]).astype(np.float64)  # (N, D)
    m2 = np.stack([p.get(NAME, layer, "m2") for p in members]).astype(np.float64)
    grand = means.mean(0)
    identity = np.square(means - grand).mean(0)
    total = (m2.sum(0) / npos + np.square(means - grand).sum(0)) / len(members)  # (sum M2 + P sum (m_i - m)^2) / NP
    sums = load_sum(results, first.model, first.patch_size, layer, _tokens(members, layer))
    pos_mean = sums / len(members)  # (P, D)
    del sums
    position = np.square(pos_mean - grand).mean(0)
    ev, ep, epos = merge_topk(np.stack([p.get(NAME, layer, "top_values") for p in members]),
                              np.stack([p.get(NAME, layer, "top_positions") for p in members]), k)
    lu = LayerUnits(first.model, layer, first.weights, first.untrained, first.patch_size, n,
                    [p.patch_id for p in members], grand, total, position, identity, ev, ep, epos)
    for kind in lu.featured(extra_units).values():
        for u in kind:
            lu.tuning[u] = pos_mean[:, u].reshape(n, n).astype(np.float32)
    return lu


class UnitOutputs:
    """The units analysis's outputs for a finished run: per-unit and per-layer tables, the maps.zarr groups
    (`MODEL/LAYER/pSIZE/units`), and what the figures need. Computed group by group so that only one layer's
    per-position sums are in memory at a time."""

    def __init__(self, results: ResultsDir, parts: list[Part], config: RunConfig) -> None:
        self.results, self.config = results, config
        self.members = _groups(parts)
        self.groups = [layer_units(results, m, layer, config.units, config.units_topk)
                       for (_, layer, _), m in self.members.items()]

    def tables(self) -> dict[str, pd.DataFrame]:
        summary = pd.DataFrame([g.summary_row() for g in self.groups])
        rows = []
        for g in self.groups:
            s = g.shares()
            top = g.ex_pos[:, 0]
            o = positions(self.config, g.patch_size)
            rows.append(pd.DataFrame(dict(
                model=g.model, layer=g.layer, weights=g.weights, patch_size=g.patch_size,
                unit=np.arange(len(g.mean)), mean=g.mean, total_variance=g.total, **s,
                top_patch=[g.patch_ids[i] for i in g.ex_patch[:, 0]], top_y=o[top // g.n], top_x=o[top % g.n],
                top_value=g.ex_value[:, 0])))
        return {"units": summary, "units_per_unit": pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()}

    def dataset(self, g: LayerUnits) -> xr.Dataset:
        """Every unit's numbers, tuning maps and exemplars, as xarray (the per-position sums are read again)."""
        members = self.members[(g.model, g.layer, g.patch_size)]
        sums = load_sum(self.results, g.model, g.patch_size, g.layer, _tokens(members, g.layer))
        tuning = (sums / len(members)).T.reshape(-1, g.n, g.n).astype(np.float32)
        del sums
        o = positions(self.config, g.patch_size)
        s = g.shares()
        return xr.Dataset(
            {"tuning": (("unit", "y", "x"), tuning),
             "mean": ("unit", g.mean), "total_variance": ("unit", g.total),
             **{k: ("unit", v) for k, v in s.items()},
             "exemplar_value": (("unit", "rank"), g.ex_value.astype(np.float32)),
             "exemplar_patch": (("unit", "rank"), np.asarray(g.patch_ids)[g.ex_patch]),
             "exemplar_y": (("unit", "rank"), o[g.ex_pos // g.n].astype(np.int32)),
             "exemplar_x": (("unit", "rank"), o[g.ex_pos % g.n].astype(np.int32))},
            coords={"unit": np.arange(len(g.mean)), "y": o, "x": o, "rank": np.arange(g.ex_value.shape[1])},
            attrs={"model": g.model, "layer": g.layer, "patch_size": g.patch_size, "weights": g.weights,
                   "untrained": g.untrained, "stride": self.config.stride, "canvas": self.config.canvas,
                   "n_patches": len(members)},
        )

    def write_zarr(self, store: Path) -> None:
        """Add one group per (model, layer, size) to the zarr store being built at `store`."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
            for g in self.groups:
                self.dataset(g).to_zarr(store, group=zarr_group(g.model, g.layer, g.patch_size), mode="a",
                                        consolidated=False, zarr_format=3)


def positions(config: RunConfig, size: int) -> np.ndarray:
    """The grid's offsets along one axis, in pixels (the patch's top-left corner for the paste protocol)."""
    return axis_positions(config.canvas, size, config.stride, config.protocol, config.shift)


def zarr_group(model: str, layer: str, size: int) -> str:
    return f"{model}/{layer}/p{size}/units"


def open_units(path: Path, model: str, layer: str, size: int) -> xr.Dataset:
    """`xr.open_zarr` of one group's units dataset in a run's maps.zarr."""
    return xr.open_zarr(path, group=zarr_group(model, layer, size), consolidated=False)


__all__ = ["LayerUnits", "Units", "UnitOutputs", "layer_units", "merge_topk", "open_units", "zarr_group"]
