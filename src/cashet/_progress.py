"""A progress bar for long batches (``submit_many``/``map``), on a terminal only."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["PROGRESS_MIN_TASKS", "progress"]

#: Batches of at least this many tasks show a progress bar when stderr is a terminal.
PROGRESS_MIN_TASKS = 8


class _NoProgress:
    def __enter__(self) -> Callable[[], None]:
        return lambda: None

    def __exit__(self, *exc: object) -> None:
        return None


class _RichProgress:
    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("cashet", total=total)

    def __enter__(self) -> Callable[[], None]:
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def progress(total: int) -> _NoProgress | _RichProgress:
    """A context manager giving an ``advance()`` callable: a bar on a terminal, else nothing."""
    if total >= PROGRESS_MIN_TASKS and sys.stderr is not None and sys.stderr.isatty():
        return _RichProgress(total)
    return _NoProgress()
