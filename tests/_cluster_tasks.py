"""Task functions the cluster tests ship by reference (importable on every worker).

Each run appends one line (``<x> <pid>``) to the file ``log``, so a test counts runs across
processes and hosts without trusting the cache it tests.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any


def counted_square(log: str, x: int, seconds: float = 0.0) -> int:
    """``x * x``, after ``seconds``; one line in ``log`` per run."""
    with open(log, "a") as f:
        f.write(f"{x} {os.getpid()}\n")
    time.sleep(seconds)
    return x * x


def die_first_time(log: str, marker: str, x: int) -> int:
    """The first run writes its pid to ``marker`` and hangs (the test SIGKILLs it); later
    runs return ``x + 1``."""
    with open(log, "a") as f:
        f.write(f"{x} {os.getpid()}\n")
    if not os.path.exists(marker):
        Path(marker + ".tmp").write_text(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        time.sleep(120)
    return x + 1


def runs(log: str) -> list[str]:
    """The lines of ``log`` (no file: no run)."""
    try:
        return Path(log).read_text().splitlines()
    except FileNotFoundError:
        return []


def _wrap(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@_wrap
def wrapped_cube(x: int) -> int:
    """Its module's name is the wrapper (as with ``@client.task``); the function that runs
    is ``wrapped_cube.__wrapped__``."""
    return x**3


def timed_step(log: str, name: str, x: int, seconds: float = 0.0) -> int:
    """``x + 1`` after ``seconds``; one line ``<name> <start> <end> <pid>`` in ``log``."""
    start = time.time()
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"{name} {start} {time.time()} {os.getpid()}\n")
    return x + 1


def failing_step(log: str, x: int) -> int:
    """Fails (``ValueError``) after one line in ``log``."""
    with open(log, "a") as f:
        f.write(f"failing {x} {os.getpid()}\n")
    raise ValueError(f"bad input {x}")


class PerProcess:
    """A value whose cache-key digest differs in every process (``__cashet_hash__`` reads
    the pid): a worker cannot key a call holding it as the driver did."""

    def __cashet_hash__(self) -> int:
        return os.getpid()


def step_with_token(log: str, x: int, token: PerProcess) -> int:
    """:func:`timed_step` named ``down``, with a ``PerProcess`` argument in its key."""
    return timed_step(log, "down", x)
