"""Query commands: ``log``, ``show``, ``get``, ``diff``, ``history`` (read-only)."""

from __future__ import annotations

import json
import pprint
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cashet._humanize import format_size
from cashet.cli.app import CliContext, emit_json, fail, json_option, pass_cli
from cashet.cli.output import (
    STATUS_STYLE,
    iso_utc,
    parse_tags,
    print_commits,
    seconds_text,
    short_hash,
    tags_text,
)
from cashet.models import Commit, TaskStatus
from cashet.provenance.query import require_commit
from cashet.provenance.views import commit_view, manifest_rows

__all__ = ["diff", "get", "history", "log", "show"]

_SERIALIZERS = ("pickle", "safe-pickle", "json")

#: ``-o -``: the result's bytes to stdout (not a file named ``-``).
_STDOUT = Path("-")

#: How many items of a list or dict ``get`` prints to a terminal without ``--all``.
_SHOWN = 100


@click.command()
@click.option("--func", "-f", "func_name", metavar="NAME", help="Only commits of this function.")
@click.option(
    "--tag",
    "-t",
    "tags",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Only commits with this tag (KEY alone: any value). Repeat to AND them.",
)
@click.option(
    "--status",
    "-s",
    metavar="[" + "|".join(s.value for s in TaskStatus.recorded()) + "]",
    help="Only commits in this state.",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="At most this many commits (0: all).",
)
@click.option(
    "--wide", "-w", is_flag=True, help="Every column, however wide (default: fit the terminal)."
)
@json_option
@pass_cli
def log(
    cli: CliContext,
    func_name: str | None,
    tags: tuple[str, ...],
    status: str | None,
    limit: int,
    wide: bool,
    as_json: bool,
) -> None:
    """Show commits, newest first.

    On a terminal, one commit per line: columns that do not fit are dropped or shortened
    (--wide shows them all). Piped, each line is: hash, created (UTC), status, function,
    short result hash, hits, separated by tabs. A limited listing says how many there are
    (on stderr when piped).
    """
    query = parse_tags(tags)
    if status is not None:
        status = _check_status(status)
    if not cli.has_store():
        return cli.no_store(as_json, [])
    client = cli.client()
    commits = client.log(
        func_name=func_name, limit=limit or None, status=status, tags=query or None
    )
    title = f"{len(commits)} commit(s), newest first"
    if limit and len(commits) == limit:
        total = len(client.log(func_name=func_name, limit=None, status=status, tags=query or None))
        if total > limit:
            title = f"{limit} of {total} commits (use -n 0 for all), newest first"
            if not cli.rich and not as_json:  # the lines on stdout stay one per commit
                click.echo(f"{limit} of {total} commits (use -n 0 for all)", err=True)
    print_commits(cli, commits, as_json, title, wide=wide)


def _check_status(text: str) -> str:
    """A ``--status`` value, or exit 1 naming the valid ones (as the published CLI did)."""
    valid = [s.value for s in TaskStatus.recorded()]
    if text.lower() not in valid:
        fail(f"Invalid status {text!r}: expected one of {', '.join(valid)}")
    return text.lower()


@click.command()
@click.argument("hash")
@json_option
@pass_cli
def show(cli: CliContext, hash: str, as_json: bool) -> None:
    """Show a commit in full: source, arguments, timings, error.

    HASH is a commit hash or a unique prefix of one.
    """
    cli.require_store(hash)
    commit = require_commit(cli.client().show(hash), hash)
    if as_json:
        emit_json(commit_view(commit))
    elif cli.rich:
        _show_rich(cli, commit)
    else:
        _show_plain(commit)


def _show_fields(c: Commit) -> list[tuple[str, str]]:
    td = c.task_def
    rows = [
        ("Hash", c.hash),
        ("Function", c.func_name),
        ("Module", td.module or "-"),
        ("Status", c.status.value),
        ("Created", iso_utc(c.created_at)),
        ("Accessed", iso_utc(c.last_accessed)),
        ("Hits", f"{c.hits} (last {iso_utc(c.last_hit)})" if c.hits else "0"),
    ]
    if c.expires_at is not None:
        expired = " (expired)" if c.is_expired() else ""
        rows.append(("Expires", iso_utc(c.expires_at) + expired))
    rows += [
        ("Parent", c.parent_hash or "-"),
        ("Result", f"{c.result.hash} ({format_size(c.result.size)})" if c.result else "-"),
        ("Compute", seconds_text(c.compute_seconds)),
        ("Tags", tags_text(c.tags) or "-"),
        ("Args", td.args_snapshot or "-"),
    ]
    if c.input_hashes:
        rows.append(("Inputs", " ".join(c.input_hashes)))
    rows.append(("Why", f"cashet why {c.hash[:12]}"))
    options = []
    if not td.cache:
        options.append("cache=False")
    if td.force:
        options.append("force=True")
    if td.retries:
        options.append(f"retries={td.retries}")
    if td.timeout is not None:
        options.append(f"timeout={td.timeout:g}s")
    if td.ttl is not None:
        options.append(f"ttl={td.ttl:g}s")
    if options:
        rows.append(("Options", ", ".join(options)))
    return rows


