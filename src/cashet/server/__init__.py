"""The HTTP server (Starlette): a thin shell over ``Client`` / ``AsyncClient``."""

from cashet.server.app import create_app, create_async_app, run_app

__all__ = ["create_app", "create_async_app", "run_app"]
