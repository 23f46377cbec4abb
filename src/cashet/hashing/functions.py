"""Function identity: what a task function *is*, as a BLAKE3 digest.

A function's identity covers its AST-normalized source (``source``), its qualified name,
its defaults and keyword defaults, and — recursively and cycle-safe — every user-code
function, class and method it reaches (``dependencies``), and every value that code reads:
module-level values (``SCALE``, a config dict, an instance, ``cfg.SCALE``), class-level values
and enum members of the classes reached, and closure cells (``keyparts``). Values are hashed
by value with the argument encoding; values only written into are left out (``reads``), and
unhashable ones are left out and named in a one-time ``ClosureWarning``.

The reachable functions and classes form a graph (it may have cycles: mutual recursion, a
method and its class). Each node has a *local* digest (its own code and its fixed values,
not its dependencies); the identity of a root is the digest of the root's entry and the
sorted set of entries of every node it reaches, where an entry is a local digest plus its
labelled edges to local digests. That is deterministic whatever order the graph is walked in.
Mutable values (containers, instances) are *live*: re-hashed on every call and folded into
the cached digest, since they can change in place.

Identities are cached per function object. A cached identity stays valid while every
binding it was computed from is unchanged — each global name, module attribute, class
member and closure cell it looked up, and each function's ``__code__``/``__defaults__``/
``__kwdefaults__`` — so a notebook user who redefines a helper sees the callers' identities
change. Re-validation is a few identity checks: no parsing.

Local digests use the value encoding (``hash_value``), and the value encoding writes a
function as its identity digest and a user class as its name and code digest: importing this
module hands both to ``objects.set_code_digests``, so that mutual recursion is a late
binding at run time and never an import cycle (``values`` and ``objects`` import nothing
from here).
"""

from __future__ import annotations

import functools
import sys
import types
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from blake3 import blake3

from cashet._process import BoundedCache
from cashet.hashing.dependencies import (
    MISSING,
    AttrCheck,
    NsCheck,
    classify,
    global_chains,
    held_code,
    import_chains,
    is_code,
    is_instance_state,
    is_user_class,
    is_user_function,
    library_name,
    owner_class,
    resolve_chain,
    resolve_import,
    unwrap_member,
)
from cashet.hashing.keyparts import (
    FunctionIdentity,
    KeyValue,
    LiveEntry,
    active,
    ignored_names,
    is_class_value,
    take_values,
    warn,
    with_live,
)
from cashet.hashing.objects import set_code_digests
from cashet.hashing.reads import uses_of
from cashet.hashing.source import ast_digest, class_source, code_digest, locate
from cashet.hashing.values import hash_value

__all__ = ["FunctionIdentity", "KeyValue", "function_identity", "identity_is_heavy"]

# 2: values read (globals, class attributes, closure cells), imports in a body, wrappers
_FORMAT = b"cashet-fn-2"


