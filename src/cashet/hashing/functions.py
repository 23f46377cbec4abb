"""Function identity: what a task function *is*, as a BLAKE3 digest.

A function's identity covers its AST-normalized source (comments, docstrings, formatting
and the decorators of the function itself ignored), its qualified name, its defaults and
keyword defaults, and — recursively and cycle-safe — every user-code function, class and
method it reaches: bare global names (also in nested code: comprehensions, inner functions,
lambdas), ``module.attr`` chains into user modules, classes (all their methods), the class a
method belongs to, and function-valued closure cells. Library code (builtins, the standard
library, site-packages, cashet itself) is referenced by ``module.qualname`` only. Closure
cells holding values are not hashed and raise a ``ClosureWarning`` once per function
(except in exec-generated code such as dataclasses' ``__init__``, whose cells — defaults,
sentinels — are hashed instead).

Source comes from the code's file through ``linecache`` (what ``inspect.getsource`` reads,
and where IPython puts cells), then ``inspect``, then ``dill`` (REPL history); it is used
only when it compiles to the very code object being hashed, so a module edited on disk but
not reloaded, or a stale history entry, cannot lend its text to the running code. Without
trustworthy source the identity falls back to the bytecode (``co_code``, constants, names,
recursively), which is stable for one Python version.

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
"""

from __future__ import annotations
import __future__

import ast
import dis
import functools
import inspect
import linecache
import operator
import os
import sys
import sysconfig
import textwrap
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from blake3 import blake3

from cashet.errors import ClosureWarning
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


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()

NsCheck = tuple[Mapping[str, Any], str, Any]
AttrCheck = tuple[Any, str, Any]


@dataclass(slots=True)
class _Node:
    """One function or class of the dependency graph (identity of its own code only)."""

    local: bytes
    edges: list[tuple[str, Any]] = field(default_factory=list)
    ns_checks: list[NsCheck] = field(default_factory=list)
    attr_checks: list[AttrCheck] = field(default_factory=list)
    source: str = ""
    closure_values: tuple[str, ...] = ()


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


def _is_user_function(f: types.FunctionType) -> bool:
    return _is_user(f.__module__ or "", f.__code__.co_filename)


def _is_user_class(cls: type) -> bool:
    mod = getattr(cls, "__module__", None) or ""
    if not isinstance(mod, str):
        return False
    # Where the class body's own functions were compiled says where the class was written.
    # The module's file can mislead: a class made in a notebook cell or by exec lives in
    # ``__main__``, which under ``python -m tool`` is the tool's file in site-packages.
    for attr in vars(cls).values():
        func = getattr(attr, "__func__", attr)  # staticmethod / classmethod
        if isinstance(func, types.FunctionType):
            return _is_user(mod, func.__code__.co_filename)
    file = getattr(sys.modules.get(mod), "__file__", None) or ""
    return _is_user(mod, file)


def _is_user_module(mod: types.ModuleType) -> bool:
    return _is_user(mod.__name__, getattr(mod, "__file__", None) or "")


def _qualname(obj: Any) -> str:
    mod = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(name, str):
        tp = type(obj)
        return f"{tp.__module__}.{tp.__qualname__}()"
    return f"{mod if isinstance(mod, str) else ''}.{name}"


def _classify(v: Any) -> tuple[str, Any]:
    """('dep', node object) | ('ext', 'module.qualname') | ('val', None)."""
    if isinstance(v, types.FunctionType):
        return ("dep", v) if _is_user_function(v) else ("ext", _qualname(v))
    if isinstance(v, type):
        return ("dep", v) if _is_user_class(v) else ("ext", _qualname(v))
    if isinstance(v, types.ModuleType):
        return ("ext", v.__name__)
    if isinstance(v, (types.MethodType, staticmethod, classmethod)):
        return _classify(v.__func__)
    if isinstance(v, functools.partial):
        kind, _ = _classify(v.func)
        return ("dep", v) if kind == "dep" else ("ext", _qualname(v.func))
    tp = type(v)
    if _is_user_class(tp):  # an instance of a user class: its methods are code we reach
        return ("dep", tp)
    if callable(v):
        wrapped = (getattr(v, "__dict__", None) or {}).get("__wrapped__")
        if wrapped is not None:  # lru_cache and similar C wrappers
            kind, target = _classify(wrapped)
            if kind == "dep":
                return kind, target
        return ("ext", _qualname(v))
    return ("val", None)


# --- source ---------------------------------------------------------------------------

