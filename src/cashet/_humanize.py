"""Text for people: byte sizes (parse ``"1GB"``/``"500 MiB"``/``"1.5g"``, print
``"1.5 GiB"``) and URLs with their password masked.

Units are binary throughout (1 KB = 1 KiB = 1024 bytes), as in the README's
``gc(max_size_bytes=1024 * 1024 * 1024)  # 1GB``, so ``--max-size 1GB`` and the API agree.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_size", "mask_url", "parse_size"]

_UNITS = {
    "": 0,
    "b": 0,
    "k": 1,
    "kb": 1,
    "kib": 1,
    "m": 2,
    "mb": 2,
    "mib": 2,
    "g": 3,
    "gb": 3,
    "gib": 3,
    "t": 4,
    "tb": 4,
    "tib": 4,
    "p": 5,
    "pb": 5,
    "pib": 5,
}
_SIZE = re.compile(r"^\s*(\d+(?:_\d+)*(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_LABELS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def parse_size(text: str) -> int:
    """Return the number of bytes in ``text`` (``"1GB"``, ``"500 MiB"``, ``"1.5g"``, ``"4096"``).

    Fractions are rounded down to whole bytes.

    Raises:
        ValueError: ``text`` is not a non-negative size with a known unit.
    """
    match = _SIZE.match(text) if isinstance(text, str) else None
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit "
            "(B, KB, MB, GB, TB; KiB, MiB... are the same), e.g. 1GB or 500MB"
        )
    value = float(match.group(1).replace("_", "")) * 1024 ** _UNITS[unit]
    if not math.isfinite(value):
        raise ValueError(f"invalid size {text!r}: too large")
    return int(value)


def format_size(n: int | float) -> str:
    """Return ``n`` bytes as text: ``0 B``, ``512 B``, ``1.5 KiB``, ``10.0 MiB``."""
    size = float(n)
    sign = "-" if size < 0 else ""
    size = abs(size)
    for label in _LABELS:
        if size < 1024 or label == _LABELS[-1]:
            if label == "B":
                return f"{sign}{int(size)} B"
            return f"{sign}{size:.1f} {label}"
        size /= 1024
    raise AssertionError("unreachable")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for messages and output."""
    url = re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)