@dataclass(slots=True)
class _CodeNode:
    """One function or class of the dependency graph (identity of its own code only)."""

    local: bytes
    edges: list[tuple[str, Any]] = field(default_factory=list)
    ns_checks: list[NsCheck] = field(default_factory=list)
    attr_checks: list[AttrCheck] = field(default_factory=list)
    source: str = ""
    name: str = ""
    parts: list[KeyValue] = field(default_factory=list)
    live: list[tuple[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    libraries: frozenset[str] = frozenset()
    code: bytes = b""  # the digest of its code alone (for a manifest; ``local`` is the key's)


def _libraries(ext: list[tuple[str, str]]) -> frozenset[str]:
    """Top-level third-party packages among library references (for a manifest's versions)."""
    tops = {target.lstrip(".").partition(".")[0] for _, target in ext}
    return frozenset(t for t in tops if t and t not in sys.stdlib_module_names and t != "cashet")


class _Self:
    __slots__ = ()


# Stands for "the object this entry is about" inside cached entries, so that an entry
# never holds its own key alive (a closure made per call must be freed, not cached forever).
_SELF: Any = _Self()


# --- nodes --------------------------------------------------------------------------------


def _safe_hash(v: Any) -> str:
    try:
        return hash_value(v)
    except (TypeError, RecursionError):  # a lock as a default; f.__defaults__ = (f,)
        return f"unhashable:{type(v).__module__}.{type(v).__qualname__}"


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or ''}.{getattr(obj, '__qualname__', '?')}"


def _function_node(f: types.FunctionType) -> _CodeNode:
    code = f.__code__
    globs = f.__globals__
    edges: list[tuple[str, Any]] = []
    ext: list[tuple[str, str]] = []
    ns_checks: list[NsCheck] = []
    attr_checks: list[AttrCheck] = [
        (_SELF, "__code__", code),
        (_SELF, "__defaults__", f.__defaults__),
        (_SELF, "__kwdefaults__", f.__kwdefaults__),
        (_SELF, "__cashet_ignore__", f.__dict__.get("__cashet_ignore__", MISSING)),
    ]
    found = locate(f)
    if found is not None:
        node, source = found
        code_id = ("ast", ast_digest(node))
    else:
        node, source = None, ""
        code_id = ("bytecode", code_digest(code))
    user = is_user_function(f)
    reads: list[tuple[str, Any]] = []
    for chain in global_chains(code):
        resolve_chain(chain, globs, edges, ext, ns_checks, reads if user else None)
    if user:
        package = globs.get("__package__") or globs.get("__name__")
        for chain in import_chains(code, package if isinstance(package, str) else None):
            resolve_import(chain, edges, ext, ns_checks, reads)
    # code generated with exec (dataclasses' __init__ closes over defaults and sentinels):
    # nobody wrote those closures; their values are hashed as they are, never warned about
    generated = code.co_filename == "<string>"
    hashed_cells: list[tuple[str, str]] = []
    for name, cell in zip(code.co_freevars, f.__closure__ or (), strict=False):
        try:
            v = cell.cell_contents
        except ValueError:  # an empty cell (not assigned yet)
            continue
        kind, target = classify(v)
        if kind != "val":
            attr_checks.append((cell, "cell_contents", v))
            (edges if kind == "dep" else ext).append((f"closure:{name}", target))
        if is_code(v) and not is_instance_state(v, target):
            continue
        if generated:
            hashed_cells.append((name, _safe_hash(v)))
        elif user:
            if kind == "val":
                attr_checks.append((cell, "cell_contents", v))
            reads.append((f"closure:{name}", v))
    taken = take_values(_qualified(f), reads, uses_of(node), ignored_names(f))
    owner = owner_class(f, ns_checks)
    if owner is not None:
        edges.append(("owner", owner))
    local = hash_value(
        (
            "function",
            f.__qualname__,
            code_id,
            _safe_hash(f.__defaults__),
            _safe_hash(f.__kwdefaults__),
            tuple(sorted(set(ext))),
            tuple(hashed_cells),
            tuple(sorted(taken.fixed)),
            tuple(sorted(label for label, _ in taken.live)),
        )
    )
    n = _CodeNode(bytes.fromhex(local), edges, ns_checks, attr_checks, source, _qualified(f))
    n.code = _code_only("function", f.__qualname__, code_id, f.__defaults__, f.__kwdefaults__, ext)
    n.parts, n.live, n.skipped = taken.parts, taken.live, taken.skipped
    n.libraries = _libraries(ext)
    return _selfless(n, f)


def _code_only(kind: str, name: str, code: Any, defaults: Any, kw: Any, ext: Any) -> bytes:
    """A node's digest of its code alone, without the values it reads: what a manifest
    shows for it, so that a changed global is not also reported as changed code."""
    return bytes.fromhex(
        hash_value((kind, name, code, _safe_hash(defaults), _safe_hash(kw), tuple(sorted(ext))))
    )


def _class_node(cls: type) -> _CodeNode:
    d = cls.__dict__
    edges: list[tuple[str, Any]] = []
    ext: list[tuple[str, str]] = []
    ns_checks: list[NsCheck] = []
    attr_checks: list[AttrCheck] = [
        (cls, "__bases__", cls.__bases__),
        (cls, "__cashet_ignore__", getattr(cls, "__cashet_ignore__", MISSING)),
    ]
    members: list[str] = []
    reads: list[tuple[str, Any]] = []
    for name in sorted(k for k in d if isinstance(k, str)):
        v = d[name]
        held = unwrap_member(v)
        if not held:
            if is_class_value(cls, name, v):
                ns_checks.append((d, name, v))
                reads.append((name, v))
            continue
        ns_checks.append((d, name, v))
        for suffix, fn in held:
            label = f"{name}{suffix}"
            members.append(label)
            kind, target = classify(fn)
            if kind == "dep":
                edges.append((label, target))
            elif kind == "ext":
                ext.append((label, target))
    for i, base in enumerate(cls.__bases__):
        kind, target = classify(base)
        if kind == "dep":
            edges.append((f"base{i}", target))
        else:
            ext.append((f"base{i}", library_name(base)))
    taken = take_values(_qualified(cls), reads, None, ignored_names(cls))
    local = hash_value(
        (
            "class",
            cls.__qualname__,
            tuple(members),
            tuple(sorted(ext)),
            tuple(sorted(taken.fixed)),
            tuple(sorted(label for label, _ in taken.live)),
        )
    )
    n = _CodeNode(bytes.fromhex(local), edges, ns_checks, attr_checks, name=_qualified(cls))
    n.code = _code_only("class", cls.__qualname__, tuple(members), None, None, ext)
    n.parts, n.live, n.skipped = taken.parts, taken.live, taken.skipped
    n.libraries = _libraries(ext)
    return _selfless(n, cls)


def _partial_node(p: functools.partial[Any]) -> _CodeNode:
    kind, target = classify(p.func)
    ext = (target,) if kind == "ext" else ()
    local = hash_value(("partial", _safe_hash(p.args), _safe_hash(p.keywords), ext))
    return _CodeNode(bytes.fromhex(local), [("func", target)] if kind == "dep" else [])


def _wrapper_node(obj: Any) -> _CodeNode:
    """A library wrapper (contextmanager, singledispatch, numpy.vectorize, functools.wraps)
    holding user code: its name, and edges to the code it holds."""
    edges: list[tuple[str, Any]] = []
    ns_checks: list[NsCheck] = []
    d = getattr(obj, "__dict__", None)
    for label, x in held_code(obj):
        kind, target = classify(x)
        if kind == "dep":
            edges.append((label, target))
        if isinstance(d, dict) and label in d:
            ns_checks.append((d, label, x))
    if isinstance(d, dict):
        # a registry (singledispatch's): an implementation registered or replaced after
        # the first call must change the key, so each entry and the entry count are bindings
        for k, m in d.items():
            if isinstance(m, Mapping | types.MappingProxyType) and not isinstance(m, type):
                try:
                    items = list(m.items())
                except Exception:
                    continue
                ns_checks.append((cast(Any, _Size(m)), k, len(items)))
                ns_checks.extend((m, key, impl) for key, impl in items)
    labels = tuple(sorted(label for label, _ in edges))
    local = hash_value(("wrapper", library_name(obj), labels))
    return _selfless(_CodeNode(bytes.fromhex(local), edges, ns_checks), obj)


class _Size:
    """A binding check on a mapping's size: ``.get`` answers its length (small ints are
    shared objects, so an unchanged size passes the identity check; a registry of more
    than 256 entries is merely re-walked on every call)."""

    __slots__ = ("m",)

    def __init__(self, m: Any) -> None:
        self.m = m

    def get(self, _key: Any, _default: Any = None) -> int:
        return len(self.m)


def _compute_node(obj: Any) -> _CodeNode:
    if isinstance(obj, types.FunctionType):
        if is_user_function(obj) or not held_code(obj):
            return _function_node(obj)
        return _wrapper_node(obj)
    if isinstance(obj, type):
        return _class_node(obj)
    if isinstance(obj, functools.partial):
        return _partial_node(obj)
    return _wrapper_node(obj)


# --- caches -------------------------------------------------------------------------------


def _selfless(node: _CodeNode, obj: Any) -> _CodeNode:
    def s(v: Any) -> Any:
        return _SELF if v is obj else v

    node.edges = [(label, s(t)) for label, t in node.edges]
    node.ns_checks = [(d, k, s(v)) for d, k, v in node.ns_checks]
    node.attr_checks = [(s(o), a, s(v)) for o, a, v in node.attr_checks]
    return node


def _valid(ns_checks: Any, attr_checks: Any, obj: Any) -> bool:
    """Whether every binding still holds (``_SELF`` meaning ``obj``): a few dict lookups."""
    for ns, key, exp in ns_checks:
        v = ns.get(key, MISSING)
        if v is not exp and (exp is not _SELF or v is not obj):
            return False
    for o, attr, exp in attr_checks:
        v = getattr(obj if o is _SELF else o, attr, MISSING)
        if v is not exp and (exp is not _SELF or v is not obj):
            return False
    return True


_CACHE_MAX = 50_000  # a bound: entries are cheap to recompute
_NODES: BoundedCache[int, tuple[weakref.ref[Any], _CodeNode]] = BoundedCache(_CACHE_MAX)


_IDS: BoundedCache[int, LiveEntry] = BoundedCache(_CACHE_MAX)


def _remember(cache: BoundedCache[int, Any], obj: Any, make: Any) -> None:
    key = id(obj)

    def _drop(r: weakref.ref[Any]) -> None:
        hit = cache.get(key)
        if hit is not None and (hit.ref if isinstance(hit, LiveEntry) else hit[0]) is r:
            cache.pop(key, None)

    try:
        r = weakref.ref(obj, _drop)
    except TypeError:
        return
    cache.put(key, make(r))


def _get_node(obj: Any) -> _CodeNode:
    hit = _NODES.get(id(obj))
    if hit is not None and hit[0]() is obj and _valid(hit[1].ns_checks, hit[1].attr_checks, obj):
        return hit[1]
    busy = active()
    busy.add(id(obj))
    try:
        node = _compute_node(obj)
    finally:
        busy.discard(id(obj))
    _remember(_NODES, obj, lambda r: (r, node))
    return node


def _graph_identity(root: Any) -> tuple[bytes, list[tuple[Any, _CodeNode]]]:
    """Identity of ``root`` from the graph of everything it reaches (fixed values included)."""
    nodes: dict[int, tuple[Any, _CodeNode]] = {}
    stack = [root]
    seen = {id(root)}
    while stack:
        o = stack.pop()
        n = _get_node(o)
        nodes[id(o)] = (o, n)
        for _, t in n.edges:
            if t is not _SELF and id(t) not in seen:
                seen.add(id(t))
                stack.append(t)

    def entry(o: Any, n: _CodeNode) -> bytes:
        h = blake3(n.local)
        targets = ((label, nodes[id(o if t is _SELF else t)][1].local) for label, t in n.edges)
        for label, tlocal in sorted(targets):
            b = label.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(4, "little") + b + tlocal)
        return h.digest()

    root_entry = entry(*nodes[id(root)])
    entries = sorted({entry(o, n) for o, n in nodes.values()})
    h = blake3(_FORMAT + root_entry + len(entries).to_bytes(8, "little") + b"".join(entries))
    return h.digest(), list(nodes.values())


