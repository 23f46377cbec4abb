"""The ``cashet`` command line: a thin shell over :class:`cashet.Client` (Click + Rich).

Output is a Rich table or panel on a terminal and plain, stable text when piped (``log``
and ``history``: one tab-separated line per commit); ``--json`` on the query commands is
for scripts. Errors are one line on stderr: exit code 1, or 2 for a usage error; never a
traceback (``CASHET_DEBUG=1`` shows one for an unexpected error). Read commands never
create a store: they fail when ``--store-dir`` does not hold one.
"""

from __future__ import annotations

import json
import os
import pprint
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from cashet._humanize import format_size, parse_size
from cashet._version import __version__
from cashet.errors import ArchiveError, CashetError
from cashet.models import Commit, TaskStatus
from cashet.provenance.query import commit_view, resolve_result

if TYPE_CHECKING:
    from rich.console import Console

    from cashet.client import Client

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

_STATUS_STYLE = {"completed": "green", "failed": "red", "running": "yellow"}
_SERIALIZERS = ("pickle", "safe-pickle", "json")


class _State:
    """Per-invocation settings and the lazily opened client."""

    def __init__(self, store_dir: Path, rich: bool) -> None:
        self.store_dir = store_dir
        self.rich = rich
        self._client: Client | None = None

    def client(self, *, create: bool = False) -> Client:
        """Open the store; unless ``create``, fail when there is none (never make one)."""
        if self._client is None:
            if not create:
                self._require_store()
            from cashet.client import Client

            self._client = Client(store_dir=self.store_dir)
        return self._client

    def _require_store(self) -> None:
        path = self.store_dir
        if not path.exists():
            _fail(f"no cashet store at {path} (use --store-dir or set CASHET_DIR)")
        if not path.is_dir() or not (path / "meta.db").is_file():
            _fail(f"{path} is not a cashet store (it has no meta.db)")

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with suppress(Exception):  # closing must not turn success into failure
                client.close()

    def console(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, force_terminal=True if self.rich else None)


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