def _show_plain(c: Commit) -> None:
    pad = " " * 10
    lines = [f"{label + ':':<10}{value}" for label, value in _show_fields(c)]
    source = c.task_def.func_source.rstrip("\n").splitlines() or ["-"]
    lines.append(f"{'Source:':<10}{source[0]}")
    lines += [f"{pad}{line}".rstrip() for line in source[1:]]
    if c.error:
        error = c.error.rstrip("\n").splitlines()
        lines.append(f"{'Error:':<10}{error[0]}")
        lines += [f"{pad}{line}".rstrip() for line in error[1:]]
    rows = manifest_rows(c.task_def.manifest)
    width = max((len(kind) for kind, _, _ in rows), default=0)
    key = [f"{kind:<{width}}  {digest:<12}  {what}".rstrip() for kind, what, digest in rows]
    lines.append(f"{'Key:':<10}{key[0] if key else _NO_MANIFEST}")
    lines += [f"{pad}{line}" for line in key[1:]]
    click.echo("\n".join(lines))


_NO_MANIFEST = "not recorded (a commit made before key manifests)"


def _show_rich(cli: CliContext, c: Commit) -> None:
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in _show_fields(c):
        style = STATUS_STYLE.get(value, "") if label == "Status" else ""
        grid.add_row(label, Text(value, style=style))
    parts: list[Any] = [grid]
    if c.task_def.func_source:
        parts.append(
            Panel(
                Syntax(c.task_def.func_source.rstrip("\n"), "python", theme="ansi_dark"),
                title="Source",
                title_align="left",
            )
        )
    if c.error:
        parts.append(
            Panel(Text(c.error.rstrip("\n")), title="Error", title_align="left", style="red")
        )
    rows = manifest_rows(c.task_def.manifest)
    key = Table(title="Key", title_justify="left", header_style="bold", expand=False)
    key.add_column("part", no_wrap=True)
    key.add_column("digest", no_wrap=True, style="dim")
    key.add_column("what")
    for kind, what, digest in rows:
        key.add_row(kind, digest, Text(what, style="yellow" if kind == "left out" else ""))
    parts.append(key if rows else Text(f"Key: {_NO_MANIFEST}", style="dim"))
    cli.console().print(
        Panel(Group(*parts), title=f"commit {c.short_hash}", title_align="left", expand=True)
    )


@click.command()
@click.argument("hash")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the result to this file instead of printing it (-: to stdout).",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=f"Print a long list or dict whole on a terminal (else the first {_SHOWN} items).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Write the stored (serialized) bytes as they are, without deserializing.",
)
@click.option(
    "--serializer",
    type=click.Choice(_SERIALIZERS),
    default="pickle",
    show_default=True,
    help="How the results of this store were serialized.",
)
@pass_cli
def get(
    cli: CliContext,
    hash: str,
    output: Path | None,
    show_all: bool,
    raw: bool,
    serializer: str,
) -> None:
    """Print a result, or write it to a file with -o (-o - writes to stdout).

    Strings are printed as they are, dicts and lists pretty-printed (on a terminal, a long
    one is cut short: --all, -o or a pipe shows it whole). HASH is a commit hash or unique
    prefix, or the full hash of a result blob. With -o, bytes are written as they are,
    strings as UTF-8, anything else as the stored serialized bytes (what the serializer
    produced, e.g. a pickle). Binary data is never written to a terminal.
    """
    if output is not None and str(output) == "-":
        output = _STDOUT
    cli.require_store(hash, result=True)
    data = cli.client().result_bytes(hash)
    if raw:
        if output is None or output is _STDOUT:
            _refuse_binary_tty(len(data), "the stored bytes")
        _write_output(output, data)
        return
    value = _load(serializer, data)
    if output is not None:
        if output is _STDOUT and not isinstance(value, str):
            _refuse_binary_tty(len(data), "the result")
        if isinstance(value, bytes | bytearray | memoryview):
            _write_output(output, bytes(value))
        elif isinstance(value, str):
            _write_output(output, value.encode())
        else:
            _write_output(output, data)
        return
    if isinstance(value, bytes | bytearray | memoryview):
        _refuse_binary_tty(len(value), "the result")
        _write_output(None, bytes(value))
    elif isinstance(value, str):
        click.echo(value)
    else:
        _echo_value(cli, _shortened(value, show_all))


def _refuse_binary_tty(size: int, what: str) -> None:
    if sys.stdout.isatty():
        fail(
            f"{what} is {format_size(size)} of binary data: not written to a terminal"
            " (use -o FILE, or pipe it: cashet get HASH --raw > FILE)"
        )


def _load(name: str, data: bytes) -> Any:
    """``data`` deserialized by serializer ``name``; when that fails, an error saying which
    serializer the bytes look like (never the serializer's internal error)."""
    try:
        return _serializer(name).loads(data)
    except Exception as exc:
        for other in _SERIALIZERS:
            if other == name:
                continue
            try:
                _serializer(other).loads(data)
            except Exception:
                continue
            fail(
                f"the result cannot be read with the {name} serializer: it was stored with the"
                f" {other} serializer (use --serializer {other})"
            )
        fail(f"the result cannot be read with the {name} serializer: {type(exc).__name__}")


