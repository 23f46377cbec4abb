"""``cashet why HASH``: why a commit was computed (its differences from the earlier run)."""

from __future__ import annotations

import click

from cashet.cli.app import CliContext, emit_json, json_option, pass_cli

__all__ = ["why"]

_KIND_STYLE = {
    "source": "magenta",
    "helper": "magenta",
    "argument": "cyan",
    "environment": "yellow",
}


@click.command()
@click.argument("hash")
@json_option
@pass_cli
def why(cli: CliContext, hash: str, as_json: bool) -> None:
    """Say why a commit was computed: what differs from the nearest earlier run of the same
    function (source, helpers, globals, closures, arguments, Python and package versions).

    HASH is a commit hash or a unique prefix of one.
    """
    cli.require_store(hash)
    explanation = cli.client().why(hash)
    if as_json:
        emit_json(explanation.to_dict())
        return
    if not cli.rich:
        click.echo(str(explanation))
        return
    from rich.syntax import Syntax
    from rich.text import Text

    console = cli.console()
    head, *_ = str(explanation).splitlines()
    console.print(Text(head, style="bold"))
    previous = explanation.previous
    if previous is not None:
        console.print(
            f"compared with commit {previous.hash[:12]} ({previous.created_at:%Y-%m-%d %H:%M:%S})"
        )
    if explanation.reason:
        console.print(explanation.reason)
    for change in explanation.changes:
        style = _KIND_STYLE.get(change.kind, "green")
        if change.kind == "source":
            console.print(Text(f"source of {change.name} changed:", style=style))
            console.print(Syntax(change.before, "diff", theme="ansi_dark"))
        else:
            line = Text(f"  {change.kind} ", style=style)
            line.append(f"{change.name}: ", style="bold")
            line.append(f"{change.before} -> {change.after}")
            console.print(line)
