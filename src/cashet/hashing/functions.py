"""Function identity: what a task function *is*, as a BLAKE3 digest.

A function's identity covers its AST-normalized source (``source``), its qualified name,
its defaults and keyword defaults, and — recursively and cycle-safe — every user-code
function, class and method it reaches (``dependencies``). Closure cells holding values are
not hashed and raise a ``ClosureWarning`` once per function (except in exec-generated code
such as dataclasses' ``__init__``, whose cells — defaults, sentinels — are hashed instead).

The reachable functions and classes form a graph (it may have cycles: mutual recursion, a
method and its class). Each node has a *local* digest (its own code, not its dependencies);
the identity of a root is the digest of the root's entry and the sorted set of entries of
every node it reaches, where an entry is a local digest plus its labelled edges to local
digests. That is deterministic whatever order the graph is walked in.

Identities are cached per function object. A cached identity stays valid while every
binding it was computed from is unchanged — each global name, module attribute, class
member and closure cell it looked up, and each function's ``__code__``/``__defaults__``/
``__kwdefaults__`` — so a notebook user who redefines a helper sees the callers' identities
change. Re-validation is a few identity checks: no parsing.

Local digests use the value encoding (``hash_value``), and the value encoding writes a
function as its identity digest: importing this module hands :func:`_digest` to
``objects.set_function_digest``, so that mutual recursion is a late binding at run time and
never an import cycle (``values`` and ``objects`` import nothing from here).
"""

from __future__ import annotations

import functools
import sys
import types
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from blake3 import blake3

from cashet._process import BoundedCache
from cashet.errors import ClosureWarning
from cashet.hashing.dependencies import (
    MISSING,
    AttrCheck,
    NsCheck,
    classify,
    global_chains,
    is_code,
    is_user_class,
    is_user_function,
    library_name,
    owner_class,
    resolve_chain,
    unwrap_member,
)
from cashet.hashing.objects import set_function_digest
from cashet.hashing.source import ast_digest, class_source, code_digest, locate
from cashet.hashing.values import hash_value

__all__ = ["FunctionIdentity", "function_identity"]

_FORMAT = b"cashet-fn-1"


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """Who a task function is.

    Attributes:
        hash: 64 lowercase hex chars (BLAKE3).
        name: ``func.__qualname__`` (``"<lambda>"`` for a lambda).
        module: ``func.__module__`` or ``""``.
        source: the dedented source text shown to users; ``""`` when there is none.
    """

    hash: str
    name: str
    module: str
    source: str


@dataclass(slots=True)
class _CodeNode:
    """One function or class of the dependency graph (identity of its own code only)."""

    local: bytes
    edges: list[tuple[str, Any]] = field(default_factory=list)
    ns_checks: list[NsCheck] = field(default_factory=list)
    attr_checks: list[AttrCheck] = field(default_factory=list)
    source: str = ""
    closure_values: tuple[str, ...] = ()


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
    ]
    found = locate(f)
    if found is not None:
        node, source = found
        code_id = ("ast", ast_digest(node))
    else:
        source = ""
        code_id = ("bytecode", code_digest(code))
    for chain in global_chains(code):
        resolve_chain(chain, globs, edges, ext, ns_checks)
    plain: list[str] = []
    # code generated with exec (dataclasses' __init__ closes over defaults and sentinels):
    # nobody wrote those closures, so hash their values rather than warn about them
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
        if is_code(v):
            continue
        digest = _safe_hash(v) if generated else "unhashable"
        if digest.startswith("unhashable"):
            plain.append(name)  # an object's state is a value, even when it is callable
        else:
            hashed_cells.append((name, digest))
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
        )
    )
    plain_values = tuple(plain) if is_user_function(f) else ()
    return _selfless(
        _CodeNode(bytes.fromhex(local), edges, ns_checks, attr_checks, source, plain_values), f
    )


def _class_node(cls: type) -> _CodeNode:
    d = cls.__dict__
    edges: list[tuple[str, Any]] = []
    ext: list[tuple[str, str]] = []
    ns_checks: list[NsCheck] = []
    attr_checks: list[AttrCheck] = [(cls, "__bases__", cls.__bases__)]
    members: list[str] = []
    for name in sorted(k for k in d if isinstance(k, str)):
        v = d[name]
        held = unwrap_member(v)
        if not held:
            continue  # class-level values are not hashed, like global values
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
    local = hash_value(("class", cls.__qualname__, tuple(members), tuple(sorted(ext))))
    return _selfless(_CodeNode(bytes.fromhex(local), edges, ns_checks, attr_checks), cls)