class _Group(click.Group):
    """Map every exception a command lets out to one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader (``| head``) went away: stop quietly, and keep the interpreter's
            # final flush from complaining about the closed pipe.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            raise click.exceptions.Exit(1) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except (CashetError, ValueError, LookupError, TypeError, OSError) as exc:
            raise click.ClickException(_one_line(exc)) from exc
        except Exception as exc:
            if os.environ.get("CASHET_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {_one_line(exc)}"
                " (set CASHET_DEBUG=1 to see the traceback)"
            ) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store-dir",
    type=click.Path(path_type=Path),
    envvar="CASHET_DIR",
    default=".cashet",
    show_default="$CASHET_DIR or .cashet",
    help="Directory of the store.",
)
@click.option(
    "--plain/--rich",
    "plain",
    default=None,
    help="Plain text or Rich tables [default: Rich on a terminal, plain when piped].",
)
@click.version_option(__version__, "-V", "--version", prog_name="cashet")
@click.pass_context
def main(ctx: click.Context, store_dir: Path, plain: bool | None) -> None:
    """Inspect and maintain a cashet store: history, results, diffs, GC, backups."""
    rich = sys.stdout.isatty() if plain is None else not plain
    state = _State(store_dir, rich)
    ctx.obj = state
    ctx.call_on_close(state.close)


pass_state = click.make_pass_decorator(_State)


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# --- formatting -----------------------------------------------------------------------------


def _iso(dt: datetime | None) -> str:
    """UTC, to the second, ISO 8601: ``2024-05-01T10:32:17Z`` (plain output)."""
    if dt is None:
        return "-"
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(dt: datetime | None) -> str:
    """Local time for people, to the minute: ``2024-05-01 12:32``."""
    if dt is None:
        return "-"
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def _short(h: str | None) -> str:
    return h[:12] if h else "-"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _parse_tags(values: Sequence[str], option: str = "--tag") -> dict[str, str | None]:
    """``("env=prod", "experiment")`` -> ``{"env": "prod", "experiment": None}``."""
    out: dict[str, str | None] = {}
    for text in values:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not key:
            raise click.BadParameter(f"{text!r}: expected KEY=VALUE or KEY", param_hint=option)
        parsed = value if sep else None
        if key in out and out[key] != parsed:
            raise click.BadParameter(f"tag {key!r} given twice", param_hint=option)
        out[key] = parsed
    return out


def _commit_line(c: Commit) -> str:
    result = _short(c.result.hash) if c.result else "-"
    return "\t".join((c.hash, _iso(c.created_at), c.status.value, c.func_name, result))


def _commit_table(state: _State, commits: Iterable[Commit], title: str, mark: str = "") -> None:
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
    table.add_column("Tags", overflow="fold")
    for c in commits:
        status = Text(c.status.value, style=_STATUS_STYLE.get(c.status.value, ""))
        if c.is_expired(now):
            status.append(" expired", style="dim")
        table.add_row(
            Text(c.short_hash, style="bold reverse cyan" if c.hash == mark else "cyan"),
            _when(c.created_at),
            status,
            Text(c.func_name),
            format_size(c.result.size) if c.result else "-",
            _seconds(c.compute_seconds),
            Text(_tags(c.tags)),
        )
    state.console().print(table)


def _print_commits(
    state: _State, commits: list[Commit], as_json: bool, title: str, mark: str = ""
) -> None:
    if as_json:
        _emit_json([commit_view(c, full=False) for c in commits])
    elif not state.rich:
        for c in commits:
            click.echo(_commit_line(c))
    elif not commits:
        state.console().print("[dim]No commits.[/dim]")
    else:
        _commit_table(state, commits, title, mark)


# --- queries --------------------------------------------------------------------------------


@main.command()
@click.option("--func", "func_name", metavar="NAME", help="Only commits of this function.")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Only commits with this tag (KEY alone: any value). Repeat to AND them.",
)
@click.option(
    "--status",
    type=click.Choice([s.value for s in TaskStatus], case_sensitive=False),
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
@_json_option
@pass_state
def log(
    state: _State,
    func_name: str | None,
    tags: tuple[str, ...],
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show commits, newest first.

    Piped, each line is: hash, created (UTC), status, function, short result hash,
    separated by tabs.
    """
    query = _parse_tags(tags)
    commits = state.client().log(
        func_name=func_name, limit=limit or None, status=status, tags=query or None
    )
    _print_commits(state, commits, as_json, f"{len(commits)} commit(s), newest first")


@main.command()
@click.argument("hash")
@_json_option
@pass_state
def show(state: _State, hash: str, as_json: bool) -> None:
    """Show a commit in full: source, arguments, timings, error.

    HASH is a commit hash or a unique prefix of one.
    """
    commit = state.client().show(hash)
    if as_json:
        _emit_json(commit_view(commit))
    elif state.rich:
        _show_rich(state, commit)
    else:
        _show_plain(commit)


def _show_fields(c: Commit) -> list[tuple[str, str]]:
    td = c.task_def
    rows = [
        ("Hash", c.hash),
        ("Function", c.func_name),
        ("Module", td.module or "-"),
        ("Status", c.status.value),
        ("Created", _iso(c.created_at)),
        ("Accessed", _iso(c.last_accessed)),
    ]
    if c.expires_at is not None:
        expired = " (expired)" if c.is_expired() else ""
        rows.append(("Expires", _iso(c.expires_at) + expired))
    rows += [
        ("Parent", c.parent_hash or "-"),
        ("Result", f"{c.result.hash} ({format_size(c.result.size)})" if c.result else "-"),
        ("Compute", _seconds(c.compute_seconds)),
        ("Tags", _tags(c.tags) or "-"),
        ("Args", td.args_snapshot or "-"),
    ]
    if c.input_hashes:
        rows.append(("Inputs", " ".join(c.input_hashes)))
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
    click.echo("\n".join(lines))


def _show_rich(state: _State, c: Commit) -> None:
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in _show_fields(c):
        style = _STATUS_STYLE.get(value, "") if label == "Status" else ""
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
    state.console().print(
        Panel(Group(*parts), title=f"commit {c.short_hash}", title_align="left", expand=True)
    )


