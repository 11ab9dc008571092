"""Cross-part state in the analysis contract: what an analysis keeps across the parts of one model and patch size
(the units analysis's per-position sums over patches; later a leaderboard or a pooled SVM).

An analysis declares it with `Analysis.cross_part`, a `CrossPartState` subclass. Its life, the same on every executor:

- created per model and size (one instance holds every layer) in each process that computes parts: the driver
  with the local executor, each worker with Ray (`CrossPartCompute`, the `ComputePart` the driver hands over);
- fed by each part through the analysis's `update`; a part's contribution is *pending* until its file, with the
  token the analysis stored in it, is on disk (`saved`), or dropped when it never gets there;
- merged associatively: each process writes its own shards (additive, naming the parts they hold as patch id ->
  token), the build merges them in a canonical order (sorted part keys), so local and Ray runs give equal tables;
- reloaded on resume: `uncounted` names the finished parts whose contribution is in no valid shard (a run or a
  worker stopped before its shard was written), which are computed again; the driver asks again after each size,
  so a Ray worker killed mid-run has the parts it held redone in the same run;
- turned into tables, zarr groups and figure data at the end by the analysis's `outputs`.

This module names no analysis: the API (`shiftlens.api`) and the executors handle every cross-part state through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import numpy as np
import pandas as pd
import torch

from shiftlens.store import PartMeta, ResultsDir

Todo = tuple[int, Any, PartMeta]
"""(size, patch, meta) of one part, as the driver lists them."""


class CrossPartState:
    """One analysis's state over the parts of one model and size. Subclasses keep the data (fed by their analysis's
    `update`) and write it as shards; this base class holds what every executor relies on."""

    analysis: ClassVar[str] = ""
    """The analysis whose state this is (its arrays carry the token `part_token` reads)."""

    def __init__(self, results: ResultsDir, model: str, size: int, device: torch.device | str = "cpu") -> None:
        self.results, self.model, self.size = results, model, size
        self.device = torch.device(device)
        self.pending: dict[str, str] = {}
        """Parts computed into the state whose file is not yet known to be on disk: patch id -> token."""

    def saved(self, patch_id: str) -> None:
        """The part is on disk with its token: its contribution may go into a shard."""
        raise NotImplementedError

    def stop_writing(self) -> None:
        """A contribution was dropped (its part never reached the disk as computed): the state holds data no part
        stands for, so it must never be written; its saved parts are in no shard and get computed again."""
        raise NotImplementedError

    def close(self) -> None:
        """Write what is held (the end of a model and size in this process)."""
        raise NotImplementedError

    @classmethod
    def part_token(cls, path: Path) -> str | None:
        """The token the part file at `path` carries for this analysis; None without one."""
        raise NotImplementedError

    @classmethod
    def uncounted(cls, results: ResultsDir, model: str, done: list[Todo], todo: list[Todo]) -> list[tuple[int, Any, PartMeta, str]]:
        """Of a model's finished parts `done`, those to compute again because their contribution is in no valid
        shard, with the reason; `todo` are the parts computed anyway (shards naming them are dropped)."""
        raise NotImplementedError


class AnalysisOutputs(Protocol):
    """What an analysis with cross-part state gives the build: its tables, its maps.zarr groups, its figure data
    (the figure makers registered in `figures.OUTPUT_FIGURES` under the analysis's name read it)."""

    def tables(self) -> dict[str, pd.DataFrame]: ...
    def write_zarr(self, store: Path) -> None: ...


class CrossPartCompute:
    """`api.run_patch` with the run's cross-part states: a ComputePart (executors/base.py) that gives every part the
    states of its model and size, and moves a part's contribution into them once the part's file, with the same
    token, is on disk (checked at the next part and at `close`, which every executor calls at the end of a
    session's `run`). Pickled as it is to Ray workers: each worker's copy keeps its own states and shards."""

    def __init__(self, compute: Callable[..., dict[str, np.ndarray]], results_root: str,
                 states: dict[str, type[CrossPartState]], **options: Any) -> None:
        self.compute, self.results_root, self.kinds, self.options = compute, results_root, dict(states), options
        self.live: dict[str, CrossPartState] = {}
        self.key: tuple[str, int] | None = None

    def __call__(self, extractor: Any, spec: Any, weights_label: str, patch: Any, rgba: np.ndarray, cfg: Any,
                 on_batch: Callable[[int], None] = lambda n: None) -> dict[str, np.ndarray]:
        key = (spec.key, int(rgba.shape[0]))
        if self.key != key:
            self.close()
            results = ResultsDir(self.results_root)
            self.live = {name: kind(results, key[0], key[1], extractor.device, **self.options)
                         for name, kind in self.kinds.items()}
            self.key = key
        self._commit()
        return self.compute(extractor, spec, weights_label, patch, rgba, cfg, on_batch, states=self.live)

    def _commit(self) -> None:
        for state in self.live.values():
            for pid, token in list(state.pending.items()):
                if state.part_token(state.results.part_path(state.model, state.size, pid)) == token:
                    state.saved(pid)
                else:  # computed but not saved as such: the state holds a contribution no part stands for
                    state.pending.pop(pid)
                    state.stop_writing()

    def close(self) -> None:
        """Write the states of the current model and size (a state that lost a contribution writes nothing: its
        parts are redone)."""
        self._commit()
        for state in self.live.values():
            state.close()
        self.live, self.key = {}, None


def uncounted(kinds: list[type[CrossPartState]], results: ResultsDir, model: str, done: list[Todo],
              todo: list[Todo]) -> list[tuple[int, Any, PartMeta, str]]:
    """Every state's `uncounted`, each part once (the first reason given)."""
    out: dict[tuple[int, str], tuple[int, Any, PartMeta, str]] = {}
    for kind in kinds:
        for size, patch, meta, reason in kind.uncounted(results, model, done, todo):
            out.setdefault((size, meta.patch_id), (size, patch, meta, reason))
    return list(out.values())


__all__ = ["AnalysisOutputs", "CrossPartCompute", "CrossPartState", "Todo", "uncounted"]