_DOC_HOLDERS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)
_SKIP_FIELDS = frozenset({"ctx", "type_comment", "kind"})


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _dump(node: ast.AST, out: list[str], top: bool) -> None:
    """A canonical dump: like ``ast.dump`` without positions, docstrings and (at the top)
    decorators. Fields are named and empty ones left out, so a field added by a newer
    Python (``type_params`` in 3.12) does not change the identity of code not using it."""
    out.append(type(node).__name__)
    for name in node._fields:
        if name in _SKIP_FIELDS or (top and name == "decorator_list"):
            continue
        value = getattr(node, name, None)
        if value is None or (isinstance(value, list) and not value):
            continue
        out.append(f"{name}=")
        if isinstance(value, list):
            if name == "body" and isinstance(node, _DOC_HOLDERS) and _is_docstring(value[0]):
                value = value[1:]
            out.append(f"[{len(value)}")
            for item in value:
                if isinstance(item, ast.AST):
                    _dump(item, out, False)
                else:
                    out.append(f"{type(item).__name__}:{item!r}")
            out.append("]")
        elif isinstance(value, ast.AST):
            _dump(value, out, False)
        else:  # identifiers and constants; repr of these builtins is exact
            out.append(f"{type(value).__name__}:{value!r}")
    out.append(")")


def _ast_digest(node: ast.AST) -> bytes:
    out: list[str] = []
    _dump(node, out, True)
    return blake3("\x00".join(out).encode("utf-8", "surrogatepass")).digest()


# __future__ flags show in co_flags but not in a function's own bytecode; IPython and
# compile() pass them on from earlier code, so they must not make the same code differ
_FUTURE_FLAGS = functools.reduce(
    operator.or_, (getattr(__future__, n).compiler_flag for n in __future__.all_feature_names)
)


def _code_digest(code: types.CodeType) -> bytes:
    """Bytecode identity, for functions without source (exec, lost notebook history)."""
    consts = tuple(
        ("code", _code_digest(c)) if isinstance(c, types.CodeType) else ("const", c)
        for c in code.co_consts
    )
    parts = (
        sys.version_info[:2],  # bytecode is per Python version
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & ~_FUTURE_FLAGS,
        code.co_code,
        code.co_exceptiontable,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        consts,
    )
    return bytes.fromhex(hash_value(parts))


@dataclass(slots=True)
class _FileIndex:
    lines: list[str]
    text: str
    tree: ast.Module
    # first line (decorator included) -> defs/lambdas starting there
    by_line: dict[int, list[ast.AST]]
    # (co_firstlineno, co_name) -> code objects compiled from this text, built on demand
    codes: dict[tuple[int, str], list[types.CodeType]] | None = None


_FILES: dict[str, _FileIndex] = {}


def _file_index(filename: str, globs: dict[str, Any]) -> _FileIndex | None:
    linecache.checkcache(filename)  # like inspect: never trust a stale copy of an edited file
    lines = linecache.getlines(filename, globs)
    if not lines:
        return None
    idx = _FILES.get(filename)
    if idx is not None and idx.lines is lines:
        return idx
    text = "".join(lines)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])  # an edited, broken file: nothing matches
    by_line: dict[int, list[ast.AST]] = {}
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([d.lineno for d in n.decorator_list] + [n.lineno])
            by_line.setdefault(first, []).append(n)
        elif isinstance(n, ast.Lambda):
            by_line.setdefault(n.lineno, []).append(n)
    if len(_FILES) >= 256:
        _FILES.clear()
    idx = _FILES[filename] = _FileIndex(lines, text, tree, by_line)
    return idx


