"""Library logging: silent by default; ``CASHET_LOG=DEBUG|INFO|WARNING|ERROR`` prints to stderr."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["configure_from_env", "log"]

log = logging.getLogger("cashet")
log.addHandler(logging.NullHandler())

_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}
_configured = False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (pytest and notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_from_env() -> None:
    """Attach a ``[cashet]`` stderr handler when ``CASHET_LOG`` names a level (once)."""
    global _configured
    if _configured:
        return
    _configured = True
    value = os.environ.get("CASHET_LOG", "").strip().upper()
    if not value:
        return
    level = _LEVELS.get(value)
    if level is None:
        print(
            f"[cashet] ignoring CASHET_LOG={value!r}: use DEBUG, INFO, WARNING or ERROR",
            file=sys.stderr,
        )
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("[cashet] %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