def _compute_identity(func: Any) -> LiveEntry | None:
    busy = active()
    busy.add(id(func))
    try:
        digest, members = _graph_identity(func)
    finally:
        busy.discard(id(func))
    ns: dict[tuple[int, str], NsCheck] = {}
    attrs: dict[tuple[int, str], AttrCheck] = {}
    live: list[tuple[bytes, Any, tuple[str, str]]] = []
    parts: list[KeyValue] = []
    for o, n in members:
        # every node's bindings, with _SELF re-pointed at the root (never held strongly)
        def s(v: Any, o: Any = o) -> Any:
            v = o if v is _SELF else v
            return _SELF if v is func else v

        for d, k, v in n.ns_checks:
            ns[(id(d), k)] = (d, k, s(v))
        for t, a, v in n.attr_checks:
            attrs[(id(s(t)), a)] = (s(t), a, s(v))
        parts.extend(n.parts)
        live.extend(
            (n.local + label.encode("utf-8", "surrogatepass"), v, (n.name, label))
            for label, v in n.live
        )
    live.sort(key=lambda t: t[0])
    names = tuple(name for _, _, name in live)
    values = tuple((label, v) for label, v, _ in live)
    source = class_source(func) if isinstance(func, type) else members[0][1].source
    helpers = tuple(sorted({(n.name, (n.code or n.local).hex()) for _, n in members if n.name}))
    libraries = tuple(sorted(frozenset().union(*(n.libraries for _, n in members))))
    base = FunctionIdentity(
        digest.hex(),
        func.__qualname__,
        getattr(func, "__module__", None) or "",
        source,
        helpers,
        tuple(parts),
        libraries,
    )
    entry: list[LiveEntry] = []

    def make(r: weakref.ref[Any]) -> LiveEntry:
        e = LiveEntry(r, base, tuple(ns.values()), tuple(attrs.values()), values, names)
        entry.append(e)
        return e

    _remember(_IDS, func, make)
    for o, n in members:
        if n.skipped:
            warn(o, n.name, n.skipped)
    if not entry:  # not weak-referenceable: a one-off entry
        return LiveEntry(weakref.ref(LiveEntry), base, (), (), values, names)
    return entry[0]


