"""Archive commands: ``export`` and ``import`` (portable ``.tar.gz`` backups)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from cashet._humanize import format_size
from cashet.cli.app import CliContext, pass_cli
from cashet.cli.output import working
from cashet.errors import ArchiveError

__all__ = ["export", "import_"]


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_cli
def export(cli: CliContext, path: Path) -> None:
    """Write the store to a portable tar.gz archive.

    Every commit and the result blobs they use; the file appears only when complete.
    """
    with working(f"Exporting to {path}"):
        result = cli.client().export(path)
    for h in result.skipped:
        click.echo(f"warning: left out commit {h[:12]}: its result blob is unreadable", err=True)
    click.echo(
        f"Exported {result.commits} commit(s) and {result.blobs} blob(s) "
        f"({format_size(result.bytes)}) to {path}"
    )


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_cli
def import_(cli: CliContext, path: Path) -> None:
    """Add an archive's commits and blobs (all or nothing).

    Every member, blob and commit is verified before anything is written. Creates the
    store if needed; commits it already has are skipped.
    """
    created = not cli.store_dir.exists()
    try:
        with working(f"Verifying and importing {path}"):
            result = cli.client(create=True).import_archive(path)
    except ArchiveError:
        if created:  # leave no empty store behind for a rejected archive
            cli.close()
            shutil.rmtree(cli.store_dir, ignore_errors=True)
        raise
    click.echo(
        f"Imported {result.imported} commit(s) and {result.blobs} blob(s); "
        f"{result.skipped} already present"
    )
