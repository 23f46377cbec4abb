"""How the commands print commits and values: plain text when piped, Rich on a terminal.

Plain output is stable for scripts (``log`` and ``history``: one tab-separated line per
commit; fields are only ever added at the end); ``--json`` uses the view the HTTP server
shares (:mod:`cashet.provenance.views`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from cashet._humanize import format_size
from cashet.cli.app import CliContext, emit_json
from cashet.models import Commit
from cashet.provenance.views import commit_view

if TYPE_CHECKING:
    from rich.text import Text

__all__ = [
    "STATUS_STYLE",
    "iso_utc",
    "local_time",
    "parse_tags",
    "print_commits",
    "seconds_text",
    "short_hash",
    "tags_text",
    "working",
]

STATUS_STYLE = {"completed": "green", "failed": "red", "running": "yellow"}


def iso_utc(dt: datetime | None) -> str:
    """UTC, to the second, ISO 8601: ``2024-05-01T10:32:17Z`` (plain output)."""
    if dt is None:
        return "-"
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_time(dt: datetime | None) -> str:
    """Local time for people, to the minute: ``2024-05-01 12:32``."""
    if dt is None:
        return "-"
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def short_hash(h: str | None) -> str:
    """The first 12 hex digits, or ``-``."""
    return h[:12] if h else "-"


def seconds_text(value: float | None) -> str:
    """A duration for people: ``12 µs``, ``3.4 ms``, ``1.25 s``."""
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def tags_text(tags: dict[str, str]) -> str:
    """``env=prod, model=v3``: tags sorted by key."""
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def parse_tags(values: Sequence[str], option: str = "--tag") -> dict[str, str | None]:
    """``("env=prod", "experiment")`` -> ``{"env": "prod", "experiment": None}``."""
    out: dict[str, str | None] = {}
    for text in values:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not key:
            raise click.BadParameter(
                f"Invalid tag {text!r}: tag key cannot be empty (expected KEY=VALUE or KEY)",
                param_hint=option,
            )
        parsed = value if sep else None
        if key in out and out[key] != parsed:
            raise click.BadParameter(f"tag {key!r} given twice", param_hint=option)
        out[key] = parsed
    return out


def _commit_line(c: Commit) -> str:
    result = short_hash(c.result.hash) if c.result else "-"
    return "\t".join(
        (c.hash, iso_utc(c.created_at), c.status.value, c.func_name, result, str(c.hits))
    )


#: The table's columns, most important first; at a narrow width the last are dropped first
#: (the function column is shortened instead, down to ``_FUNCTION_MIN``).
_COLUMNS = ("Hash", "Status", "Function", "Created", "Size", "Compute", "Hits", "Tags")
_FUNCTION_MIN = 12
#: Hash, status, function, date: dropped only when the function cannot be shortened more.
_CORE = 4
#: What a column takes beside its text in the table (padding and separator).
_PAD = 3


def _commit_cells(c: Commit, now: datetime, mark: str) -> dict[str, Text]:
    from rich.text import Text

    status = Text(c.status.value, style=STATUS_STYLE.get(c.status.value, ""))
    if c.is_expired(now):
        status.append(" expired", style="dim")
    return {
        "Hash": Text(c.short_hash, style="bold reverse cyan" if c.hash == mark else "cyan"),
        "Created": Text(local_time(c.created_at)),
        "Status": status,
        "Function": Text(c.func_name),
        "Size": Text(format_size(c.result.size) if c.result else "-"),
        "Compute": Text(seconds_text(c.compute_seconds)),
        "Hits": Text(str(c.hits) if c.hits else "-"),
        "Tags": Text(tags_text(c.tags)),
    }


def fit_columns(widths: dict[str, int], room: int) -> list[str]:
    """The columns to show in ``room`` characters, most important first.

    The least important are dropped until the rest fit whole, down to hash, status,
    function and date; then the function is shortened (to no less than ``_FUNCTION_MIN``)
    and, if that is not enough, the date dropped too.
    """

    def need(names: list[str], function: int) -> int:
        total = sum(function if n == "Function" else widths[n] for n in names)
        return total + _PAD * len(names) + 1

    shown = [name for name in _COLUMNS if name in widths]
    while len(shown) > _CORE and need(shown, widths["Function"]) > room:
        shown.pop()
    while len(shown) > 3 and need(shown, min(widths["Function"], _FUNCTION_MIN)) > room:
        shown.pop()
    return shown


def _commit_table(
    cli: CliContext, commits: Iterable[Commit], title: str, mark: str = "", wide: bool = False
) -> None:
    from rich import box
    from rich.table import Table

    now = datetime.now(UTC)
    rows = [_commit_cells(c, now, mark) for c in commits]
    widths = {name: max([len(name)] + [r[name].cell_len for r in rows]) for name in _COLUMNS}
    if not any(r["Tags"].plain for r in rows):
        del widths["Tags"]
    console = cli.console()
    natural = sum(widths.values()) + _PAD * len(widths) + 2
    if wide:  # everything, one line per commit however wide (the terminal may wrap it)
        shown = list(widths)
        console.width = max(console.width, natural, len(title))
    else:
        shown = fit_columns(widths, console.width)
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    room = console.width - _PAD * len(shown) - 1
    function_max = max(_FUNCTION_MIN, room - sum(widths[n] for n in shown if n != "Function"))
    for name in shown:
        table.add_column(
            name,
            no_wrap=True,
            overflow="ellipsis",
            justify="right" if name in ("Size", "Compute", "Hits") else "left",
            min_width=min(widths[name], _FUNCTION_MIN) if name == "Function" else widths[name],
            max_width=function_max if name == "Function" and not wide else None,
        )
    for r in rows:
        table.add_row(*(r[name] for name in shown))
    console.print(table)


@contextmanager
def working(text: str) -> Iterator[None]:
    """A spinner on stderr while long work runs, when stderr is a terminal; else nothing."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


def print_commits(
    cli: CliContext,
    commits: list[Commit],
    as_json: bool,
    title: str,
    mark: str = "",
    wide: bool = False,
) -> None:
    """Print commits as JSON, tab-separated lines (piped) or a Rich table (``mark`` bold):
    one commit per line, fitted to the terminal's width unless ``wide``."""
    if as_json:
        emit_json([commit_view(c, full=False) for c in commits])
    elif not cli.rich:
        for c in commits:
            click.echo(_commit_line(c))
    elif not commits:
        cli.console().print("[dim]No commits.[/dim]")
    else:
        _commit_table(cli, commits, title, mark, wide)
