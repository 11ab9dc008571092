"""The executor interface: where a model's parts are computed, in this process or on a pool of workers.

The driver (`api._run_locked`) decides what to compute (one `WorkItem` per unfinished (model, size, patch)) and
builds every output from the saved parts; an executor only decides where each part is computed. Every part is
written by `ResultsDir.save_part` (atomic), so an executor that loses a worker loses at most the part in flight.

This module imports nothing after the feature stream: the computation itself (`api.run_patch`) and the model
builder are handed over in the `ModelJob`, so executors never import the API that calls them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from shiftlens.config import RunConfig
from shiftlens.models import LayerSpec, ModelSpec
from shiftlens.patches import Patch
from shiftlens.store import PartMeta


class Progress(Protocol):
    """What a run reports to: one bar per model and size; `worker` names who computed the images (None: here)."""

    def start(self, label: str, total_images: int) -> None: ...
    def advance(self, images: int, worker: str | None = None) -> None: ...
    def stop(self) -> None: ...


ComputePart = Callable[..., dict[str, np.ndarray]]
"""`api.run_patch(extractor, spec, weights_label, patch, rgba, cfg, on_batch)`: one part's arrays. One with a
`close()` keeps state across parts (analyses/cross_part.py: `CrossPartCompute`): every process that computed parts
with it calls `close_compute` at the end of each `ModelSession.run`, which writes that state."""


def close_compute(compute: ComputePart) -> None:
    """Write the state a ComputePart keeps across parts, if it keeps any (the end of a session's `run`)."""
    close = getattr(compute, "close", None)
    if callable(close):
        close()


@dataclass(frozen=True)
class WorkItem:
    """One part to compute: the patch at one size, and the metadata its file is saved (and later checked) under."""

    size: int
    patch: Patch
    meta: PartMeta
    images: int
    """Positions of this part: what the progress bar counts."""

    @property
    def label(self) -> str:
        return f"{self.meta.model} {self.size}px {self.patch.id}"


@dataclass
class ModelJob:
    """Everything a worker needs to compute one model's parts; sent once per model to every worker, so it holds
    the recipe for the model (`build`), not the model."""

    spec: ModelSpec
    weights_label: str
    cfg: RunConfig
    """The run's config with this model's batch size."""
    layers: list[LayerSpec]
    """Every tapped layer (the user's and the analyses' extra ones)."""
    device: torch.device
    precision: str
    compile: bool
    results_root: str
    """The results folder as an absolute path: workers write the parts there."""
    compute: ComputePart
    build: Callable[[], nn.Module]
    """Builds the model with the run's weights and checks their digest against the driver's (workers on other
    machines must not compute with another checkpoint file of the same name)."""
    model: nn.Module | None = None
    """The driver's own copy, used in this process; executors that ship the job to workers drop it."""


class ModelSession(Protocol):
    """One model, loaded wherever the executor computes: `run` computes and saves every item, in any order, and
    before it returns has `close_compute` called wherever the job's compute ran."""

    compiled: bool
    compile_error: str | None

    def run(self, items: list[WorkItem], progress: Progress) -> None: ...


class Executor(Protocol):
    name: str

    def describe(self) -> str:
        """Who computes the parts, for run.json's notes (e.g. `2 Ray workers, 1 thread each, on a local Ray`)."""
        ...

    def session(self, job: ModelJob) -> contextlib.AbstractContextManager[ModelSession]: ...

    def close(self) -> None:
        """Release the workers (and a cluster this executor started); calling it again does nothing."""
        ...


@contextlib.contextmanager
def closing(executor: Executor) -> Iterator[Executor]:
    try:
        yield executor
    finally:
        executor.close()
