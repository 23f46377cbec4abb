"""What a function reaches: user code versus library code, and the bindings to watch.

A function's identity covers every user-code function, class and method it reaches: bare
global names (also in nested code: comprehensions, inner functions, lambdas), ``module.attr``
chains into user modules, classes (all their methods), the class a method belongs to, and
function-valued closure cells, modules imported inside a body (``import m`` / ``from m import
g`` there), and the user code a library wrapper holds (``functools.wraps``' ``__wrapped__``,
``contextlib.contextmanager``, ``functools.singledispatch``'s registry, ``numpy.vectorize``'s
``pyfunc``: see :func:`held_code`). Library code (builtins, the standard library,
site-packages, cashet itself) is referenced by ``module.qualname`` only.

Every *value* met on the way (a global constant, a config dict, an instance, ``cfg.SCALE`` of
a user module) is reported with its dotted label, for the caller to hash by value.

Every binding looked up on the way is recorded as a check (``NsCheck``: a namespace, a key
and the object found; ``AttrCheck``: an object, an attribute and the object found), so a
cached identity can be re-validated with a few identity comparisons.
"""

from __future__ import annotations

import dis
import functools
import importlib
import importlib.util
import os
import sys
import sysconfig
import types
from collections.abc import Mapping
from typing import Any

from cashet.hashing.source import walk_code

__all__ = [
    "MISSING",
    "AttrCheck",
    "NsCheck",
    "classify",
    "global_chains",
    "held_code",
    "import_chains",
    "is_code",
    "is_user_class",
    "is_user_function",
    "library_name",
    "owner_class",
    "resolve_chain",
    "resolve_import",
    "unwrap_member",
]


class _Missing:
    __slots__ = ()


#: Stands for "no such binding" in checks (``None`` is a binding like any other).
MISSING: Any = _Missing()

NsCheck = tuple[Mapping[str, Any], str, Any]
AttrCheck = tuple[Any, str, Any]

# --- what is user code ------------------------------------------------------------------


def _lib_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    out = {
        os.path.normcase(os.path.realpath(paths[k])) + os.sep
        for k in ("stdlib", "platstdlib")
        if paths.get(k)
    }
    return tuple(sorted(out))


_LIB_PREFIXES = _lib_prefixes()
_USER: dict[tuple[str, str], bool] = {}


def _is_user(module: str, filename: str) -> bool:
    """True for code the user wrote: not builtins/stdlib/site-packages/cashet."""
    key = (module, filename)
    r = _USER.get(key)
    if r is None:
        r = _USER[key] = _compute_is_user(module, filename)
    return r


def _compute_is_user(module: str, filename: str) -> bool:
    top = module.partition(".")[0]
    if top in ("builtins", "cashet"):
        return False
    if filename and not filename.startswith("<"):
        # the file decides: a user module may share a name with a stdlib one (``code``)
        path = os.path.normcase(os.path.realpath(filename))
        parts = path.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return False
        return not path.startswith(_LIB_PREFIXES)
    # notebooks, exec and the REPL are user code; frozen and builtin modules are not
    return not (filename.startswith("<frozen") or top in sys.stdlib_module_names)


def is_user_function(f: types.FunctionType) -> bool:
    """Return whether ``f`` is user code (not builtins, stdlib, site-packages, cashet)."""
    return _is_user(f.__module__ or "", f.__code__.co_filename)


def is_user_class(cls: type) -> bool:
    """Return whether ``cls`` was written by the user (where its methods were compiled)."""
    mod = getattr(cls, "__module__", None) or ""
    if not isinstance(mod, str):
        return False
    # Where the class body's own functions were compiled says where the class was written.
    # The module's file can mislead: a class made in a notebook cell or by exec lives in
    # ``__main__``, which under ``python -m tool`` is the tool's file in site-packages.
    # (Functions written in the body only: an Enum's body holds enum's own helpers.)
    prefix = f"{getattr(cls, '__qualname__', '')}."
    for attr in vars(cls).values():
        func = getattr(attr, "__func__", attr)  # staticmethod / classmethod
        if isinstance(func, types.FunctionType) and func.__qualname__.startswith(prefix):
            return _is_user(mod, func.__code__.co_filename)
    file = getattr(sys.modules.get(mod), "__file__", None) or ""
    return _is_user(mod, file)


