"""A progress bar for long batches (``submit_many``/``map``), on a terminal only."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["PROGRESS_MIN_TASKS", "BatchTally", "progress"]

#: Batches of at least this many tasks show a progress bar when stderr is a terminal.
PROGRESS_MIN_TASKS = 8


#: ``advance()`` moves the bar one step; ``advance("note")`` shows a note and does not;
#: ``advance("note", step=True)`` does both.
Advance = Callable[..., None]


class _NoProgress:
    def __enter__(self) -> Advance:
        return lambda note=None, step=None: None

    def __exit__(self, *exc: object) -> None:
        return None


class _RichProgress:
    def __init__(self, total: int, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._label = label
        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> Advance:
        self._progress.start()
        return self._advance

    def _advance(self, note: str | None = None, step: bool | None = None) -> None:
        if note is not None:
            self._progress.update(self._task, description=f"{self._label} ({note})")
        if step or (step is None and note is None):
            self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def progress(
    total: int, label: str = "cashet", min_total: int = PROGRESS_MIN_TASKS
) -> _NoProgress | _RichProgress:
    """A context manager giving an ``advance(note=None)`` callable: a bar on stderr when it
    is a terminal and there are at least ``min_total`` steps, else nothing."""
    if total >= min_total and sys.stderr is not None and sys.stderr.isatty():
        return _RichProgress(total, label)
    return _NoProgress()


class BatchTally:
    """What a batch's bar says beside its count: how many calls ran, came from the cache,
    and are running now (a cluster's batch shows its hits are not sent anywhere)."""

    __slots__ = ("advance", "cached", "ran")

    def __init__(self, advance: Advance) -> None:
        self.advance = advance
        self.ran = 0
        self.cached = 0

    def done(self, cached: bool, running: int) -> None:
        """One call finished (from the cache or run); ``running`` are still in flight."""
        if cached:
            self.cached += 1
        else:
            self.ran += 1
        self.advance(f"{self.ran} ran, {self.cached} cached, {running} running", step=True)