def _cached(func: Any) -> FunctionIdentity | None:
    hit = _IDS.get(id(func))
    if hit is not None and hit.ref() is func and _valid(hit.ns, hit.attrs, func):
        return hit.base if not hit.live else with_live(hit, func)
    return None


def _identity(func: Any) -> FunctionIdentity:
    """Identity of a plain function or a user class (cached, re-validated, live values)."""
    hit = _cached(func)
    if hit is not None:
        return hit
    if id(func) in active():  # met again while its own key is being computed
        return FunctionIdentity(
            hash_value(("computing", _qualified(func))), func.__qualname__, "", ""
        )
    e = _compute_identity(func)
    assert e is not None
    return e.base if not e.live else with_live(e, func)


def function_identity(func: Callable[..., Any]) -> FunctionIdentity:
    """Return the identity of a task function (cached per function object).

    A bound method has the identity of its function (``hash_call`` puts the instance in the
    argument key); ``functools.partial`` combines the function's identity with its bound
    arguments; a class is identified by its code and class-level values; a callable object
    by its class and its state; builtins and other C callables by ``module.qualname``.
    Values the code reads are in the identity: fixed ones hashed once per binding, mutable
    ones (dicts, lists, instances) on every call.

    Args:
        func: any callable.

    Returns:
        The :class:`FunctionIdentity`; the same object while nothing it depends on changed.

    Raises:
        TypeError: ``func`` is not callable, or a partial's arguments cannot be hashed.
    """
    if type(func) is types.MethodType:
        func = func.__func__
    hit = _IDS.get(id(func))
    if hit is not None and hit.ref() is func and _valid(hit.ns, hit.attrs, func):
        return hit.base if not hit.live else with_live(hit, func)
    if isinstance(func, types.FunctionType) or (isinstance(func, type) and is_user_class(func)):
        return _identity(func)
    return _other_identity(func)