def _is_user_module(mod: types.ModuleType) -> bool:
    return _is_user(mod.__name__, getattr(mod, "__file__", None) or "")


def library_name(obj: Any) -> str:
    """Return the ``module.qualname`` by which library code is referenced.

    Unlike ``encoder.qualname_of`` a nameless object is named ``type()``; both spellings
    are pinned by golden digests.
    """
    mod = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(name, str):
        tp = type(obj)
        return f"{tp.__module__}.{tp.__qualname__}()"
    return f"{mod if isinstance(mod, str) else ''}.{name}"


def classify(v: Any) -> tuple[str, Any]:
    """Return what a binding is: ``("dep", function or class to descend into)``,
    ``("ext", "module.qualname")`` for library code, or ``("val", None)`` for a value."""
    if isinstance(v, types.FunctionType):
        if is_user_function(v):
            return ("dep", v)
        return ("dep", v) if held_code(v) else ("ext", library_name(v))
    if isinstance(v, type):
        return ("dep", v) if is_user_class(v) else ("ext", library_name(v))
    if isinstance(v, types.ModuleType):
        return ("ext", v.__name__)
    if isinstance(v, (types.MethodType, staticmethod, classmethod)):
        return classify(v.__func__)
    if isinstance(v, functools.partial):
        kind, _ = classify(v.func)
        return ("dep", v) if kind == "dep" else ("ext", library_name(v.func))
    tp = type(v)
    if is_user_class(tp):  # an instance of a user class: its methods are code we reach
        return ("dep", tp)
    if callable(v):
        wrapped = (getattr(v, "__dict__", None) or {}).get("__wrapped__")
        if wrapped is not None:  # lru_cache and similar C wrappers
            kind, target = classify(wrapped)
            if kind == "dep":
                return kind, target
        if held_code(v):  # numpy.vectorize and other wrapper objects holding user code
            return ("dep", v)
        return ("ext", library_name(v))
    return ("val", None)


def _holds_user(v: Any, depth: int) -> bool:
    if isinstance(v, types.FunctionType):
        return is_user_function(v) or (depth > 0 and bool(_held(v, depth - 1)))
    if isinstance(v, type):
        return is_user_class(v)
    if isinstance(v, (types.MethodType, staticmethod, classmethod)):
        return _holds_user(v.__func__, depth)
    if isinstance(v, functools.partial):
        return _holds_user(v.func, depth)
    return depth > 0 and callable(v) and not isinstance(v, type) and bool(_held(v, depth - 1))


