"""What a scenario's ``run(ctx)`` gets: the config, fresh temp dirs, our ``Client``, guards."""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _harness import NOT_AVAILABLE_YET, Config, Outcome, Unavailable


class Context:
    """Shared by every scenario of one run."""

    def __init__(self, cfg: Config, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.log = log
        self.errors: list[str] = []
        self.notes: list[str] = []  # about the current scenario (data sizes...), reset per scenario
        self._root: Path | None = None
        self._ours: Any = None
        self._ours_problem: str | None = None
        self._loaded = False

    # --- our package ----------------------------------------------------------------------

    def ours(self) -> Any:
        """This package's ``Client`` class; ``Unavailable`` until the lead's Client lands."""
        if not self._loaded:
            self._loaded = True
            try:
                from cashet import Client

                self._ours = Client
            except Exception as exc:
                self._ours_problem = f"{NOT_AVAILABLE_YET} ({type(exc).__name__}: {exc})"
        if self._ours is None:
            raise Unavailable(self._ours_problem or NOT_AVAILABLE_YET)
        return self._ours

    @property
    def ours_problem(self) -> str | None:
        try:
            self.ours()
        except Unavailable as exc:
            return str(exc)
        return None

    @staticmethod
    def require(module: str) -> Any:
        """Import an optional peer's module, or raise ``Unavailable`` saying it is missing."""
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise Unavailable(f"not installed ({exc.name}; make bench installs it)") from exc

    # --- temp dirs ------------------------------------------------------------------------

    @contextmanager
    def scenario_dir(self, name: str) -> Iterator[Path]:
        """A temp dir for one scenario; removed with everything in it afterwards."""
        root = Path(tempfile.mkdtemp(prefix=f"cashet-bench-{name}-"))
        self._root = root
        self.notes = []
        try:
            yield root
        finally:
            self._root = None
            shutil.rmtree(root, ignore_errors=True)

    def note(self, text: str) -> None:
        """Attach a note to the current scenario's row (sizes, fill times...)."""
        self.notes.append(text)

    def tmpdir(self, label: str) -> Path:
        """A fresh, empty directory (each peer's store gets its own)."""
        assert self._root is not None, "tmpdir() outside a scenario"
        return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self._root))

    # --- guarded measuring ----------------------------------------------------------------

    def attempt(self, peer: str, thunk: Callable[[], Outcome]) -> Outcome:
        """Run one peer's measurement; an exception becomes an ``error`` outcome.

        ``Unavailable`` (not installed, not built yet) is a normal outcome; any other
        exception is recorded in ``errors`` so the run exits non-zero.
        """
        try:
            return thunk()
        except Unavailable as exc:
            return Outcome.unavailable(str(exc))
        except Exception as exc:
            return self.failed(peer, exc)

    def failed(self, peer: str, exc: Exception) -> Outcome:
        """Record a peer's unexpected exception (printed to stderr) as an ``error`` outcome."""
        traceback.print_exception(exc, file=sys.stderr)
        self.errors.append(f"{peer}: {type(exc).__name__}: {exc}")
        return Outcome.error(exc)
