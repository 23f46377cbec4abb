"""``cashet serve``: the HTTP server from the command line (added to the group by
:mod:`cashet.cli`).

Kept apart from :mod:`cashet.cli.app` so the CLI does not import Starlette unless it serves.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from cashet.cli.app import CliContext, pass_cli

__all__ = ["serve"]


def _load_tasks(specs: Sequence[str]) -> dict[str, Callable[..., Any]]:
    """``("pkg.mod:func", ...)`` -> ``{name: callable}`` (a ``@client.task`` keeps its name)."""
    if specs and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m`` would: modules beside the user
    tasks: dict[str, Callable[..., Any]] = {}
    for spec in specs:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise click.BadParameter(f"{spec!r}: expected MODULE:NAME", param_hint="--task")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise click.BadParameter(f"{spec!r}: {exc}", param_hint="--task") from None
        if not callable(obj):
            raise click.BadParameter(f"{spec!r} is not callable", param_hint="--task")
        name = getattr(obj, "name", None)
        tasks[name if isinstance(name, str) and name else attr] = obj
    return tasks


# -h is --host here, as in the published cashet's ``serve`` (help stays --help).
@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("--host", "-h", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    "-p",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port.",
)
@click.option(
    "--require-token",
    envvar="CASHET_TOKEN",
    metavar="TOKEN",
    help="Bearer token every request must carry [env: CASHET_TOKEN, which keeps it out "
    "of the process list].",
)
@click.option(
    "--allow-remote-code",
    is_flag=True,
    help="Also run client-supplied Python (func_source, dill payloads). Needs a token; "
    "only for trusted clients.",
)
@click.option(
    "--read-only", is_flag=True, help="Serve cached results only: refuse gc and uncached runs."
)
@click.option(
    "--task",
    "task_specs",
    multiple=True,
    metavar="MODULE:NAME",
    help="Register a function /submit may run (repeatable).",
)
@pass_cli
def serve(
    cli: CliContext,
    host: str,
    port: int,
    require_token: str | None,
    allow_remote_code: bool,
    read_only: bool,
    task_specs: tuple[str, ...],
) -> None:
    """Serve the store over HTTP (POST /submit, GET /commit/HASH, /log, /stats, ...).

    Without a token, anyone who can reach HOST:PORT can run the registered tasks and gc:
    keep such a server on loopback. The OpenAPI document is at /openapi.json.
    """
    token = require_token or None  # an empty $CASHET_TOKEN means no token
    if allow_remote_code and token is None:
        raise click.UsageError(
            "--allow-remote-code needs --require-token (or $CASHET_TOKEN): remote code runs "
            "arbitrary Python"
        )
    if allow_remote_code and read_only:
        raise click.UsageError("--allow-remote-code and --read-only contradict each other")
    tasks = _load_tasks(task_specs)
    try:
        from cashet.server.app import check_port, create_app, run_app
    except ImportError as exc:
        raise click.ClickException(
            f"the server needs the 'server' extra: pip install 'cashet[server]' ({exc.name})"
        ) from None
    client = cli.client(create=not read_only)
    try:
        app = create_app(
            client,
            require_token=token,
            tasks=tasks,
            allow_remote_code=allow_remote_code,
            read_only=read_only,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    check_port(host, port)
    _announce(cli, tasks, host, port, token is not None, read_only)
    run_app(app, host, port)


def _announce(
    cli: CliContext,
    tasks: dict[str, Callable[..., Any]],
    host: str,
    port: int,
    auth: bool,
    read_only: bool,
) -> None:
    """What is served, before uvicorn's own lines: the store, the tasks, auth, the docs."""
    from cashet.server.app import is_loopback

    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    click.echo(f"cashet serving {cli.where}{' (read-only)' if read_only else ''}")
    names = ", ".join(sorted(tasks)) or "none (register one with --task MODULE:NAME)"
    click.echo(f"  tasks:   {names}")
    click.echo(f"  auth:    {'bearer token required' if auth else 'off (no token)'}")
    click.echo(f"  openapi: {base}/openapi.json")
    if not auth and not is_loopback(host):
        click.echo(
            f"warning: serving on {host} without a token: anyone who can reach port {port}"
            " can run the registered tasks and gc (use --require-token or $CASHET_TOKEN)",
            err=True,
        )
