"""How a long call reports its progress: rich bars for the terminal, a callback for other programs, or nothing.

`api.run(cfg, progress=True)` draws the command line's bars; `progress=fn` calls `fn(label, done, total)` after
every batch; any object with `start`, `advance` and `stop` (executors.base.Progress) is used as it is.
"""

from __future__ import annotations

import time
from typing import Callable, Union

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


class Silent:
    """Reports nothing: the default of the Python API."""

    def start(self, label: str, total_images: int) -> None: ...
    def advance(self, images: int, worker: str | None = None) -> None: ...
    def stop(self) -> None: ...


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} img/s" if speed else "-- img/s", style="cyan")


class RichProgress:
    """Progress bars per model and patch size, showing images/s and ETA (a fresh bar each, so none is drawn twice);
    with several workers (--executor ray) the bar also shows each worker's images/s."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar: Progress | None = None
        self.task = None
        self.label = ""
        self.workers: dict[str, list[float]] = {}  # worker -> [images, first report (monotonic seconds)]

    def start(self, label: str, total_images: int) -> None:
        """`label` may end in ` · WHAT IT WAITS FOR` (e.g. compiling), shown until the first images arrive; the
        spinner and the elapsed time move meanwhile."""
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
        self.bar.start()
        self.label, self.workers, self.waiting = label.split(" · ")[0], {}, " · " in label
        self.task = self.bar.add_task(label, total=total_images)

    def advance(self, images: int, worker: str | None = None) -> None:
        if worker is None:
            if self.waiting:
                self.waiting = False
                self.bar.update(self.task, description=self.label)
            self.bar.update(self.task, advance=images)
            return
        now = time.monotonic()
        seen = self.workers.setdefault(worker, [0.0, now])
        seen[0] += images
        rates = "  ".join(f"{w} {n / max(now - t, 1e-9):,.0f}/s" if now > t else f"{w} --/s"
                          for w, (n, t) in sorted(self.workers.items()))
        self.bar.update(self.task, advance=images, description=f"{self.label} ({rates})")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()  # a run that fails mid-bar leaves neither the bar nor a hidden cursor behind its one line


class CallbackProgress:
    """Calls `fn(label, done, total)` when a bar starts (done 0) and after every batch."""

    def __init__(self, fn: Callable[[str, int, int], None]) -> None:
        self.fn, self.label, self.done, self.total = fn, "", 0, 0

    def start(self, label: str, total_images: int) -> None:
        self.label, self.done, self.total = label.split(" · ")[0], 0, total_images
        self.fn(self.label, 0, total_images)

    def advance(self, images: int, worker: str | None = None) -> None:
        self.done += images
        self.fn(self.label, self.done, self.total)

    def stop(self) -> None: ...


ProgressArg = Union[bool, Callable[[str, int, int], None], None, object]
"""What `progress=` takes: True (rich bars on stderr), False or None (nothing), a callback, or a Progress object."""


def make_progress(value: ProgressArg):
    """The Progress object for a `progress=` argument (see ProgressArg)."""
    if value is None or value is False:
        return Silent()
    if value is True:
        return RichProgress()
    if all(hasattr(value, m) for m in ("start", "advance", "stop")):
        return value
    if callable(value):
        return CallbackProgress(value)
    raise TypeError(f"progress={value!r}: give True, False, a callback fn(label, done, total) or a Progress object")
