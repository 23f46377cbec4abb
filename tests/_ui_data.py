"""A small cache for the web UI's tests: a pipeline linked by ``ResultRef`` arguments, a
failed run, and commits whose tags and arguments carry HTML and script (shown as text)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cashet import Client
from cashet.errors import TaskError

#: In a tag and an argument: it must show as text, never run (it would set the flag).
XSS_TAG = "<script>window.__pwned = 1</script>"
XSS_ARG = '<img src=x onerror="window.__pwned = 1">'


def load(n: int) -> list[int]:
    return list(range(n))


def scale(xs: list[int], k: int = 2) -> list[int]:
    return [x * k for x in xs]


def total(xs: list[int]) -> int:
    return sum(xs)


def fails(x: str) -> None:
    raise ValueError(f"bad input {x!r}")


def label(text: str) -> str:
    return text.upper()


@dataclass
class Data:
    """The commits made: a pipeline (load -> scale -> total, twice), a failure, a label."""

    load: str
    scale3: str
    total3: str
    scale4: str
    total4: str
    failed: str
    xss: str


def populate(store_dir: Path) -> Data:
    """Fill the store at ``store_dir`` (made here) and return the commits' hashes."""
    with Client(store_dir=store_dir) as c:
        loaded = c.submit(load, 10)
        s3 = c.submit(scale, loaded, k=3)
        t3 = c.submit(total, s3)
        s4 = c.submit(scale, loaded, k=4)
        t4 = c.submit(total, s4)
        c.submit(scale, loaded, k=3)  # a hit
        with pytest.raises(TaskError):
            c.submit(fails, "<b>x</b>")
        failed = c.log(func_name="fails", limit=1)[0].hash
        xss = c.submit(label, XSS_ARG, _tags={"note": XSS_TAG, XSS_TAG: "k"})
        return Data(
            load=loaded.commit_hash,
            scale3=s3.commit_hash,
            total3=t3.commit_hash,
            scale4=s4.commit_hash,
            total4=t4.commit_hash,
            failed=failed,
            xss=xss.commit_hash,
        )