def _shortened(value: Any, show_all: bool) -> Any:
    """A long list, tuple or dict cut to its first items for a terminal, with a note."""
    if show_all or not sys.stdout.isatty():
        return value
    if isinstance(value, list | tuple | dict) and len(value) > _SHOWN:
        click.echo(
            f"(showing {_SHOWN} of {len(value)} items: use --all, -o FILE or a pipe to see all)",
            err=True,
        )
        if isinstance(value, dict):
            return dict(list(value.items())[:_SHOWN])
        return type(value)(value[:_SHOWN]) if isinstance(value, list) else value[:_SHOWN]
    return value


def _write_output(path: Path | None, data: bytes) -> None:
    if path is None or path is _STDOUT:
        click.echo(data, nl=False)  # bytes go to the binary stream as they are
        return
    path.write_bytes(data)
    click.echo(f"Wrote {format_size(len(data))} to {path}", err=True)


def _echo_value(cli: CliContext, value: Any) -> None:
    text: str | None = None
    if isinstance(value, dict | list | tuple):
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            text = None
    if cli.rich:
        from rich.pretty import Pretty

        console = cli.console()
        if text is not None:
            console.print_json(text)
        else:
            console.print(Pretty(value))
        return
    click.echo(text if text is not None else pprint.pformat(value, width=100, sort_dicts=False))


def _serializer(name: str) -> Any:
    from cashet.serializers import JsonSerializer, PickleSerializer, SafePickleSerializer

    if name == "pickle":
        return PickleSerializer()
    if name == "safe-pickle":
        return SafePickleSerializer()
    return JsonSerializer()


@click.command()
@click.argument("hash_a")
@click.argument("hash_b")
@json_option
@pass_cli
def diff(cli: CliContext, hash_a: str, hash_b: str, as_json: bool) -> None:
    """Compare two commits: function, arguments and output."""
    cli.require_store(hash_a)
    d = cli.client().diff(hash_a, hash_b)
    if as_json:
        emit_json(d)
        return
    flags = ("func_changed", "args_changed", "output_changed", "status_changed")
    if cli.rich:
        _diff_rich(cli, d, flags)
        return
    lines = [f"{flag}: {'true' if d[flag] else 'false'}" for flag in flags]
    lines += [
        f"{side}: {d['hash_' + side]} {d['func_name_' + side]} {d['status_' + side]}"
        f" output {short_hash(d['output_' + side])}"
        for side in ("a", "b")
    ]
    if d["args_diff"]:
        lines.append("args:")
        lines += [f"  {_arg_change(change)}" for change in d["args_diff"]]
    if d["source_diff"]:
        lines.append("source:")
        lines.append(d["source_diff"].rstrip("\n"))
    click.echo("\n".join(lines))


def _arg_change(change: dict[str, Any]) -> str:
    kind, path = change["change"], change["path"]
    if kind == "changed":
        return f"changed {path}: {change['a']} -> {change['b']}"
    if kind == "added":
        return f"added   {path}: {change['b']}"
    if kind == "removed":
        return f"removed {path}: {change['a']}"
    return f"{path} {kind}"


def _diff_rich(cli: CliContext, d: dict[str, Any], flags: Sequence[str]) -> None:
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    console = cli.console()
    head = Table(show_header=True, header_style="bold")
    head.add_column("")
    head.add_column(f"a {d['hash_a'][:12]}")
    head.add_column(f"b {d['hash_b'][:12]}")
    head.add_row("function", Text(d["func_name_a"]), Text(d["func_name_b"]))
    head.add_row("status", d["status_a"], d["status_b"])
    head.add_row("output", short_hash(d["output_a"]), short_hash(d["output_b"]))
    console.print(head)
    summary = Text()
    for flag in flags:
        changed = bool(d[flag])
        summary.append(f"{flag} ", style="bold")
        summary.append("yes  " if changed else "no  ", style="yellow" if changed else "green")
    console.print(summary)
    if d["args_diff"]:
        table = Table(title="Arguments", title_justify="left", header_style="bold")
        for name in ("Path", "Change", "a", "b"):
            table.add_column(name)
        for ch in d["args_diff"]:
            table.add_row(
                Text(ch["path"]), ch["change"], Text(ch["a"] or "-"), Text(ch["b"] or "-")
            )
        console.print(table)
    if d["source_diff"]:
        console.print(Syntax(d["source_diff"].rstrip("\n"), "diff", theme="ansi_dark"))


@click.command()
@click.argument("hash")
@json_option
@pass_cli
def history(cli: CliContext, hash: str, as_json: bool) -> None:
    """Show every run of the same call as HASH, oldest first.

    Forced runs and re-runs after a TTL expired each have their own commit.
    """
    if not cli.has_store():
        return cli.no_store(as_json, [], "history")
    client = cli.client()
    target = require_commit(client.show(hash), hash)
    commits = client.history(target.hash)
    title = f"{len(commits)} run(s) of {target.func_name}, oldest first"
    print_commits(cli, commits, as_json, title, mark=target.hash)