def _matches_file(idx: _FileIndex, code: types.CodeType) -> bool:
    """Whether ``code`` is what this text compiles to: a module edited on disk but not
    reloaded must not lend its new source to the old, still running, code."""
    if idx.codes is None:
        codes: dict[tuple[int, str], list[types.CodeType]] = {}
        try:
            top = compile(idx.tree, code.co_filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            top = compile("", code.co_filename, "exec")
        for c in _walk_code(top):
            codes.setdefault((c.co_firstlineno, c.co_name), []).append(c)
        idx.codes = codes
    want = _code_digest(code)
    return any(
        _code_digest(c) == want for c in idx.codes.get((code.co_firstlineno, code.co_name), [])
    )


def _pick_lambda(cands: list[ast.Lambda], code: types.CodeType) -> ast.Lambda | None:
    """The lambda whose body holds the code's instructions (several may share a line)."""
    if len(cands) == 1:
        return cands[0]
    spans = [
        (ln, col, eln, ecol)
        for ln, eln, col, ecol in code.co_positions()
        if ln is not None and eln is not None and col is not None and ecol is not None
        and (ln, col) != (eln, ecol)
    ]  # fmt: skip
    scored = []
    for n in cands:
        b = n.body
        start = (b.lineno, b.col_offset)
        end = (b.end_lineno or b.lineno, b.end_col_offset or 0)
        hits = sum(1 for ln, col, eln, ecol in spans if (ln, col) >= start and (eln, ecol) <= end)
        size = (end[0] - start[0], end[1] - start[1])
        scored.append(((-hits, size), n))
    scored.sort(key=lambda t: t[0])
    best_key, best = scored[0]
    if best_key[0] == 0 or (len(scored) > 1 and scored[1][0] == best_key):
        return None
    return best


_STALE: Any = object()


def _from_file(code: types.CodeType, globs: dict[str, Any]) -> Any:
    """(node, source) from the code's file, ``None`` without a file, ``_STALE`` when the
    file's text is not what this code was compiled from."""
    idx = _file_index(code.co_filename, globs)
    if idx is None:
        return None
    if not _matches_file(idx, code):
        return _STALE
    cands = idx.by_line.get(code.co_firstlineno, [])
    if code.co_name == "<lambda>":
        lam = _pick_lambda([n for n in cands if isinstance(n, ast.Lambda)], code)
        if lam is None:
            return _STALE
        return lam, ast.get_source_segment(idx.text, lam) or ""
    defs = [
        n
        for n in cands
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == code.co_name
    ]
    if len(defs) != 1:
        return _STALE
    node = defs[0]
    text = textwrap.dedent("".join(idx.lines[code.co_firstlineno - 1 : node.end_lineno]))
    return node, text


def _from_text(src: str, code: types.CodeType) -> tuple[ast.AST, str] | None:
    """Find the function in a snippet (``inspect``/``dill``) — only if the snippet compiles
    to this very code: REPL history may hold another definition of the same name."""
    src = textwrap.dedent(src)
    try:
        tree = ast.parse(src)
        compiled = compile(tree, code.co_filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    want = _code_digest(code)
    if not any(c.co_name == code.co_name and _code_digest(c) == want for c in _walk_code(compiled)):
        return None
    if code.co_name == "<lambda>":
        lams = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        if len(lams) != 1:
            return None  # ambiguous without positions: use the bytecode
        return lams[0], ast.get_source_segment(src, lams[0]) or src
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == code.co_name:
            return n, src
    return None


def _dill_source(f: Any) -> str:
    import dill.source

    return dill.source.getsource(f)  # type: ignore[no-any-return]


def _locate(f: types.FunctionType) -> tuple[ast.AST, str] | None:
    """Tiered: the file via linecache (what inspect.getsource reads) when it compiles to
    this very code, then ``inspect.getsource``, then ``dill.source.getsource``
    (interactive history); ``None`` means: use the bytecode."""
    code = f.__code__
    try:
        found = _from_file(code, f.__globals__)
    except Exception:
        found = None
    if found is _STALE:
        return None  # the other tiers would read the same mismatching text
    if found is not None:
        return found  # type: ignore[no-any-return]
    if code.co_filename == "<string>":
        return None  # exec'd code: no file, no history to look in
    for getter in (inspect.getsource, _dill_source):
        try:
            src = getter(f)
        except Exception:
            continue
        found = _from_text(src, code)
        if found is not None:
            return found
    return None


# --- dependency discovery -----------------------------------------------------------------

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def _walk_code(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out.extend(_walk_code(c))
    return out


def _global_chains(code: types.CodeType) -> list[tuple[str, ...]]:
    """Every global name loaded, with the attribute chain read off it (``np.linalg.norm``),
    in this code and every nested code object."""
    chains: set[tuple[str, ...]] = set()
    for co in _walk_code(code):
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


def _resolve_chain(
    chain: tuple[str, ...],
    globs: dict[str, Any],
    edges: list[tuple[str, Any]],
    ext: list[tuple[str, str]],
    ns_checks: list[NsCheck],
) -> None:
    name = chain[0]
    v = globs.get(name, _MISSING)
    if v is _MISSING:
        # a builtin or not yet defined: defining it later must invalidate
        ns_checks.append((globs, name, _MISSING))
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
            v = d.get(attr, _MISSING)
            label = f"{label}.{attr}"
            if v is _MISSING:
                ns_checks.append((d, attr, _MISSING))
                return
            if isinstance(v, types.ModuleType):
                ns_checks.append((d, attr, v))
                if not _is_user_module(v):
                    ext.append((label, v.__name__))
                    return
                mod = v
                continue
            kind, target = _classify(v)
            if kind != "val":
                ns_checks.append((d, attr, v))
                (edges if kind == "dep" else ext).append((label, target))
            return
        return
    kind, target = _classify(v)
    if kind != "val":
        ns_checks.append((globs, name, v))
        (edges if kind == "dep" else ext).append((label, target))


def _owner_class(f: types.FunctionType, ns_checks: list[NsCheck]) -> type | None:
    """The class a method is defined in, found from its qualname through its globals."""
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
    if not any(fn is f for _, fn in _unwrap_member(member)):
        return None
    checks.append((o.__dict__, parts[-1], member))
    ns_checks.extend(checks)
    return o


def _unwrap_member(v: Any) -> list[tuple[str, Any]]:
    """The code objects a class attribute holds (methods, properties, nested classes)."""
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


def _is_code(v: Any) -> bool:
    """Whether a closure cell holds pure code (hashed) rather than state (warned about)."""
    if isinstance(v, (type, types.ModuleType)):
        return True
    owner = getattr(v, "__self__", None) if callable(v) else None
    if owner is not None and not isinstance(owner, (type, types.ModuleType)):
        return False  # a bound method: its instance is state
    return callable(v) and not _is_user_class(type(v))


def _safe_hash(v: Any) -> str:
    try:
        return hash_value(v)
    except (TypeError, RecursionError):  # a lock as a default; f.__defaults__ = (f,)
        return f"unhashable:{type(v).__module__}.{type(v).__qualname__}"


def _function_node(f: types.FunctionType) -> _Node:
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
    found = _locate(f)
    if found is not None:
        node, source = found
        code_id = ("ast", _ast_digest(node))
    else:
        source = ""
        code_id = ("bytecode", _code_digest(code))
    for chain in _global_chains(code):
        _resolve_chain(chain, globs, edges, ext, ns_checks)
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
        kind, target = _classify(v)
        if kind != "val":
            attr_checks.append((cell, "cell_contents", v))
            (edges if kind == "dep" else ext).append((f"closure:{name}", target))
        if _is_code(v):
            continue
        digest = _safe_hash(v) if generated else "unhashable"
        if digest.startswith("unhashable"):
            plain.append(name)  # an object's state is a value, even when it is callable
        else:
            hashed_cells.append((name, digest))
    owner = _owner_class(f, ns_checks)
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
    plain_values = tuple(plain) if _is_user_function(f) else ()
    return _selfless(
        _Node(bytes.fromhex(local), edges, ns_checks, attr_checks, source, plain_values), f
    )


def _class_node(cls: type) -> _Node:
    d = cls.__dict__
    edges: list[tuple[str, Any]] = []
    ext: list[tuple[str, str]] = []
    ns_checks: list[NsCheck] = []
    attr_checks: list[AttrCheck] = [(cls, "__bases__", cls.__bases__)]
    members: list[str] = []
    for name in sorted(k for k in d if isinstance(k, str)):
        v = d[name]
        held = _unwrap_member(v)
        if not held:
            continue  # class-level values are not hashed, like global values
        ns_checks.append((d, name, v))
        for suffix, fn in held:
            label = f"{name}{suffix}"
            members.append(label)
            kind, target = _classify(fn)
            if kind == "dep":
                edges.append((label, target))
            elif kind == "ext":
                ext.append((label, target))
    for i, base in enumerate(cls.__bases__):
        kind, target = _classify(base)
        if kind == "dep":
            edges.append((f"base{i}", target))
        else:
            ext.append((f"base{i}", _qualname(base)))
    local = hash_value(("class", cls.__qualname__, tuple(members), tuple(sorted(ext))))
    return _selfless(_Node(bytes.fromhex(local), edges, ns_checks, attr_checks), cls)


def _partial_node(p: functools.partial[Any]) -> _Node:
    kind, target = _classify(p.func)
    ext = (target,) if kind == "ext" else ()
    local = hash_value(("partial", _safe_hash(p.args), _safe_hash(p.keywords), ext))
    return _Node(bytes.fromhex(local), [("func", target)] if kind == "dep" else [])


def _compute_node(obj: Any) -> _Node:
    if isinstance(obj, types.FunctionType):
        return _function_node(obj)
    if isinstance(obj, type):
        return _class_node(obj)
    if isinstance(obj, functools.partial):
        return _partial_node(obj)
    raise TypeError(f"not a function or class: {type(obj).__qualname__}")  # pragma: no cover


# --- caches -------------------------------------------------------------------------------

# Stands for "the object this entry is about" inside cached entries, so that an entry
# never holds its own key alive (a closure made per call must be freed, not cached forever).
_SELF: Any = _Missing()


def _selfless(node: _Node, obj: Any) -> _Node:
    def s(v: Any) -> Any:
        return _SELF if v is obj else v

    node.edges = [(label, s(t)) for label, t in node.edges]
    node.ns_checks = [(d, k, s(v)) for d, k, v in node.ns_checks]
    node.attr_checks = [(s(o), a, s(v)) for o, a, v in node.attr_checks]
    return node


def _valid(ns_checks: Any, attr_checks: Any, obj: Any) -> bool:
    """Whether every binding still holds (``_SELF`` meaning ``obj``): a few dict lookups."""
    for ns, key, exp in ns_checks:
        v = ns.get(key, _MISSING)
        if v is not exp and (exp is not _SELF or v is not obj):
            return False
    for o, attr, exp in attr_checks:
        v = getattr(obj if o is _SELF else o, attr, _MISSING)
        if v is not exp and (exp is not _SELF or v is not obj):
            return False
    return True


_NODES: dict[int, tuple[weakref.ref[Any], _Node]] = {}
# id(func) -> (weakref, identity, ns checks, attr checks)
_IdEntry = tuple[weakref.ref[Any], FunctionIdentity, tuple[NsCheck, ...], tuple[AttrCheck, ...]]
_IDS: dict[int, _IdEntry] = {}
_WARNED: weakref.WeakSet[Any] = weakref.WeakSet()
_CACHE_MAX = 50_000


def _remember(cache: dict[int, Any], obj: Any, *entry: Any) -> None:
    key = id(obj)

    def _drop(r: weakref.ref[Any]) -> None:
        hit = cache.get(key)
        if hit is not None and hit[0] is r:
            cache.pop(key, None)

    try:
        r = weakref.ref(obj, _drop)
    except TypeError:
        return
    if len(cache) >= _CACHE_MAX:  # a bound: entries are cheap to recompute
        cache.clear()
    cache[key] = (r, *entry)


def _get_node(obj: Any) -> _Node:
    hit = _NODES.get(id(obj))
    if hit is not None and hit[0]() is obj and _valid(hit[1].ns_checks, hit[1].attr_checks, obj):
        return hit[1]
    node = _compute_node(obj)
    _remember(_NODES, obj, node)
    return node


def _graph_identity(root: Any) -> tuple[str, list[tuple[Any, _Node]]]:
    """Identity of ``root`` from the graph of everything it reaches."""
    nodes: dict[int, tuple[Any, _Node]] = {}
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

    def entry(o: Any, n: _Node) -> bytes:
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


def _warn_closures(members: list[tuple[Any, _Node]]) -> None:
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


def _class_source(cls: type) -> str:
    try:
        return textwrap.dedent(inspect.getsource(cls))
    except Exception:
        return ""


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
        return FunctionIdentity(digest, func.__qualname__, func.__module__, _class_source(func))
    if isinstance(func, (types.MethodType, staticmethod, classmethod)):
        return function_identity(func.__func__)
    if isinstance(func, functools.partial):
        inner = function_identity(func.func)
        digest = hash_value(("partial", inner.hash, func.args, func.keywords))
        return FunctionIdentity(digest, inner.name, inner.module, inner.source)
    if not callable(func):
        raise TypeError(f"{type(func).__qualname__} object is not callable")
    wrapped = (getattr(func, "__dict__", None) or {}).get("__wrapped__")
    if wrapped is not None and not _is_user_class(type(func)):
        return function_identity(wrapped)  # lru_cache & co: same results as the function
    tp = type(func)
    call = tp.__dict__.get("__call__") or next(
        (c.__dict__["__call__"] for c in tp.__mro__ if "__call__" in c.__dict__), None
    )
    if isinstance(call, types.FunctionType):  # a callable object: class code + its state
        cls_digest, _ = _graph_identity(tp)
        digest = hash_value(("callable", cls_digest, hash_value(func)))
        source = _locate(call)
        return FunctionIdentity(digest, tp.__qualname__, tp.__module__, source[1] if source else "")
    name = _qualname(func)
    return FunctionIdentity(
        hash_value(("builtin", name)),
        getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or name,
        getattr(func, "__module__", None) or "",
        "",
    )
