"""The parts of a cache key that are values: how each is taken, and how it is reported.

Every value a task's code can read (a module constant, a config dict, an instance, a closure
cell, a class attribute) is hashed by value with the argument encoding. :func:`take_values`
sorts the values one function or class reads into

* *fixed* values (immutable: hashed once, part of the node's own digest; the binding is
  re-validated by identity like any other),
* *live* values (mutable containers and instances: re-hashed on every call, since they can
  change in place),
* values left out: only written into (``CALLS.append(x)``: see ``reads``), opted out by name
  (:func:`ignore`), unhashable, or a handle rather than data (an event, a lock, a queue, a
  logger, a socket, a connection: :data:`_RESOURCE_MODULES`). Unhashable values and handles
  are named in a one-time :class:`~cashet.errors.ClosureWarning`: never silently excluded.

Each part is reported as a :class:`KeyValue`, so a manifest of the key can be shown later.
"""

from __future__ import annotations

import enum
import pickle
import reprlib
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from blake3 import blake3

from cashet.errors import ClosureWarning
from cashet.hashing.reads import Uses, is_immutable
from cashet.hashing.values import hash_value

__all__ = [
    "FunctionIdentity",
    "KeyValue",
    "LiveEntry",
    "ValueReads",
    "active",
    "ignore",
    "ignored_names",
    "is_class_value",
    "take_values",
    "warn",
    "with_live",
]

F = TypeVar("F")

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 2


class KeyValue:
    """One value read by the task's code, as it stands in the key.

    Attributes:
        owner: ``module.qualname`` of the function or class that reads it.
        label: how it is read: ``SCALE``, ``cfg.SCALE``, ``closure:k``, a class attribute
            name, ``import:m.X``.
        digest: the value's digest (64 hex chars): for a live value, its digest in the
            call the identity was computed for; ``""`` when left out.
        reason: ``""`` when in the key; ``"live"`` for a value re-hashed on every call;
            ``"write-only"``, ``"ignored"`` or ``"unhashable: <type>"`` when left out.
    """

    __slots__ = ("_value", "digest", "label", "owner", "reason")

    def __init__(self, owner: str, label: str, digest: str, reason: str, value: Any) -> None:
        self.owner = owner
        self.label = label
        self.digest = digest
        self.reason = reason
        self._value = value

    @property
    def preview(self) -> str:
        """A short readable text of the value (for people; never hashed)."""
        try:
            return _REPR.repr(self._value)
        except Exception:
            return f"<{type(self._value).__name__}>"

    def __repr__(self) -> str:
        return f"KeyValue({self.owner}:{self.label} {self.reason or self.digest[:12]})"


class ValueReads:
    """What :func:`take_values` found: digests for the node, live values, values left out."""

    __slots__ = ("fixed", "live", "parts", "skipped")

    def __init__(self) -> None:
        self.fixed: list[tuple[str, str]] = []
        self.live: list[tuple[str, Any]] = []
        self.parts: list[KeyValue] = []
        self.skipped: list[str] = []


#: Modules whose objects are handles, not data (events, locks, queues, loops, loggers,
#: sockets, connections, files, clients): their state changes as they are used and never
#: is an input of the result, so a value of such a type is left out (and named) instead of
#: hashed through its ``__reduce__``.
_RESOURCE_MODULES = frozenset(
    {
        "asyncio", "threading", "_thread", "queue", "multiprocessing", "concurrent",
        "socket", "ssl", "selectors", "select", "logging", "sqlite3", "io", "_io",
        "subprocess", "weakref", "contextvars", "cashet", "http", "urllib3", "requests",
        "httpx", "aiohttp", "redis", "psycopg", "psycopg2", "sqlalchemy", "tempfile",
    }
)  # fmt: skip


