"""The ``cashet`` command line (Click + Rich): a thin shell over ``Client``."""

from cashet.cli import serve as _serve  # noqa: F401  (registers "serve")
from cashet.cli.app import main

__all__ = ["main"]
