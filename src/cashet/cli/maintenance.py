"""Maintenance commands: ``stats``, ``rm``, ``gc``, ``clear``, ``invalidate``."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from cashet._humanize import format_size, parse_size
from cashet.cli.app import CliContext, emit_json, fail, json_option, pass_cli
from cashet.cli.output import parse_tags, print_commits, seconds_text, working
from cashet.models import Commit
from cashet.protocols import STORE_STATS
from cashet.provenance.query import require_commit
from cashet.provenance.views import commit_view

__all__ = ["clear", "gc", "invalidate", "rm", "stats"]

#: What ``stats --json`` holds (all zero when there is no store).
_STATS_KEYS = (*STORE_STATS, "hits", "misses", "seconds_saved")
_BY_FUNCTION = ("func_name", "runs", "hits", "hit_rate", "compute_seconds", "seconds_saved")


@click.command()
@click.option(
    "--by-function",
    is_flag=True,
    help="One row per function: runs, hits, hit rate, compute time, time saved, bytes stored.",
)
@json_option
@pass_cli
def stats(cli: CliContext, by_function: bool, as_json: bool) -> None:
    """Show commit counts, storage sizes, and what the cache saved (hits, time)."""
    if by_function:
        return _by_function(cli, as_json)
    if not cli.has_store():
        if as_json:
            return emit_json(dict.fromkeys(_STATS_KEYS, 0))
        for key in _STATS_KEYS:
            click.echo(f"{key}: 0")
        return None
    s = cli.client().stats()
    if as_json:
        emit_json(s)
        return
    db_name, db_bytes = cli.client().database_info() or ("database", 0)
    if not cli.rich:
        for key, value in s.items():
            human = f" ({format_size(value)})" if key.endswith("_bytes") else ""
            click.echo(f"{key}: {value}{human}")
        click.echo(f"meta_db_bytes: {db_bytes} ({format_size(db_bytes)})")
        return
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Store", cli.where)
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
    table.add_row("Database", f"{format_size(db_bytes)} ({db_name})")
    calls = s["hits"] + s["misses"]
    rate = f", {s['hits'] / calls:.0%} of calls" if calls else ""
    table.add_row("Hits", f"{s['hits']}{rate} ({s['misses']} misses)")
    table.add_row("Time saved", seconds_text(s["seconds_saved"]))
    cli.console().print(table)


def _by_function(cli: CliContext, as_json: bool) -> None:
    """``stats --by-function``: a row per function, most time saved first."""
    rows = cli.client().stats_by_function() if cli.has_store() else []
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    if not cli.rich:
        click.echo("\t".join((*_BY_FUNCTION, "bytes_stored")))
        for r in rows:
            click.echo(
                f"{r.func_name}\t{r.runs}\t{r.hits}\t{r.hit_rate:.4f}"
                f"\t{r.compute_seconds:.6f}\t{r.seconds_saved:.6f}\t{r.bytes_stored}"
            )
        return
    if not rows:
        cli.console().print("[dim]No commits.[/dim]")
        return
    from rich import box
    from rich.table import Table

    table = Table(
        title="Per function, most time saved first",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("Function", overflow="fold")
    for name in ("Runs", "Hits", "Hit rate", "Compute", "Saved", "Stored"):
        table.add_column(name, no_wrap=True, justify="right")
    for r in rows:
        table.add_row(
            r.func_name,
            str(r.runs),
            str(r.hits),
            f"{r.hit_rate:.0%}",
            seconds_text(r.compute_seconds),
            seconds_text(r.seconds_saved),
            format_size(r.bytes_stored),
        )
    cli.console().print(table)


#: Deleting more commits than this asks first on a terminal (``--yes`` skips the question).
HANDFUL = 5


def _dry_run_option(f: Any) -> Any:
    return click.option(
        "--dry-run", is_flag=True, help="Show what would be deleted; delete nothing."
    )(f)


def _yes_option(f: Any) -> Any:
    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        help=f"Do not ask before deleting more than {HANDFUL} commits on a terminal.",
    )(f)


def _preview(cli: CliContext, doomed: list[Commit], as_json: bool = False) -> None:
    """What a ``--dry-run`` shows: the commits, then that nothing was deleted."""
    if as_json:
        emit_json({"dry_run": True, "would_delete": [commit_view(c, full=False) for c in doomed]})
        return
    if doomed:
        print_commits(cli, doomed, False, f"Would delete {len(doomed)} commit(s)")
    click.echo(f"Dry run: would delete {len(doomed)} commit(s); nothing deleted.")


def _confirm(cli: CliContext, count: int, yes: bool, what: str = "") -> None:
    """Ask before deleting more than a handful, on a terminal only (never when piped)."""
    if count > HANDFUL and not yes and _interactive():
        click.confirm(f"Delete {count} commit(s){what} from {cli.where}?", abort=True)


@click.command()
@click.argument("hashes", metavar="HASH...", nargs=-1, required=True)
@_dry_run_option
@_yes_option
@pass_cli
def rm(cli: CliContext, hashes: tuple[str, ...], dry_run: bool, yes: bool) -> None:
    """Delete commits (and their result blobs if nothing else uses them).

    HASH is a commit hash or a unique prefix of one.
    """
    cli.require_store(hashes[0])
    client = cli.client()
    commits: dict[str, Commit] = {}
    for h in hashes:
        commit = require_commit(client.show(h), h)
        commits.setdefault(commit.hash, commit)
    if dry_run:
        return _preview(cli, list(commits.values()))
    _confirm(cli, len(commits), yes)
    for commit in commits.values():
        if not client.rm(commit.hash):
            fail(f"commit {commit.short_hash} was deleted meanwhile")
        click.echo(f"Deleted commit {commit.hash}")
    return None


@click.command()
@click.option(
    "--older-than",
    "-d",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    metavar="DAYS",
    help="Evict entries not used for this many days.",
)
@click.option(
    "--max-size",
    "-s",
    metavar="SIZE",
    help="Then evict least recently used entries until the store fits (e.g. 1GB, 500MB).",
)
@_dry_run_option
@_yes_option
@json_option
@pass_cli
def gc(
    cli: CliContext,
    older_than: float,
    max_size: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Evict old entries, expired ones and orphaned blobs.

    Sizes are binary: 1GB = 1024 MiB. On a terminal, asks before evicting more than a
    handful of commits (--yes: never asks); --dry-run lists them and deletes nothing.
    """
    limit = None
    if max_size is not None:
        try:
            limit = parse_size(max_size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-size") from None
    client = cli.client()
    age = timedelta(days=older_than)
    if dry_run or (not yes and _interactive()):
        doomed = client.gc_preview(older_than=age, max_size_bytes=limit)
        if dry_run:
            return _preview(cli, doomed, as_json)
        _confirm(cli, len(doomed), yes)
    with working("Collecting garbage"):
        evicted = client.gc(older_than=age, max_size_bytes=limit)
    after = client.stats()
    if as_json:
        emit_json({"evicted": evicted, "stats": after})
        return None
    click.echo(
        f"Evicted {evicted} commit(s); {after['total_commits']} left, "
        f"{format_size(after['disk_bytes'])} stored"
    )
    return None


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def clear(cli: CliContext, yes: bool) -> None:
    """Delete every entry of the store (same as gc --older-than 0).

    Asks first on a terminal; never asks when input is not a terminal.
    """
    from cashet.stores.sqlite.legacy import LegacyStoreError, wipe

    try:
        client = cli.client()
    except LegacyStoreError as exc:
        # An old store that cannot be migrated: clearing it must still work.
        if not yes and _interactive():
            click.confirm(f"{exc}\nDelete it all?", abort=True)
        wipe(cli.store_dir)
        click.echo(f"Cleared the old store in {cli.store_dir}")
        return
    if not yes and _interactive():
        total = client.stats()["total_commits"]
        click.confirm(f"Delete all {total} commit(s) in {cli.where}?", abort=True)
    removed = client.clear()
    click.echo(f"Cleared {removed} commit(s)")


@click.command()
@click.option(
    "--tag",
    "-t",
    "tags",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Delete commits with this tag (KEY alone: any value). Repeat to AND them.",
)
@click.option("--func", "-f", "func_name", metavar="NAME", help="Delete commits of this function.")
@_dry_run_option
@_yes_option
@pass_cli
def invalidate(
    cli: CliContext, tags: tuple[str, ...], func_name: str | None, dry_run: bool, yes: bool
) -> None:
    """Delete every commit of a function (--func) and/or carrying all the given tags.

    On a terminal, asks before deleting more than a handful (--yes: never asks);
    --dry-run lists them and deletes nothing.
    """
    if not tags and not func_name:
        raise click.UsageError("give --func NAME and/or --tag KEY[=VALUE]: what to invalidate")
    query = parse_tags(tags)
    client = cli.client()
    if dry_run or func_name or (not yes and _interactive()):
        doomed = client.log(func_name=func_name, limit=None, tags=query or None)
        if dry_run:
            return _preview(cli, doomed)
        _confirm(cli, len(doomed), yes)
        if func_name:
            deleted = sum(1 for c in doomed if client.rm(c.hash))
            click.echo(f"Invalidated {deleted} commit(s)")
            return None
    deleted = client.invalidate(query)
    click.echo(f"Invalidated {deleted} commit(s)")
    return None
