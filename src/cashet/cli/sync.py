"""``cashet push URL`` / ``cashet pull URL``: copy commits and blobs between two stores."""

from __future__ import annotations

import click

from cashet._humanize import format_size, mask_url
from cashet.cli.app import CliContext, emit_json, json_option, pass_cli

__all__ = ["pull", "push"]


def _report(verb: str, where: str, result: object, as_json: bool) -> None:
    from cashet.provenance.sync import SyncResult

    assert isinstance(result, SyncResult)
    if as_json:
        emit_json(result.to_dict())
        return
    for h in result.skipped:
        click.echo(f"warning: left out commit {h[:12]}: its result blob is unreadable", err=True)
    click.echo(
        f"{verb} {result.copied} commit(s) and {result.blobs} blob(s)"
        f" ({format_size(result.bytes)}) {where}; {result.present} already there"
    )


@click.command()
@click.argument("url", metavar="URL")
@json_option
@pass_cli
def push(cli: CliContext, url: str, as_json: bool) -> None:
    """Copy this store's commits and blobs that the store at URL lacks.

    URL: postgresql://..., redis://..., sqlite:///path or a directory. Incremental,
    verified, and resumable: run it again after an interruption.
    """
    result = cli.client().push(url)
    _report("Pushed", f"to {mask_url(url)}", result, as_json)


@click.command()
@click.argument("url", metavar="URL")
@json_option
@pass_cli
def pull(cli: CliContext, url: str, as_json: bool) -> None:
    """Copy the commits and blobs of the store at URL that this store lacks.

    Creates this store if needed. Incremental, verified, and resumable.
    """
    result = cli.client(create=True).pull(url)
    _report("Pulled", f"from {mask_url(url)}", result, as_json)