@main.command()
@click.argument("hash")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to this file instead of printing it.",
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
@pass_state
def get(state: _State, hash: str, output: Path | None, raw: bool, serializer: str) -> None:
    """Print a result, or write it to a file with -o.

    Strings are printed as they are, dicts and lists pretty-printed. HASH is a commit
    hash or unique prefix, or the full hash of a result blob. With -o, bytes are written
    as they are, strings as UTF-8, anything else as the stored serialized bytes (what the
    serializer produced, e.g. a pickle).
    """
    client = state.client()
    ref, _ = resolve_result(client.store, hash)
    data = client.store.get_blob(ref)
    if raw:
        _write_output(output, data)
        return
    value = _serializer(serializer).loads(data)
    if output is not None:
        if isinstance(value, bytes | bytearray | memoryview):
            _write_output(output, bytes(value))
        elif isinstance(value, str):
            _write_output(output, value.encode())
        else:
            _write_output(output, data)
        return
    if isinstance(value, bytes | bytearray | memoryview):
        if sys.stdout.isatty():
            _fail(f"the result is {len(value)} bytes of binary data: use -o FILE to save it")
        _write_output(None, bytes(value))
    elif isinstance(value, str):
        click.echo(value)
    else:
        _echo_value(state, value)


def _write_output(path: Path | None, data: bytes) -> None:
    if path is None:
        click.echo(data, nl=False)  # bytes go to the binary stream as they are
        return
    path.write_bytes(data)
    click.echo(f"Wrote {format_size(len(data))} to {path}", err=True)


def _echo_value(state: _State, value: Any) -> None:
    text: str | None = None
    if isinstance(value, dict | list | tuple):
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            text = None
    if state.rich:
        from rich.pretty import Pretty

        console = state.console()
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


@main.command()
@click.argument("hash_a")
@click.argument("hash_b")
@_json_option
@pass_state
def diff(state: _State, hash_a: str, hash_b: str, as_json: bool) -> None:
    """Compare two commits: function, arguments and output."""
    d = state.client().diff(hash_a, hash_b)
    if as_json:
        _emit_json(d)
        return
    flags = ("func_changed", "args_changed", "output_changed", "status_changed")
    if state.rich:
        _diff_rich(state, d, flags)
        return
    lines = [f"{flag}: {'true' if d[flag] else 'false'}" for flag in flags]
    lines += [
        f"{side}: {d['hash_' + side]} {d['func_name_' + side]} {d['status_' + side]}"
        f" output {_short(d['output_' + side])}"
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


def _diff_rich(state: _State, d: dict[str, Any], flags: Sequence[str]) -> None:
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    console = state.console()
    head = Table(show_header=True, header_style="bold")
    head.add_column("")
    head.add_column(f"a {d['hash_a'][:12]}")
    head.add_column(f"b {d['hash_b'][:12]}")
    head.add_row("function", Text(d["func_name_a"]), Text(d["func_name_b"]))
    head.add_row("status", d["status_a"], d["status_b"])
    head.add_row("output", _short(d["output_a"]), _short(d["output_b"]))
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


@main.command()
@click.argument("hash")
@_json_option
@pass_state
def history(state: _State, hash: str, as_json: bool) -> None:
    """Show every run of the same call as HASH, oldest first.

    Forced runs and re-runs after a TTL expired each have their own commit.
    """
    client = state.client()
    target = client.show(hash)
    commits = client.history(target.hash)
    title = f"{len(commits)} run(s) of {target.func_name}, oldest first"
    _print_commits(state, commits, as_json, title, mark=target.hash)


@main.command()
@_json_option
@pass_state
def stats(state: _State, as_json: bool) -> None:
    """Show commit counts and storage sizes."""
    s = state.client().stats()
    if as_json:
        _emit_json(s)
        return
    db_bytes = _file_bytes(state.store_dir, ("meta.db", "meta.db-wal"))
    if not state.rich:
        for key, value in s.items():
            human = f" ({format_size(value)})" if key.endswith("_bytes") else ""
            click.echo(f"{key}: {value}{human}")
        click.echo(f"meta_db_bytes: {db_bytes} ({format_size(db_bytes)})")
        return
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Store", str(state.store_dir))
    table.add_row("Commits", f"{s['total_commits']} ({s['completed_commits']} completed)")
    table.add_row(
        "Objects",
        f"{s['stored_objects']} ({s['blob_objects']} files, {s['inline_objects']} inline)",
    )
    table.add_row(
        "Size",
        f"{format_size(s['disk_bytes'])} (files {format_size(s['blob_bytes'])}, "
        f"inline {format_size(s['inline_bytes'])})",
    )
    table.add_row("Database", f"{format_size(db_bytes)} (meta.db)")
    state.console().print(table)


def _file_bytes(folder: Path, names: Iterable[str]) -> int:
    total = 0
    for name in names:
        with suppress(OSError):
            total += (folder / name).stat().st_size
    return total


# --- maintenance ----------------------------------------------------------------------------


@main.command()
@click.argument("hash")
@pass_state
def rm(state: _State, hash: str) -> None:
    """Delete a commit (and its result blob if nothing else uses it)."""
    client = state.client()
    commit = client.show(hash)
    if not client.rm(commit.hash):
        _fail(f"commit {commit.short_hash} was deleted meanwhile")
    click.echo(f"Removed commit {commit.hash}")


@main.command()
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    metavar="DAYS",
    help="Evict entries not used for this many days.",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Then evict least recently used entries until the store fits (e.g. 1GB, 500MB).",
)
@_json_option
@pass_state
def gc(state: _State, older_than: float, max_size: str | None, as_json: bool) -> None:
    """Evict old entries, expired ones and orphaned blobs.

    Sizes are binary: 1GB = 1024 MiB.
    """
    limit = None
    if max_size is not None:
        try:
            limit = parse_size(max_size)
        except ValueError as exc:
            _fail(f"--max-size: {exc}")
    client = state.client()
    evicted = client.gc(older_than=timedelta(days=older_than), max_size_bytes=limit)
    after = client.stats()
    if as_json:
        _emit_json({"evicted": evicted, "stats": after})
        return
    click.echo(
        f"Evicted {evicted} commit(s); {after['total_commits']} left, "
        f"{format_size(after['disk_bytes'])} stored"
    )


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@main.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def clear(state: _State, yes: bool) -> None:
    """Delete every entry of the store (same as gc --older-than 0).

    Asks first on a terminal; never asks when input is not a terminal.
    """
    client = state.client()
    if not yes and _interactive():
        total = client.stats()["total_commits"]
        click.confirm(f"Delete all {total} commit(s) in {state.store_dir}?", abort=True)
    removed = client.clear()
    click.echo(f"Cleared {removed} commit(s)")


