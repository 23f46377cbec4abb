"""The manifest of a cache key: what went into it, recorded with each computed commit.

A key is two digests (the function's identity and the arguments'); the manifest says what
they were made of, so that a person (``cashet show``) or a tool (``explain``/``why``) can
tell why two calls share a key or not:

* ``function``: ``module.qualname`` of the task and its identity digest;
* ``code``: every function and class reached (the task included), each with the digest of
  its own code (digests in a manifest are cut to :data:`DIGEST_CHARS` hex characters);
* ``values``: every value that code reads (a module constant, a config dict, a closure cell,
  a class attribute), with its owner, its digest for this call and a short preview; a value
  left out of the key says why (``"left_out"``: written only, ignored, unhashable);
* ``arguments``: each argument by parameter name (``self`` for a bound method's instance),
  its digest and preview; ``"default": true`` when the signature's default was used;
* ``python`` and ``packages``: the interpreter and the versions of the third-party
  packages the code references (recorded, not in the key).

Built on a miss only (never on a hit); pure apart from reading installed package metadata,
which is cached per process.
"""

from __future__ import annotations

import importlib.metadata
import platform
import reprlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from cashet._process import BoundedCache
from cashet.hashing.calls import bind, binds_as_given
from cashet.hashing.kept import KeptDigests
from cashet.hashing.keyparts import FunctionIdentity
from cashet.hashing.values import hash_value

__all__ = [
    "DIGEST_CHARS",
    "MANIFEST_FORMAT",
    "key_manifest",
    "manifest_arguments",
    "package_version",
    "python_version",
    "versioned_identity",
]

MANIFEST_FORMAT = 1

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


_SCALARS = frozenset({int, float, bool, type(None)})


def preview(value: Any) -> str:
    """A short readable text of ``value`` (for people; never hashed)."""
    if type(value) in _SCALARS:
        text = repr(value)
        if len(text) <= 60:
            return text
    try:
        return _REPR.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


#: Digests in a manifest are cut to 128 bits: enough to tell two parts apart (the key
#: itself uses all 256), and a manifest is stored with every commit.
DIGEST_CHARS = 32


def _digest(value: Any, kept: KeptDigests | None = None) -> str:
    try:
        return hash_value(value, kept)[:DIGEST_CHARS]
    except Exception:
        return ""


_PYTHON = f"{platform.python_version()} ({platform.python_implementation()})"


def python_version() -> str:
    """The interpreter, as a manifest records it: ``"3.11.9 (CPython)"``."""
    return _PYTHON


_VERSIONS: dict[str, str | None] = {}
_DISTRIBUTIONS: list[Mapping[str, list[str]]] = []


def package_version(top: str) -> str | None:
    """The installed version of the distribution that provides import package ``top``
    (``None`` when unknown). Cached per process."""
    if top in _VERSIONS:
        return _VERSIONS[top]
    version: str | None = None
    try:
        version = importlib.metadata.version(top)
    except Exception:
        try:
            dists = _distributions().get(top) or []
            version = importlib.metadata.version(dists[0]) if dists else None
        except Exception:
            version = None
    if version is None:
        found = getattr(sys.modules.get(top), "__version__", None)
        version = found if isinstance(found, str) else None
    _VERSIONS[top] = version
    return version


def _package_of(value: Any) -> str:
    """The third-party top-level package of ``value``'s type (``""`` for the standard
    library, ``__main__``, cashet and unknown modules)."""
    module = getattr(type(value), "__module__", None)
    if not isinstance(module, str):
        return ""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in ("builtins", "__main__", "cashet"):
        return ""
    return top if _is_installed(top) else ""


