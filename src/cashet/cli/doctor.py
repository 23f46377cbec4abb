"""``cashet doctor``: check the store for damage, and with ``--repair`` fix what can be fixed.

A shell over :meth:`cashet.Client.check` (what is checked: its docstring, and
:mod:`cashet.stores.sqlite.doctor` for the SQLite store). The exit code is 0 when nothing
wrong is left, 1 when problems remain (after ``--repair``: those it could not fix).
"""

from __future__ import annotations

import warnings

import click

from cashet._humanize import format_size
from cashet.cli.app import CliContext, emit_json, fail, json_option, pass_cli
from cashet.cli.output import working
from cashet.errors import DamagedStoreWarning

__all__ = ["doctor"]


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Fix what can be fixed: rebuild indexes, quarantine damaged commits, reclaim or "
    "adopt stray blob files, drop commits whose blob is gone and stale leases.",
)
@json_option
@pass_cli
def doctor(cli: CliContext, repair: bool, as_json: bool) -> None:
    """Check the store for damage; --repair fixes what it can and reports the rest."""
    if not cli.has_store():
        fail(f"no cashet store at {cli.where}")
    with warnings.catch_warnings():
        # A lost database is reported below, with what the repair did about it.
        warnings.simplefilter("ignore", DamagedStoreWarning)
        client = cli.client(repair=True)
    with working("Repairing the store" if repair else "Checking the store"):
        report = client.check(repair=repair)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(f"Store: {report.where}")
        counts = ", ".join(f"{n} {what}" for what, n in report.counts.items())
        click.echo(f"Checked: {counts or 'nothing'}")
        for f in report.findings:
            mark = f.action if f.action else ("problem" if f.problem else "note")
            click.echo(f"[{mark}] {f.kind} {f.subject}: {f.detail}")
        if report.reclaimed_bytes:
            click.echo(f"Reclaimed {format_size(report.reclaimed_bytes)}")
        left = len(report.remaining)
        if not left:
            click.echo("OK: nothing wrong is left")
        elif repair:
            click.echo(f"{left} problem(s) could not be repaired")
        else:
            click.echo(f"{left} problem(s) found: run `cashet doctor --repair` to fix them")
    if not report.ok:
        raise click.exceptions.Exit(1)
