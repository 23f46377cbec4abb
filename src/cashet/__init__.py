"""cashet: persistent, content-addressed memoization for Python functions and pipelines."""

from cashet._version import __version__

__all__ = ["__version__"]
