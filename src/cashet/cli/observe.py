"""``cashet graph HASH`` (the lineage of a result) and ``cashet verify --sample N`` (re-run
cached calls and compare: which functions are not deterministic)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from cashet._progress import progress
from cashet.cli.app import CliContext, emit_json, json_option, pass_cli

__all__ = ["graph", "verify"]

_FORMATS = ("mermaid", "dot", "json")


@click.command()
@click.argument("hash")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(_FORMATS),
    default="mermaid",
    show_default=True,
    help="Mermaid (paste into Markdown), Graphviz dot, or JSON.",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Steps to follow upstream and downstream.",
)
@click.option(
    "--max-nodes",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="At most this many commits in the graph.",
)
@pass_cli
def graph(cli: CliContext, hash: str, fmt: str, depth: int, max_nodes: int) -> None:
    """Show the lineage of a result: the commits it was computed from (its ResultRef
    arguments) and the commits computed from it, recursively.

    HASH is a commit hash or a unique prefix of one (or a result's full hash).
    """
    from cashet.provenance.lineage import render

    cli.require_store(hash)
    lineage = cli.client().lineage(hash, depth=depth, max_nodes=max_nodes)
    click.echo(render(lineage, fmt))
    if lineage.truncated and fmt != "json":
        click.echo(
            f"(cut at --depth {depth} / --max-nodes {max_nodes}: raise them to see more)",
            err=True,
        )


@contextmanager
def _progress(total: int) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal (advanced per re-run call)."""
    with progress(total, "verifying", min_total=1) as advance:

        def on_outcome(outcome: Any) -> None:
            skipped = outcome.verdict == "skipped"
            advance(f"skipped {outcome.hash[:12]}" if skipped else None)

        yield on_outcome


@click.command()
@click.option(
    "--sample",
    "-n",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many cached calls to re-run (picked at random).",
)
@click.option("--seed", type=int, default=None, help="Seed of the random choice.")
@json_option
@pass_cli
def verify(cli: CliContext, sample: int, seed: int | None, as_json: bool) -> None:
    """Re-run cached calls and compare their outputs with the cache, to find functions that
    are not deterministic. The cache is never changed.

    Only calls whose function can be imported (the same code) and whose arguments the
    commit records in full (a literal snapshot) are re-run; the others are listed as
    skipped, with why. Modules are imported from the current directory and PYTHONPATH.
    Exit 1 when a re-run gave another output or failed.
    """
    if os.getcwd() not in sys.path:  # as ``python -m`` would: the project's own modules
        sys.path.insert(0, os.getcwd())
    if not cli.has_store():
        if as_json:
            emit_json({"ok": True, "candidates": 0, "rerun": 0, "outcomes": []})
        else:
            click.echo("No commits to verify.")
        return
    with _progress(sample) as advance:
        report = cli.client().verify(sample, seed, advance)
    if as_json:
        emit_json(report.to_dict())
    else:
        for o in report.outcomes:
            detail = f"  {o.reason}" if o.reason else ""
            click.echo(f"{o.verdict:9s} {o.hash[:12]}  {o.func_name}{detail}")
        skipped = len(report.skipped)
        click.echo(
            f"{len(report.rerun)} re-run, {skipped} skipped, of {report.candidates} cached call(s)"
        )
        if report.nondeterministic:
            click.echo("not deterministic: " + ", ".join(report.nondeterministic))
    if not report.ok:
        sys.exit(1)