def _is_resource(v: Any) -> bool:
    if callable(getattr(type(v), "__cashet_hash__", None)):
        return False  # its class says how to key it (a cashet task: by its function)
    mod = getattr(type(v), "__module__", None) or ""
    # a ResultRef is data: its blob hash is its content
    return mod.partition(".")[0] in _RESOURCE_MODULES and mod != "cashet.models"


def _type_name(v: Any) -> str:
    tp = type(v)
    return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"


def take_values(
    owner: str,
    reads: Iterable[tuple[str, Any]],
    uses: Uses | None,
    ignored: frozenset[str],
) -> ValueReads:
    """Sort the values ``owner`` reads (``(label, value)``) into fixed, live and left out."""
    out = ValueReads()
    seen: set[str] = set()
    for label, v in reads:
        if label in seen:
            continue
        seen.add(label)
        name = label.removeprefix("closure:")
        if name in ignored or name.partition(".")[0] in ignored:
            out.parts.append(KeyValue(owner, label, "", "ignored", v))
            continue
        # (a value reached through an import in the body is named by its module, not by
        # a name the AST shows: it counts as read)
        if (
            uses is not None
            and not name.startswith("import:")
            and uses.write_only(tuple(name.split(".")))
        ):
            out.parts.append(KeyValue(owner, label, "", "write-only", v))
            continue
        try:
            if _is_resource(v):
                raise TypeError("a resource, not data")
            digest = hash_value(v)
        except Exception:  # TypeError mostly; a failing __reduce__/hook must not fail the task
            reason = f"unhashable: {_type_name(v)}"
            out.fixed.append((label, reason))
            out.parts.append(KeyValue(owner, label, "", reason, v))
            out.skipped.append(f"{label} ({_type_name(v)})")
            continue
        if is_immutable(v):
            out.fixed.append((label, digest))
            out.parts.append(KeyValue(owner, label, digest, "", v))
        else:
            out.live.append((label, v))
            out.parts.append(KeyValue(owner, label, "", "live", v))
    return out


_SKIP_CLASS_VALUES = frozenset({"_abc_impl", "__cashet_ignore__"})


def is_class_value(cls: type, name: str, v: Any) -> bool:
    """Whether a class attribute is a value the class's code may read (not machinery):
    dunders, enum's own ``_sunder_`` bookkeeping and slot descriptors are not."""
    if name in _SKIP_CLASS_VALUES or (name.startswith("__") and name.endswith("__")):
        return False
    if isinstance(cls, enum.EnumMeta) and name.startswith("_") and name.endswith("_"):
        return False  # _member_map_ and co.; the members themselves are hashed
    return not isinstance(v, (types.MemberDescriptorType, types.GetSetDescriptorType))


def ignored_names(obj: Any) -> frozenset[str]:
    """The names ``obj`` opted out of its key with :func:`ignore` (``__cashet_ignore__``)."""
    try:
        names = obj.__dict__.get("__cashet_ignore__", ())
    except AttributeError:
        return frozenset()
    return frozenset(n for n in names if isinstance(n, str))


def ignore(*names: str) -> Callable[[F], F]:
    """Leave the named values a task reads out of its cache key (a decorator).

    ``names`` are global names (``"LOCK"``), dotted paths (``"cfg.CACHE"``), closure
    variables, or, on a class, class attributes. Put it under ``@client.task``::

        @client.task
        @cashet.hashing.ignore("DB", "LOG")
        def load(day): ...

    The values are then neither hashed nor warned about: a change to them does not change
    the key (use it for handles, caches and other values that cannot change the result).
    """

    def mark(obj: F) -> F:
        target: Any = getattr(obj, "func", obj) if hasattr(obj, "options") else obj
        target.__cashet_ignore__ = tuple(sorted(ignored_names(target) | set(names)))
        return obj

    return mark