def _is_installed(top: str) -> bool:
    """Whether the imported package ``top`` was installed (not the user's own code)."""
    path = getattr(sys.modules.get(top), "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path


def _distributions() -> Mapping[str, list[str]]:
    if not _DISTRIBUTIONS:
        _DISTRIBUTIONS.append(importlib.metadata.packages_distributions())
    return _DISTRIBUTIONS[0]


def _argument(
    name: str, value: Any, default: bool = False, kept: KeptDigests | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "digest": _digest(value, kept),
        "preview": preview(value),
    }
    if default:
        entry["default"] = True
    return entry


def _arguments(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    kept: KeptDigests | None = None,
) -> list[dict[str, Any]]:
    """Each argument by parameter name, bound as ``hash_call`` binds it."""
    f: Any = func
    owner: Any = None
    if type(func) is types.MethodType:
        f, owner = func.__func__, func.__self__
    bound = None
    if type(f) is types.FunctionType:
        code = f.__code__
        # the common call binds as given (as in hash_call): each argument by its name
        if binds_as_given(code, owner, args, kwargs):
            return [_argument(code.co_varnames[i], v, False, kept) for i, v in enumerate(args)]
        full = args if owner is None else (owner, *args)
        bound = bind(f, full, kwargs)
    if bound is None:  # not a plain function, or a call that does not bind: as given
        out = [_argument(f"args[{i}]", v, False, kept) for i, v in enumerate(args)]
        return out + [_argument(k, v, False, kept) for k, v in sorted(kwargs.items())]
    pos, kw, defaulted = bound
    code = f.__code__
    names = code.co_varnames[: code.co_argcount]
    star = code.co_varnames[code.co_argcount + code.co_kwonlyargcount] if code.co_flags & 4 else ""
    out = []
    for i, v in enumerate(pos):
        name = names[i] if i < len(names) else f"*{star}[{i - len(names)}]"
        out.append(_argument(name, v, i in defaulted, kept))
    given = set(kwargs)
    out += [_argument(k, v, k not in given, kept) for k, v in sorted(kw.items())]
    return out


def manifest_arguments(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The ``arguments`` part of a manifest alone: each argument by parameter name, with
    its digest and preview (a cluster worker finishing a chained call's key makes it)."""
    return _arguments(func, args, kwargs)


def key_manifest(
    identity: FunctionIdentity,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    kept: KeptDigests | None = None,
) -> dict[str, Any]:
    """Return the manifest (JSON-able) of the key of ``func(*args, **kwargs)``.

    Args:
        identity: the identity the call was keyed with (its values' digests are this
            call's).
        func: the task callable.
        args: the positional arguments.
        kwargs: the keyword arguments.
        kept: the digests of big buffers the call's key kept (``hashing.kept``): each
            argument's digest reuses them instead of hashing those buffers again.
    """
    values: list[dict[str, Any]] = []
    for kv in identity.values:
        entry: dict[str, Any] = {"owner": kv.owner, "name": kv.label}
        if kv.reason in ("", "live"):
            entry["digest"] = kv.digest[:DIGEST_CHARS]
            entry["preview"] = kv.preview
        else:  # a handle's repr says nothing useful (an address): its type is in the reason
            entry["left_out"] = kv.reason
            if not kv.reason.startswith("unhashable"):
                entry["preview"] = kv.preview
        values.append(entry)
    # packages the code references, and those whose objects it reads or is given
    tops = set(identity.libraries)
    tops.update(_package_of(kv._value) for kv in identity.values)
    tops.update(_package_of(v) for v in args)
    tops.update(_package_of(v) for v in kwargs.values())
    packages = {}
    for top in sorted(t for t in tops if t):
        version = package_version(top)
        if version is not None:
            packages[top] = version
    module = f"{identity.module}." if identity.module else ""
    return {
        "format": MANIFEST_FORMAT,
        "function": {"name": f"{module}{identity.name}", "digest": identity.hash},
        "code": [{"name": n, "digest": d[:DIGEST_CHARS]} for n, d in identity.helpers],
        "values": values,
        "arguments": _arguments(func, args, kwargs, kept),
        "python": _PYTHON,
        "packages": packages,
    }


# --- library versions in the key, by policy ---------------------------------------------------

_VERSIONED: BoundedCache[tuple[str, str], FunctionIdentity] = BoundedCache(50_000)


def _cut(version: str, policy: str) -> str:
    if policy == "exact":
        return version
    parts = version.split(".")
    return ".".join(parts[: 1 if policy == "major" else 2])


def versioned_identity(identity: FunctionIdentity, policy: str) -> FunctionIdentity:
    """``identity`` with the versions of the packages its code uses in its digest, cut to
    ``policy`` (``"major"``: ``2``, ``"minor"``: ``2.1``, ``"exact"``: ``2.1.3``). Packages
    are those the code references and those whose objects it reads (as a manifest records
    them). Cached per identity and policy: versions do not change within a process."""
    key = (identity.hash, policy)
    found = _VERSIONED.get(key)
    if found is not None:
        return found
    tops = set(identity.libraries)
    tops.update(_package_of(kv._value) for kv in identity.values)
    pins = sorted(
        (top, _cut(version, policy))
        for top in tops
        if top and (version := package_version(top)) is not None
    )
    digest = hash_value(("versions", identity.hash, policy, tuple(pins)))
    found = FunctionIdentity(
        digest, identity.name, identity.module, identity.source, identity.helpers,
        identity.values, identity.libraries,
    )  # fmt: skip
    _VERSIONED.put(key, found)
    return found