def identity_is_heavy(func: Callable[..., Any]) -> bool:
    """Whether computing ``func``'s identity re-hashes a big value (a 100 MiB global): then
    an event loop should not wait for it. ``False`` for an identity not computed yet."""
    if type(func) is types.MethodType:
        func = func.__func__
    hit = _IDS.get(id(func))
    return hit is not None and hit.heavy and hit.ref() is func


def _other_identity(func: Any) -> FunctionIdentity:
    if isinstance(func, type):
        code, _ = _graph_identity(func)
        return FunctionIdentity(code.hex(), func.__qualname__, func.__module__, class_source(func))
    if isinstance(func, (types.MethodType, staticmethod, classmethod)):
        return function_identity(func.__func__)
    if isinstance(func, functools.partial):
        inner = function_identity(func.func)
        digest = hash_value(("partial", inner.hash, func.args, func.keywords))
        return FunctionIdentity(digest, inner.name, inner.module, inner.source)
    if not callable(func):
        raise TypeError(f"{type(func).__qualname__} object is not callable")
    wrapped = (getattr(func, "__dict__", None) or {}).get("__wrapped__")
    if wrapped is not None and not is_user_class(type(func)):
        return function_identity(wrapped)  # lru_cache & co: same results as the function
    tp = type(func)
    call = tp.__dict__.get("__call__") or next(
        (c.__dict__["__call__"] for c in tp.__mro__ if "__call__" in c.__dict__), None
    )
    if isinstance(call, types.FunctionType):  # a callable object: class code + its state
        cls_digest = _identity(tp).hash if is_user_class(tp) else _graph_identity(tp)[0].hex()
        state = hash_value(("callable", cls_digest, hash_value(func)))
        source = locate(call)
        return FunctionIdentity(state, tp.__qualname__, tp.__module__, source[1] if source else "")
    if held_code(func):  # numpy.vectorize & co: the code it holds
        code, _ = _graph_identity(func)
        return FunctionIdentity(code.hex(), library_name(func), "", "")
    name = library_name(func)
    return FunctionIdentity(
        hash_value(("builtin", name)),
        getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or name,
        getattr(func, "__module__", None) or "",
        "",
    )


def _digest(func: Any) -> bytes:
    """The 32-byte identity digest of a function, as the value encoding writes it."""
    return bytes.fromhex(function_identity(func).hash)


_LIBRARY_CLASSES: BoundedCache[type, bool] = BoundedCache(20_000)


def _class_digest(cls: type) -> bytes:
    """The code digest of a user class met as a value (``b""`` for library classes)."""
    lib = _LIBRARY_CLASSES.get(cls)
    if lib is None:
        try:
            lib = not is_user_class(cls)
        except Exception:
            lib = True
        _LIBRARY_CLASSES.put(cls, lib)
    if lib or id(cls) in active():
        return b""
    return bytes.fromhex(_identity(cls).hash)


set_code_digests(_digest, _class_digest)