def _partial_node(p: functools.partial[Any]) -> _CodeNode:
    kind, target = classify(p.func)
    ext = (target,) if kind == "ext" else ()
    local = hash_value(("partial", _safe_hash(p.args), _safe_hash(p.keywords), ext))
    return _CodeNode(bytes.fromhex(local), [("func", target)] if kind == "dep" else [])


def _compute_node(obj: Any) -> _CodeNode:
    if isinstance(obj, types.FunctionType):
        return _function_node(obj)
    if isinstance(obj, type):
        return _class_node(obj)
    if isinstance(obj, functools.partial):
        return _partial_node(obj)
    raise TypeError(f"not a function or class: {type(obj).__qualname__}")  # pragma: no cover


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
# id(func) -> (weakref, identity, ns checks, attr checks)
_IdEntry = tuple[weakref.ref[Any], FunctionIdentity, tuple[NsCheck, ...], tuple[AttrCheck, ...]]
_IDS: BoundedCache[int, _IdEntry] = BoundedCache(_CACHE_MAX)
_WARNED: weakref.WeakSet[Any] = weakref.WeakSet()


def _remember(cache: BoundedCache[int, Any], obj: Any, *entry: Any) -> None:
    key = id(obj)

    def _drop(r: weakref.ref[Any]) -> None:
        hit = cache.get(key)
        if hit is not None and hit[0] is r:
            cache.pop(key, None)

    try:
        r = weakref.ref(obj, _drop)
    except TypeError:
        return
    cache.put(key, (r, *entry))


def _get_node(obj: Any) -> _CodeNode:
    hit = _NODES.get(id(obj))
    if hit is not None and hit[0]() is obj and _valid(hit[1].ns_checks, hit[1].attr_checks, obj):
        return hit[1]
    node = _compute_node(obj)
    _remember(_NODES, obj, node)
    return node


def _graph_identity(root: Any) -> tuple[str, list[tuple[Any, _CodeNode]]]:
    """Identity of ``root`` from the graph of everything it reaches."""
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
    return h.hexdigest(), list(nodes.values())


def _stacklevel() -> int:
    """The warnings stacklevel of the first frame outside cashet (seen from our caller)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("cashet"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _warn_closures(members: list[tuple[Any, _CodeNode]]) -> None:
    for obj, n in members:
        if not n.closure_values or obj in _WARNED:
            continue
        _WARNED.add(obj)
        names = ", ".join(n.closure_values)
        warnings.warn(
            f"{obj.__module__}.{obj.__qualname__} closes over plain value(s) {names}; "
            "closure variables are not part of the cache key, pass them as arguments",
            ClosureWarning,
            stacklevel=_stacklevel(),
        )


def _compute_function(func: Any) -> FunctionIdentity:
    digest, members = _graph_identity(func)
    ns: dict[tuple[int, str], NsCheck] = {}
    attrs: dict[tuple[int, str], AttrCheck] = {}
    for o, n in members:
        # every node's bindings, with _SELF re-pointed at the root (never held strongly)
        def s(v: Any, o: Any = o) -> Any:
            v = o if v is _SELF else v
            return _SELF if v is func else v

        for d, k, v in n.ns_checks:
            ns[(id(d), k)] = (d, k, s(v))
        for t, a, v in n.attr_checks:
            attrs[(id(s(t)), a)] = (s(t), a, s(v))
    root = members[0][1]
    ident = FunctionIdentity(
        digest, func.__qualname__, getattr(func, "__module__", None) or "", root.source
    )
    _remember(_IDS, func, ident, tuple(ns.values()), tuple(attrs.values()))
    _warn_closures(members)
    return ident


def function_identity(func: Callable[..., Any]) -> FunctionIdentity:
    """Return the identity of a task function (cached per function object).

    Bound methods have the identity of their function (the instance is an argument);
    ``functools.partial`` combines the function's identity with its bound arguments; a
    class is identified by its methods; a callable object by its class and its state;
    builtins and other C callables by ``module.qualname``.

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
    if hit is not None and hit[0]() is func and _valid(hit[2], hit[3], func):
        return hit[1]
    if isinstance(func, types.FunctionType):
        return _compute_function(func)
    return _other_identity(func)


def _other_identity(func: Any) -> FunctionIdentity:
    if isinstance(func, type):
        digest, _ = _graph_identity(func)
        return FunctionIdentity(digest, func.__qualname__, func.__module__, class_source(func))
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
        cls_digest, _ = _graph_identity(tp)
        digest = hash_value(("callable", cls_digest, hash_value(func)))
        source = locate(call)
        return FunctionIdentity(digest, tp.__qualname__, tp.__module__, source[1] if source else "")
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


set_function_digest(_digest)
