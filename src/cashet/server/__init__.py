"""The HTTP server (Starlette): a thin shell over ``Client`` / ``AsyncClient``.

A shell (docs/architecture.md): it is handed a client and calls its public methods only; it
never imports a client, the CLI or a store. :mod:`.app` wires the routes, :mod:`.backend`
calls the client (sync or async), :mod:`.input` validates requests, :mod:`.results` encodes
results, :mod:`.responses` maps errors, :mod:`.guard` checks tokens and body sizes,
:mod:`.openapi` describes it all.
"""

from cashet.server.app import create_app, create_async_app, run_app

__all__ = ["create_app", "create_async_app", "run_app"]
