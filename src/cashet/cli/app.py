"""The ``cashet`` command group: shared options, the per-invocation context, error mapping.

The commands live beside it, one module per family (:mod:`.provenance`, :mod:`.maintenance`,
:mod:`.archive`, :mod:`.serve`) and :mod:`cashet.cli` adds them to :data:`main`; none of
them is imported here. Errors are one line on stderr: exit code 1, or 2 for a usage error;
never a traceback (``CASHET_DEBUG=1`` shows one for an unexpected error). Read commands
never create a store: ``log``, ``stats`` and ``history`` answer "no commits" (exit code 0)
when ``--store-dir`` does not exist, the others fail.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from cashet._humanize import mask_url
from cashet._version import __version__
from cashet.errors import AmbiguousHashError, CashetError

if TYPE_CHECKING:
    from rich.console import Console

    from cashet.client import Client

__all__ = ["CliContext", "emit_json", "fail", "json_option", "main", "pass_cli"]

F = TypeVar("F", bound=Callable[..., Any])


class CliContext:
    """Per-invocation settings and the lazily opened client."""

    def __init__(self, store_dir: Path, rich: bool, store_url: str | None = None) -> None:
        self.store_dir = store_dir
        self.rich = rich
        #: A store given by URL that is not a directory (Redis); ``None`` for SQLite.
        self.store_url = store_url
        self._client: Client | None = None

    @property
    def where(self) -> str:
        """The store, for messages: its directory, or its URL without a password."""
        return self.store_dir.as_posix() if self.store_url is None else mask_url(self.store_url)

    def client(self, *, create: bool = False, repair: bool = False) -> Client:
        """Open the store; unless ``create``, fail when there is none (never make one).

        ``repair``: also a store whose database is gone but whose blobs remain (doctor).
        """
        if self._client is None:
            from cashet.client import Client

            if self.store_url is not None:
                self._client = Client(store=self.store_url)
            elif create:
                self._client = Client(store_dir=self.store_dir)
            elif not self.store_dir.exists():
                fail(f"no cashet store at {self.store_dir} (use --store-dir or set CASHET_DIR)")
            else:
                self._client = Client.open_existing(self.store_dir, repair=repair)
        return self._client

    def has_store(self) -> bool:
        """Whether ``--store-dir`` may hold a store: it exists and is not an empty directory
        (a read command on none answers "no commits", or "not found" for a hash)."""
        if self._client is not None or self.store_url is not None:
            return True
        if self.store_dir.is_dir():
            return any(self.store_dir.iterdir())
        return self.store_dir.exists()

    def require_store(self, hash: str, result: bool = False) -> None:
        """Fail as for an unknown hash when there is no store to look ``hash`` up in."""
        if not self.has_store():
            what = f"No result for {hash}: commit" if result else f"commit {hash}"
            fail(f"{what} not found (no cashet store at {self.store_dir})")

    def no_store(self, as_json: bool, empty: Any, what: str = "commits") -> None:
        """Answer a read of a store that does not exist: nothing found, exit code 0.

        Scripts written against the published cashet expect that (issue 12); a hash that
        names no commit in an existing store still fails.
        """
        if as_json:
            emit_json(empty)
        else:
            click.echo(f"No {what} found (no cashet store at {self.store_dir}).")

    def close(self) -> None:
        """Close the client, if one was opened (never failing the command)."""
        if self._client is not None:
            client, self._client = self._client, None
            with suppress(Exception):  # closing must not turn success into failure
                client.close()

    def console(self) -> Console:
        """A Rich console for stdout (styled when ``--rich``)."""
        from rich.console import Console

        return Console(highlight=False, force_terminal=True if self.rich else None)


def fail(message: str) -> NoReturn:
    """Stop the command: ``message`` on stderr, exit code 1."""
    raise click.ClickException(message)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


#: The group's options a user may also give after the subcommand (``cashet log --plain``).
_GLOBAL_VALUED = ("--store-dir", "--store")
_GLOBAL_FLAGS = ("--plain", "--rich")


def hoist_globals(args: list[str]) -> list[str]:
    """``args`` with the group's options found after the subcommand moved before it.

    ``cashet log --store-dir x`` is then ``cashet --store-dir x log``; everything after a
    ``--`` is left alone.
    """
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if args[i] in _GLOBAL_VALUED else 1
    if i >= len(args):
        return args
    moved: list[str] = []
    kept: list[str] = []
    rest = args[i + 1 :]
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg == "--":
            kept += rest[j:]
            break
        if arg in _GLOBAL_VALUED and j + 1 < len(rest):
            moved += rest[j : j + 2]
            j += 2
            continue
        if arg in _GLOBAL_FLAGS or arg.partition("=")[0] in _GLOBAL_VALUED:
            moved.append(arg)
        else:
            kept.append(arg)
        j += 1
    return args[:i] + moved + [args[i]] + kept


def _ambiguous(ctx: click.Context, exc: AmbiguousHashError) -> str:
    """The ambiguous-prefix error: each candidate's short hash, function and date."""
    lines = [f"Ambiguous prefix {exc.prefix!r}: it matches {len(exc.candidates)} commits"]
    cli = ctx.find_object(CliContext)
    for h in exc.candidates[:10]:
        commit = None
        if cli is not None and cli._client is not None:
            with suppress(Exception):  # a candidate gone meanwhile: its hash alone
                commit = cli._client.show(h)
        if commit is None:
            lines.append(f"  {h[:12]}")
        else:
            when = commit.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
            lines.append(f"  {h[:12]}  {commit.func_name}  {when}")
    if len(exc.candidates) > 10:
        lines.append(f"  ... and {len(exc.candidates) - 10} more")
    lines.append("give more digits of the hash")
    return "\n".join(lines)


class _Group(click.Group):
    """Map every exception a command lets out to one line on stderr and exit code 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_globals(list(args)))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except AmbiguousHashError as exc:
            raise click.ClickException(_ambiguous(ctx, exc)) from exc
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
    "--store",
    "store_url",
    metavar="URL",
    envvar="CASHET_STORE",
    help="The store as a URL: sqlite:///path/to/.cashet, redis://host:6379/0, rediss://...,"
    " unix:///path/redis.sock, postgresql://user@host/db?schema=cashet (instead of"
    " --store-dir) [env: CASHET_STORE].",
)
@click.option(
    "--plain/--rich",
    "plain",
    default=None,
    help="Plain text or Rich tables [default: Rich on a terminal, plain when piped].",
)
@click.version_option(__version__, "-V", "--version", prog_name="cashet")
@click.pass_context
def main(ctx: click.Context, store_dir: Path, store_url: str | None, plain: bool | None) -> None:
    """Inspect and maintain a cashet store: history, results, diffs, GC, backups."""
    rich = sys.stdout.isatty() if plain is None else not plain
    if store_url:
        from cashet.stores.urls import split_blobs, sqlite_path

        try:
            base, blobs = split_blobs(store_url)
            path = sqlite_path(base)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--store") from None
        if path is not None and blobs is None:  # a directory after all: the SQLite paths below
            store_dir, store_url = path, None
    cli = CliContext(store_dir, rich, store_url or None)
    ctx.obj = cli
    ctx.call_on_close(cli.close)


pass_cli = click.make_pass_decorator(CliContext)


def json_option(f: F) -> F:
    """The ``--json`` flag of the query commands (``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON (what ``--json`` prints)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
