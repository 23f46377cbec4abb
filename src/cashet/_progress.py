"""A progress bar for long batches (``submit_many``/``map``), on a terminal only."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["PROGRESS_MIN_TASKS", "progress"]

#: Batches of at least this many tasks show a progress bar when stderr is a terminal.
PROGRESS_MIN_TASKS = 8


#: ``advance()`` moves the bar one step; ``advance("note")`` shows a note and does not.
Advance = Callable[..., None]


class _NoProgress:
    def __enter__(self) -> Advance:
        return lambda note=None: None

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

    def _advance(self, note: str | None = None) -> None:
        if note is None:
            self._progress.advance(self._task)
        else:
            self._progress.update(self._task, description=f"{self._label} ({note})")

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