# --- identities ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """Who a task function is, and what went into its key.

    Attributes:
        hash: 64 lowercase hex chars (BLAKE3): code, helpers and the values they read.
        name: ``func.__qualname__`` (``"<lambda>"`` for a lambda).
        module: ``func.__module__`` or ``""``.
        source: the dedented source text shown to users; ``""`` when there is none.
        helpers: ``(module.qualname, digest)`` of every function and class reached (the
            task itself included); the digest covers that code only: not what it reaches,
            not the values it reads (those are in ``values``).
        values: every value the code reads (:class:`KeyValue`: owner, label, digest,
            preview, and why it is left out when it is).
        libraries: top-level third-party packages the code references (by name only: their
            code is not in the key; a manifest records their versions).
    """

    hash: str
    name: str
    module: str
    source: str
    helpers: tuple[tuple[str, str], ...] = ()
    values: tuple[KeyValue, ...] = ()
    libraries: tuple[str, ...] = ()

    @property
    def skipped(self) -> tuple[KeyValue, ...]:
        """The values left out of the key: written only, ignored or unhashable."""
        return tuple(v for v in self.values if v.reason not in ("", "live"))


class LiveEntry:
    """A cached identity: valid while its bindings hold; its live values re-hashed per call."""

    __slots__ = ("attrs", "base", "heavy", "last", "live", "names", "ns", "ref", "snaps")

    def __init__(
        self,
        ref: weakref.ref[Any],
        base: FunctionIdentity,
        ns: tuple[tuple[Any, str, Any], ...],
        attrs: tuple[tuple[Any, str, Any], ...],
        live: tuple[tuple[bytes, Any], ...],
        names: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.ref = ref
        self.base = base  # the identity of the code and of its fixed values
        self.ns = ns
        self.attrs = attrs
        self.live = live  # (label, value) re-hashed on every call
        self.names = names  # (owner, label) of each live value: its KeyValue in base.values
        self.last: tuple[tuple[str, ...], FunctionIdentity] | None = None
        # per live value: (pickle snapshot of plain data or None, its digest)
        self.snaps: list[tuple[bytes | None, str] | None] = [None] * len(live)
        #: a live value is big enough that re-hashing it may block an event loop
        self.heavy = any(_weighty(v) for _, v in live)


def with_live(e: LiveEntry, func: Any) -> FunctionIdentity:
    """The identity for this call: the cached one, plus the digests of the live values."""
    busy = active()
    if id(func) in busy:
        return e.base  # a live value holds the task itself (a registry dict)
    busy.add(id(func))
    try:
        digests = tuple(_live_digest(i, label, v, e) for i, (label, v) in enumerate(e.live))
    finally:
        busy.discard(id(func))
    last = e.last
    if last is not None and last[0] == digests:
        return last[1]
    h = blake3(bytes.fromhex(e.base.hash))
    for (label, _), d in zip(e.live, digests, strict=True):
        h.update(len(label).to_bytes(4, "little") + label + d.encode())
    b = e.base
    ident = FunctionIdentity(
        h.hexdigest(), b.name, b.module, b.source, b.helpers, _with_digests(e, digests),
        b.libraries,
    )  # fmt: skip
    e.last = (digests, ident)
    return ident


def _with_digests(e: LiveEntry, digests: tuple[str, ...]) -> tuple[KeyValue, ...]:
    """The identity's values with each live one's digest for this call (for a manifest)."""
    now = dict(zip(e.names, digests, strict=False))
    if not now:
        return e.base.values
    return tuple(
        KeyValue(kv.owner, kv.label, now.get((kv.owner, kv.label), ""), kv.reason, kv._value)
        if kv.reason == "live"
        else kv
        for kv in e.base.values
    )


_HEAVY_BYTES = 1 << 20


def _weighty(v: Any) -> bool:
    """Whether re-hashing ``v`` on every call may take milliseconds (a cheap guess)."""
    nbytes = getattr(v, "nbytes", None)  # numpy arrays, pandas objects
    if isinstance(nbytes, int):
        return nbytes >= _HEAVY_BYTES
    if isinstance(v, str | bytes | bytearray | memoryview):
        return len(v) >= _HEAVY_BYTES
    try:
        return len(v) >= _HEAVY_BYTES >> 6  # a container of many items
    except Exception:
        return False


_PLAIN = frozenset({dict, list, tuple, set, frozenset, str, int, float, bool, type(None), bytes})
_CONTAINERS = (dict, list, tuple, set, frozenset)
_SNAP_ITEMS, _SNAP_BYTES = 4096, 64 << 10


def _is_plain(v: Any) -> bool:
    """Whether ``v`` is small plain data (builtin containers of builtin scalars only)."""
    stack, n = [v], 0
    while stack:
        x = stack.pop()
        tp = type(x)
        if tp not in _PLAIN:
            return False
        if tp is dict:
            stack.extend(x.keys())
            stack.extend(x.values())
        elif tp in (list, tuple, set, frozenset):
            stack.extend(x)
        n += 1
        if n > _SNAP_ITEMS:
            return False
    return True


def _live_digest(i: int, label: bytes, v: Any, e: LiveEntry) -> str:
    """The digest of a live value. Small plain data (a config dict) is re-validated by a
    pickle snapshot, one C call: equal snapshots of plain data mean an equal value, exact
    types included (``1``, ``1.0`` and ``True`` pickle differently). Anything else is
    hashed again."""
    snap = e.snaps[i]
    if snap is not None and snap[0] is not None:
        try:
            if pickle.dumps(v, 5) == snap[0]:
                return snap[1]
        except Exception:
            pass
    try:
        digest = hash_value(v)
    except Exception:  # changed in place into something unhashable
        tp = type(v)
        name = label[32:].decode("utf-8", "surrogatepass")
        warn(e, e.base.name, [f"{name} ({tp.__qualname__})"])
        return f"unhashable:{tp.__module__}.{tp.__qualname__}"
    saved: bytes | None = None
    if type(v) in _CONTAINERS and _is_plain(v):
        try:
            saved = pickle.dumps(v, 5)
        except Exception:
            saved = None
        if saved is not None and len(saved) > _SNAP_BYTES:
            saved = None
    e.snaps[i] = (saved, digest)
    return digest


# --- recursion guard and warnings -----------------------------------------------------------

_STATE = threading.local()


def active() -> set[int]:
    """The ids of functions and classes whose key is being computed on this thread."""
    s: set[int] | None = getattr(_STATE, "active", None)
    if s is None:
        s = _STATE.active = set()
    return s


_WARNED: weakref.WeakSet[Any] = weakref.WeakSet()
_WARNED_IDS: set[tuple[int, str]] = set()


def _stacklevel() -> int:
    """The warnings stacklevel of the first frame outside cashet (seen from our caller)."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("cashet"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _opt_out_names(left_out: list[str]) -> list[str]:
    """The names to pass to ``ignore_globals`` for ``left_out`` entries (``"LOCK (lock)"``)."""
    names = (entry.rpartition(" (")[0] or entry for entry in left_out)
    return [n.removeprefix("closure:") for n in names if " " not in n]  # not "the default of"


def warn(obj: Any, what: str, left_out: list[str]) -> None:
    """Warn once per object that ``left_out`` values it reads are not in the key."""
    if not left_out:
        return
    try:
        if obj in _WARNED:
            return
        _WARNED.add(obj)
    except TypeError:  # not weak-referenceable
        key = (id(obj), what)
        if key in _WARNED_IDS:
            return
        _WARNED_IDS.add(key)
    names = ", ".join(left_out)
    opt_out = _opt_out_names(left_out)
    how = f"@client.task(ignore_globals={opt_out!r}) or " if opt_out else ""
    warnings.warn(
        f"{what} reads {names}: left out of the cache key, since it cannot be hashed or is "
        "a handle rather than data (a change to it will not change the key). Give its class "
        "a __cashet_hash__ method, pass what matters as an argument, or opt out with "
        f"{how}@cashet.hashing.ignore(...) to silence this",
        ClosureWarning,
        stacklevel=_stacklevel(),
    )
