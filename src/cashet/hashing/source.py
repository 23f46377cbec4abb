"""Where a function's source is and what it means: locating and AST-normalizing source.

Source comes from the code's file through ``linecache`` (what ``inspect.getsource`` reads,
and where IPython puts cells), then ``inspect``, then ``dill`` (REPL history); it is used
only when it compiles to the very code object being hashed, so a module edited on disk but
not reloaded, or a stale history entry, cannot lend its text to the running code. Without
trustworthy source the identity falls back to the bytecode (:func:`code_digest`: ``co_code``,
constants, names, recursively), which is stable for one Python version.

The AST digest ignores positions, comments, docstrings, formatting and the decorators of
the function itself.
"""

from __future__ import annotations
import __future__

import ast
import functools
import inspect
import linecache
import operator
import sys
import textwrap
import types
from dataclasses import dataclass
from typing import Any

from blake3 import blake3

from cashet._process import BoundedCache
from cashet.hashing.values import hash_value

__all__ = ["ast_digest", "class_source", "code_digest", "locate", "walk_code"]


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


def ast_digest(node: ast.AST) -> bytes:
    """Return the digest of a canonical dump of ``node`` (see :func:`_dump`)."""
    out: list[str] = []
    _dump(node, out, True)
    return blake3("\x00".join(out).encode("utf-8", "surrogatepass")).digest()


# __future__ flags show in co_flags but not in a function's own bytecode; IPython and
# compile() pass them on from earlier code, so they must not make the same code differ
_FUTURE_FLAGS = functools.reduce(
    operator.or_, (getattr(__future__, n).compiler_flag for n in __future__.all_feature_names)
)


def code_digest(code: types.CodeType) -> bytes:
    """Bytecode identity, for functions without source (exec, lost notebook history)."""
    consts = tuple(
        ("code", code_digest(c)) if isinstance(c, types.CodeType) else ("const", c)
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


_FILES: BoundedCache[str, _FileIndex] = BoundedCache(256)


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
    idx = _FileIndex(lines, text, tree, by_line)
    _FILES.put(filename, idx)
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
        for c in walk_code(top):
            codes.setdefault((c.co_firstlineno, c.co_name), []).append(c)
        idx.codes = codes
    want = code_digest(code)
    return any(
        code_digest(c) == want for c in idx.codes.get((code.co_firstlineno, code.co_name), [])
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
    want = code_digest(code)
    if not any(c.co_name == code.co_name and code_digest(c) == want for c in walk_code(compiled)):
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


def locate(f: types.FunctionType) -> tuple[ast.AST, str] | None:
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


def walk_code(code: types.CodeType) -> list[types.CodeType]:
    """Return ``code`` and every code object nested in it (functions, lambdas, classes)."""
    out = [code]
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out.extend(walk_code(c))
    return out


def class_source(cls: type) -> str:
    """Return the dedented source of a class, ``""`` when there is none."""
    try:
        return textwrap.dedent(inspect.getsource(cls))
    except Exception:
        return ""
