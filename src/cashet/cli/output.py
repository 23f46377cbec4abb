"""How the commands print commits and values: plain text when piped, Rich on a terminal.

Plain output is stable for scripts (``log`` and ``history``: one tab-separated line per
commit; fields are only ever added at the end); ``--json`` uses the view the HTTP server
shares (:mod:`cashet.provenance.views`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import click

from cashet._humanize import format_size
from cashet.cli.app import CliContext, emit_json
from cashet.models import Commit
from cashet.provenance.views import commit_view

__all__ = [
    "STATUS_STYLE",
    "iso_utc",
    "local_time",
    "parse_tags",
    "print_commits",
    "seconds_text",
    "short_hash",
    "tags_text",
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


def _commit_table(cli: CliContext, commits: Iterable[Commit], title: str, mark: str = "") -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    now = datetime.now(UTC)
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("Hash", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Function", overflow="fold", min_width=10)
    table.add_column("Size", no_wrap=True, justify="right")
    table.add_column("Compute", no_wrap=True, justify="right")
    table.add_column("Hits", no_wrap=True, justify="right")
    table.add_column("Tags", overflow="fold")
    for c in commits:
        status = Text(c.status.value, style=STATUS_STYLE.get(c.status.value, ""))
        if c.is_expired(now):
            status.append(" expired", style="dim")
        table.add_row(
            Text(c.short_hash, style="bold reverse cyan" if c.hash == mark else "cyan"),
            local_time(c.created_at),
            status,
            Text(c.func_name),
            format_size(c.result.size) if c.result else "-",
            seconds_text(c.compute_seconds),
            str(c.hits) if c.hits else "-",
            Text(tags_text(c.tags)),
        )
    cli.console().print(table)


def print_commits(
    cli: CliContext, commits: list[Commit], as_json: bool, title: str, mark: str = ""
) -> None:
    """Print commits as JSON, tab-separated lines (piped) or a Rich table (``mark`` bold)."""
    if as_json:
        emit_json([commit_view(c, full=False) for c in commits])
    elif not cli.rich:
        for c in commits:
            click.echo(_commit_line(c))
    elif not commits:
        cli.console().print("[dim]No commits.[/dim]")
    else:
        _commit_table(cli, commits, title, mark)
