"""Where a run's parts are computed: `local` (this process, the default) or `ray` (long-lived workers on a Ray
cluster writing into a shared results folder). Both give the same parts, so the same tables."""

from __future__ import annotations

from typing import Callable

import torch

from shiftlens.config import RunConfig
from shiftlens.executors.base import (ComputePart, Executor, ModelJob, ModelSession, Progress, WorkItem,
                                      closing)
from shiftlens.executors.local import LocalExecutor


def make_executor(cfg: RunConfig, device: torch.device, log: Callable[[str], None] = lambda s: None) -> Executor:
    """The config's executor; for `ray`, connects to (or starts) the cluster and starts the workers."""
    if cfg.executor == "ray":
        from shiftlens.executors.ray import RayExecutor

        return RayExecutor(address=cfg.ray_address, workers=cfg.workers, device=device, log=log)
    return LocalExecutor()


__all__ = ["ComputePart", "Executor", "LocalExecutor", "ModelJob", "ModelSession", "Progress", "WorkItem", "closing",
           "make_executor"]