@main.command()
@click.option(
    "--tag",
    "tags",
    multiple=True,
    required=True,
    metavar="KEY[=VALUE]",
    help="Delete commits with this tag (KEY alone: any value). Repeat to AND them.",
)
@pass_state
def invalidate(state: _State, tags: tuple[str, ...]) -> None:
    """Delete every commit carrying all the given tags."""
    deleted = state.client().invalidate(_parse_tags(tags))
    click.echo(f"Invalidated {deleted} commit(s)")


@contextmanager
def _working(text: str) -> Iterator[None]:
    """A spinner on stderr while long work runs, when stderr is a terminal; else nothing."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
def export(state: _State, path: Path) -> None:
    """Write the store to a portable tar.gz archive.

    Every commit and the result blobs they use; the file appears only when complete.
    """
    with _working(f"Exporting to {path}"):
        result = state.client().export(path)
    for h in result.skipped:
        click.echo(f"warning: left out commit {h[:12]}: its result blob is unreadable", err=True)
    click.echo(
        f"Exported {result.commits} commit(s) and {result.blobs} blob(s) "
        f"({format_size(result.bytes)}) to {path}"
    )


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_state
def import_(state: _State, path: Path) -> None:
    """Add an archive's commits and blobs (all or nothing).

    Every member, blob and commit is verified before anything is written. Creates the
    store if needed; commits it already has are skipped.
    """
    created = not state.store_dir.exists()
    try:
        with _working(f"Verifying and importing {path}"):
            result = state.client(create=True).import_archive(path)
    except ArchiveError:
        if created:  # leave no empty store behind for a rejected archive
            state.close()
            shutil.rmtree(state.store_dir, ignore_errors=True)
        raise
    click.echo(
        f"Imported {result.imported} commit(s) and {result.blobs} blob(s); "
        f"{result.skipped} already present"
    )
