"""The local executor: every part in this process, one after the other, with the driver's own model (the default)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from shiftlens.executors.base import ModelJob, Progress, WorkItem, close_compute
from shiftlens.store import ResultsDir
from shiftlens.stream import FeatureExtractor


class LocalSession:
    """One model's FeatureExtractor in this process."""

    def __init__(self, job: ModelJob, extractor: FeatureExtractor) -> None:
        self.job = job
        self.extractor = extractor
        self.results = ResultsDir(job.results_root)

    @property
    def compiled(self) -> bool:
        return self.extractor.compiled

    @property
    def compile_error(self) -> str | None:
        return self.extractor.compile_error

    def run(self, items: list[WorkItem], progress: Progress) -> None:
        job = self.job
        for item in items:
            arrays = job.compute(self.extractor, job.spec, job.weights_label, item.patch,
                                 item.patch.resized(item.size, job.cfg.keep_aspect), job.cfg, progress.advance)
            self.results.save_part(item.meta, arrays)
        close_compute(job.compute)  # the cross-part state of these parts goes into its shards


class LocalExecutor:
    name = "local"

    def describe(self) -> str:
        return "this process"

    @contextlib.contextmanager
    def session(self, job: ModelJob) -> Iterator[LocalSession]:
        model = job.model if job.model is not None else job.build()
        with FeatureExtractor(model, job.layers, job.spec.entry.normalisation, job.device, job.precision,
                              compile=job.compile, pad_to=job.cfg.batch_size) as extractor:
            yield LocalSession(job, extractor)

    def close(self) -> None:
        pass