def _held(v: Any, depth: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    d = getattr(v, "__dict__", None)
    if isinstance(d, dict):
        for k in sorted(x for x in d if isinstance(x, str)):
            x = d[k]
            if isinstance(x, Mapping | types.MappingProxyType) and not isinstance(x, type):
                # singledispatch's registry: type -> implementation
                try:
                    items = list(x.items())
                except Exception:
                    continue
                for key, y in items:
                    if _holds_user(y, depth):
                        out.append((f"{k}[{library_name(key)}]", y))
            elif _holds_user(x, depth):
                out.append((k, x))
    if isinstance(v, types.FunctionType) and v.__closure__:
        for name, c in zip(v.__code__.co_freevars, v.__closure__, strict=False):
            try:
                x = c.cell_contents
            except ValueError:
                continue
            if _holds_user(x, depth):
                out.append((f"closure:{name}", x))
    return out


def held_code(v: Any) -> list[tuple[str, Any]]:
    """Return the user functions/classes a *library* callable holds, with labels.

    A wrapper made by library code (``functools.wraps`` sets ``__wrapped__``;
    ``contextlib.contextmanager`` closes over the generator function;
    ``functools.singledispatch`` keeps a ``registry``; ``numpy.vectorize`` keeps ``pyfunc``)
    runs user code: that code belongs in the key. Empty for anything else.
    """
    try:
        return _held(v, 2)
    except Exception:  # an exotic object whose __dict__ or closure misbehaves
        return []


# --- what a function reaches -------------------------------------------------------------

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def global_chains(code: types.CodeType) -> list[tuple[str, ...]]:
    """Return every global name loaded, with the attribute chain read off it (``np.linalg.norm``),
    in this code and every nested code object."""
    chains: set[tuple[str, ...]] = set()
    for co in walk_code(code):
        cur: list[str] | None = None
        for ins in dis.get_instructions(co):
            op = ins.opname
            if op in _GLOBAL_OPS:
                if cur:
                    chains.add(tuple(cur))
                cur = [ins.argval]
            elif op in _ATTR_OPS and cur is not None:
                cur.append(ins.argval)
            elif cur is not None:
                chains.add(tuple(cur))
                cur = None
        if cur:
            chains.add(tuple(cur))
    return sorted(chains)


def resolve_chain(
    chain: tuple[str, ...],
    globs: dict[str, Any],
    edges: list[tuple[str, Any]],
    ext: list[tuple[str, str]],
    ns_checks: list[NsCheck],
    values: list[tuple[str, Any]] | None = None,
) -> None:
    """Follow a global name and its attribute chain; record what it reaches.

    User functions and classes go to ``edges``, library code to ``ext``, values (constants,
    containers, instances; ``cfg.SCALE`` of a user module) to ``values`` with their dotted
    label, and every binding looked up (also a missing one: defining it later must
    invalidate) to ``ns_checks``.
    """
    name = chain[0]
    v = globs.get(name, MISSING)
    if v is MISSING:
        # a builtin or not yet defined: defining it later must invalidate
        ns_checks.append((globs, name, MISSING))
        return
    label = name
    if isinstance(v, types.ModuleType):
        ns_checks.append((globs, name, v))
        mod = v
        if not _is_user_module(mod):
            ext.append((label, mod.__name__))
            return
        for attr in chain[1:]:
            d = mod.__dict__
            v = d.get(attr, MISSING)
            label = f"{label}.{attr}"
            if v is MISSING:
                ns_checks.append((d, attr, MISSING))
                return
            if isinstance(v, types.ModuleType):
                ns_checks.append((d, attr, v))
                if not _is_user_module(v):
                    ext.append((label, v.__name__))
                    return
                mod = v
                continue
            _record(label, v, d, attr, edges, ext, ns_checks, values)
            return
        return
    _record(label, v, globs, name, edges, ext, ns_checks, values)


def _record(
    label: str,
    v: Any,
    ns: Mapping[str, Any],
    key: str,
    edges: list[tuple[str, Any]],
    ext: list[tuple[str, str]],
    ns_checks: list[NsCheck],
    values: list[tuple[str, Any]] | None,
) -> None:
    kind, target = classify(v)
    if kind != "val":
        ns_checks.append((ns, key, v))
        (edges if kind == "dep" else ext).append((label, target))
    if values is not None and (kind == "val" or is_instance_state(v, target)):
        if kind == "val":
            ns_checks.append((ns, key, v))
        values.append((label, v))


def is_instance_state(v: Any, target: Any) -> bool:
    """Whether ``v`` is an instance of a user class (``classify`` gave its class): state."""
    return target is type(v) and not isinstance(v, type)


# --- imports inside a body -----------------------------------------------------------------

_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_DEREF", "STORE_GLOBAL"})
_LOCAL_LOADS = frozenset({"LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE", "LOAD_NAME"})


def import_chains(code: types.CodeType, package: str | None) -> list[tuple[str, ...]]:
    """Return ``(module, attr, ...)`` for what a body reaches through its own imports.

    ``import m`` then ``m.g(x)`` gives ``("m", "g")``; ``from m import g`` gives
    ``("m", "g")``; relative imports are resolved against ``package``.
    """
    chains: set[tuple[str, ...]] = set()
    bound: dict[str, tuple[str, ...]] = {}
    for co in walk_code(code):
        consts: list[Any] = [None, None]
        mod: str | None = None
        fromlist = False
        bind: tuple[str, ...] | None = None
        cur: list[str] | None = None
        for ins in dis.get_instructions(co):
            op = ins.opname
            if op == "LOAD_CONST":
                consts = [consts[1], ins.argval]
            elif op == "IMPORT_NAME":
                level = consts[0] if isinstance(consts[0], int) else 0
                fromlist = bool(consts[1])
                try:
                    mod = importlib.util.resolve_name("." * level + ins.argval, package)
                except (ImportError, ValueError):
                    mod = bind = None
                    continue
                chains.add((mod,))
                bind = (mod,) if fromlist else (mod.partition(".")[0],)
                continue
            elif op == "IMPORT_FROM" and mod is not None:
                # ``from m import g``: m.g; ``import a.b as c``: the submodule a.b itself
                bind = (mod, ins.argval) if fromlist else (mod,)
                chains.add(bind)
                continue
            elif op in _STORES:
                if bind is not None:
                    bound[ins.argval] = bind
                bind = None
            if op in _LOCAL_LOADS and ins.argval in bound:
                if cur:
                    chains.add(tuple(cur))
                cur = list(bound[ins.argval])
            elif op in _ATTR_OPS and cur is not None:
                cur.append(ins.argval)
            elif cur is not None:
                chains.add(tuple(cur))
                cur = None
        if cur:
            chains.add(tuple(cur))
    return sorted(chains)


def _user_spec(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        return False
    origin = getattr(spec, "origin", None) if spec is not None else None
    return isinstance(origin, str) and _is_user(name, origin)


def resolve_import(
    chain: tuple[str, ...],
    edges: list[tuple[str, Any]],
    ext: list[tuple[str, str]],
    ns_checks: list[NsCheck],
    values: list[tuple[str, Any]] | None = None,
) -> None:
    """Follow ``(module, attr, ...)`` from :func:`import_chains` like a global chain.

    A user module not imported yet is imported now (the body would import it when it runs):
    its code must be in the key before the first call, or an edit to it would go unseen.
    """
    modname = chain[0]
    mod = sys.modules.get(modname)
    if mod is None and _user_spec(modname):
        try:
            mod = importlib.import_module(modname)
        except Exception:
            mod = None
    ns_checks.append((sys.modules, modname, mod if mod is not None else MISSING))
    if not isinstance(mod, types.ModuleType):
        return
    key = f"import:{modname}"
    resolve_chain((key, *chain[1:]), {key: mod}, edges, ext, ns_checks, values)


def owner_class(f: types.FunctionType, ns_checks: list[NsCheck]) -> type | None:
    """Return the class a method is defined in, found from its qualname through its globals."""
    parts = f.__qualname__.split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return None
    globs = f.__globals__
    o = globs.get(parts[0])
    if not isinstance(o, type):
        return None
    checks: list[NsCheck] = [(globs, parts[0], o)]
    for p in parts[1:-1]:
        d = o.__dict__
        nxt = d.get(p)
        if not isinstance(nxt, type):
            return None
        checks.append((d, p, nxt))
        o = nxt
    member = o.__dict__.get(parts[-1])
    if not any(fn is f for _, fn in unwrap_member(member)):
        return None
    checks.append((o.__dict__, parts[-1], member))
    ns_checks.extend(checks)
    return o


def unwrap_member(v: Any) -> list[tuple[str, Any]]:
    """Return the code objects a class attribute holds (methods, properties, nested classes)."""
    if isinstance(v, (types.FunctionType, type)):
        return [("", v)]
    if isinstance(v, staticmethod):
        return [(":static", v.__func__)]
    if isinstance(v, classmethod):
        return [(":class", v.__func__)]
    if isinstance(v, property):
        return [(f":{k}", fn) for k in ("fget", "fset", "fdel") if (fn := getattr(v, k))]
    if isinstance(v, functools.cached_property):
        return [(":cached", v.func)]
    if isinstance(v, (functools.partialmethod, functools.singledispatchmethod)):
        return [(":wrapped", v.func)]
    return []


def is_code(v: Any) -> bool:
    """Return whether a closure cell holds pure code (hashed) rather than state (warned about)."""
    if isinstance(v, (type, types.ModuleType)):
        return True
    owner = getattr(v, "__self__", None) if callable(v) else None
    if owner is not None and not isinstance(owner, (type, types.ModuleType)):
        return False  # a bound method: its instance is state
    return callable(v) and not is_user_class(type(v))
