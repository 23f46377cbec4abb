"""Validation of what HTTP clients send: every check of :mod:`cashet.server.app`, and its limits.

Pure apart from decoding the opt-in remote-code payloads. Every problem raises
:class:`HTTPError` with a status and a message naming the field, which the server turns
into a JSON response; user text is quoted with ``!r`` and cut short, never echoed raw.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import linecache
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cashet._process import BoundedCache
from cashet.core.options import CALL_OPTIONS, DEFAULT_OPTIONS, TaskOptions
from cashet.models import TaskStatus

__all__ = [
    "DEFAULT_LOG_LIMIT",
    "MAX_ARG_DEPTH",
    "MAX_GC_DAYS",
    "MAX_LOG_LIMIT",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "REMOTE_FIELDS",
    "Submission",
    "GcQuery",
    "HTTPError",
    "LogQuery",
    "bad",
    "parse_gc",
    "parse_hash",
    "parse_json",
    "parse_log",
    "parse_submit",
]

#: ``GET /log?limit=`` lies in 1..MAX_LOG_LIMIT.
MAX_LOG_LIMIT = 1000
DEFAULT_LOG_LIMIT = 50
#: Upper bounds of the ``/submit`` options (a TTL past year 9999 would overflow ``datetime``).
MAX_RETRIES = 10
MAX_SECONDS = 1e9
#: JSON arguments nested deeper than this are refused (hashing recurses).
MAX_ARG_DEPTH = 64
#: ``/gc`` ages are at most this many days.
MAX_GC_DAYS = 36500
#: The legacy payloads that carry code; refused unless remote code is enabled.
REMOTE_FIELDS = ("func_source", "func_b64", "args_b64", "kwargs_b64")

_HASH = re.compile(r"^[0-9a-fA-F]{1,64}$")
_OPTION_FIELDS = ("cache", "force", "tags", "retries", "timeout", "ttl")
#: Each option's ``Client.submit`` keyword (``None`` there means "not given", as here).
_KEYWORDS = {field: f"_{field}" for field in _OPTION_FIELDS}
_SUBMIT_FIELDS = frozenset({"task", "args", "kwargs", *_OPTION_FIELDS})
_REMOTE_ONLY_FIELDS = frozenset({*REMOTE_FIELDS, "func_name"})
_GC_FIELDS = frozenset({"older_than_days", "max_size_bytes", "max_size"})


class HTTPError(Exception):
    """An error response: status and JSON body ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message, **extra}


def bad(message: str, field: str | None = None) -> HTTPError:
    """A 400 naming the field at fault."""
    return HTTPError(400, message) if field is None else HTTPError(400, message, field=field)


def _quote(text: str, limit: int = 80) -> str:
    return repr(text[:limit])


def parse_hash(value: str, field: str = "hash") -> str:
    """A commit or blob hash (or prefix) from a path: 1-64 hex digits, lowercased."""
    if not _HASH.match(value):
        raise bad(f"{field} must be 1-64 hexadecimal digits, not {_quote(value)}", field)
    return value.lower()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (``NaN``/``Infinity`` refused)."""
    if empty_ok and not body.strip():
        return {}
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise bad("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad(f"the body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    return data


def _unknown_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise bad(f"unknown field {_quote(unknown[0])}", unknown[0][:80])


# --- /submit ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated ``/submit``: the function, its arguments and the call-site options."""

    name: str
    func: Callable[..., Any]
    base: TaskOptions
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: Those of ``cache``, ``force``, ``tags``, ``retries``, ``timeout``, ``ttl`` given.
    options: dict[str, Any]
    remote: bool = False

    def submit_kwargs(self) -> dict[str, Any]:
        """The options given, as ``Client.submit`` keywords (``_cache=...``)."""
        return {_KEYWORDS[k]: v for k, v in self.options.items()}

    def check_signature(self) -> None:
        """Refuse (400) arguments the function cannot take, before it runs.

        Not needed for a cache hit: a completed commit means these arguments were taken.
        """
        if not self.remote:
            _check_signature(self.name, self.func, list(self.args), self.kwargs)


def parse_submit(
    raw: bytes,
    find_task: Callable[[str], Callable[..., Any] | None],
    task_names: Callable[[], list[str]],
    *,
    allow_remote_code: bool,
) -> Submission:
    """Validate a ``/submit`` body into a :class:`Submission`.

    Remote-code fields are refused (403) before anything is decoded unless
    ``allow_remote_code``; the caller has checked the token by then. Whether the arguments
    fit the task's signature is checked by :meth:`Submission.check_signature` before it runs.
    """
    body = parse_json(raw)
    remote = [f for f in REMOTE_FIELDS if f in body]
    if remote and not allow_remote_code:
        code = any(f in body for f in ("func_source", "func_b64"))
        raise HTTPError(
            403,
            "remote code execution is disabled" if code else "serialized args are disabled",
            detail=f"remote code ({', '.join(remote)}) is disabled on this server; submit a "
            "registered task by name with JSON args",
            field=remote[0],
        )
    allowed = (_SUBMIT_FIELDS | _REMOTE_ONLY_FIELDS) if allow_remote_code else _SUBMIT_FIELDS
    _unknown_fields(body, allowed)
    options = _parse_options(body)
    if remote:
        return _remote_call(body, options)
    name = body.get("task")
    if not isinstance(name, str) or not name:
        raise bad("task must be the name of a registered task", "task")
    func = find_task(name)
    if func is None:
        raise HTTPError(
            404, f"unknown task {_quote(name, 200)}", field="task", tasks=task_names()[:200]
        )
    args = body.get("args", [])
    if not isinstance(args, list):
        raise bad("args must be an array", "args")
    kwargs = body.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise bad("kwargs must be an object", "kwargs")
    _check_kwargs(kwargs)
    if raw.count(b"[") + raw.count(b"{") > MAX_ARG_DEPTH:  # else too few brackets to nest
        _check_depth(args, "args")
        _check_depth(kwargs, "kwargs")
    inner, base = unwrap(func)
    return Submission(name, inner, base, tuple(args), kwargs, options)


def _check_kwargs(kwargs: Mapping[str, Any]) -> None:
    clash = sorted(k for k in kwargs if k in CALL_OPTIONS)
    if clash:
        raise bad(
            f"kwargs may not contain {clash[0]!r}: give the option as the field {clash[0][1:]!r}",
            "kwargs",
        )


def _check_depth(value: Any, field: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_ARG_DEPTH:
            raise bad(f"{field} is nested deeper than {MAX_ARG_DEPTH} levels", field)
        if isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())


def _opt_bool(body: Mapping[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is not None and not isinstance(value, bool):
        raise bad(f"{field} must be true, false or null", field)
    return value


def _opt_seconds(body: Mapping[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_SECONDS
    ):
        raise bad(f"{field} must be a number of seconds in (0, {MAX_SECONDS:g}] or null", field)
    return float(value)


def _parse_options(body: Mapping[str, Any]) -> dict[str, Any]:
    retries = body.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES
    ):
        raise bad(f"retries must be an integer in 0..{MAX_RETRIES} or null", "retries")
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(k and isinstance(v, str) for k, v in tags.items())
    ):
        raise bad("tags must be an object of non-empty keys to string values", "tags")
    options = {
        "cache": _opt_bool(body, "cache"),
        "force": _opt_bool(body, "force"),
        "tags": tags,
        "retries": retries,
        "timeout": _opt_seconds(body, "timeout"),
        "ttl": _opt_seconds(body, "ttl"),
    }
    return {k: v for k, v in options.items() if v is not None}


#: Signatures of the registered functions, computed once each.
_SIGNATURES: BoundedCache[Any, inspect.Signature | None] = BoundedCache(4096)


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return _SIGNATURES[func]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable object
        return None
    try:
        sig: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    _SIGNATURES.put(func, sig)
    return sig


def _check_signature(
    name: str, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Refuse (400) arguments the task cannot take, before anything runs or is recorded."""
    sig = _signature(func)
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise bad(f"arguments do not match task {_quote(name)}: {exc}", "args") from None


def unwrap(func: Any) -> tuple[Callable[..., Any], TaskOptions]:
    """A registered task's function and ``@task`` options (a plain callable: defaults)."""
    options = getattr(func, "options", None)
    inner = getattr(func, "func", None)
    if isinstance(options, TaskOptions) and callable(inner):
        return inner, options
    return func, DEFAULT_OPTIONS


# --- remote code (opt-in, token required) -------------------------------------------------------


def _remote_call(body: Mapping[str, Any], options: dict[str, Any]) -> Submission:
    """Decode the legacy remote-code payload. This runs client-supplied code."""
    import dill

    if "task" in body:
        raise bad("give either task or remote code, not both", "task")
    source, b64 = body.get("func_source"), body.get("func_b64")
    if (source is None) == (b64 is None):
        raise bad("give exactly one of func_source and func_b64", "func_source")
    if source is not None:
        func = _function_from_source(source, body.get("func_name"))
    else:
        func = _dill_field(dill, body, "func_b64")
        if not callable(func):
            raise bad("func_b64 does not decode to a callable", "func_b64")
    args: Any = body.get("args", [])
    kwargs: Any = body.get("kwargs", {})
    if "args_b64" in body:
        args = _dill_field(dill, body, "args_b64")
    if "kwargs_b64" in body:
        kwargs = _dill_field(dill, body, "kwargs_b64")
    if not isinstance(args, list | tuple):
        raise bad("args must be an array (or args_b64 a pickled tuple or list)", "args")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise bad("kwargs must be an object (or kwargs_b64 a pickled dict)", "kwargs")
    _check_kwargs(kwargs)
    inner, base = unwrap(func)
    name = str(getattr(inner, "__qualname__", None) or "remote")
    return Submission(name, inner, base, tuple(args), dict(kwargs), options, remote=True)


def _dill_field(dill: Any, body: Mapping[str, Any], field: str) -> Any:
    text = body[field]
    if not isinstance(text, str):
        raise bad(f"{field} must be a base64 string", field)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{field} is not valid base64", field) from None
    try:
        return dill.loads(data)
    except Exception as exc:
        raise bad(f"{field} does not decode ({type(exc).__name__})", field) from None


def _function_from_source(source: Any, name: Any) -> Callable[..., Any]:
    """Define the functions of ``source``; return ``name`` (default: the last one defined)."""
    if not isinstance(source, str) or not source.strip():
        raise bad("func_source must be Python source text", "func_source")
    if name is not None and (not isinstance(name, str) or not name):
        raise bad("func_name must be a non-empty string", "func_name")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    filename = f"<cashet-remote-{digest}>"
    # Registered so that inspect.getsource, hence the function's identity, sees the source.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "cashet_remote"}
    try:
        exec(compile(source, filename, "exec"), namespace)
    except SyntaxError as exc:
        raise bad(
            f"func_source does not compile: {exc.msg} (line {exc.lineno})", "func_source"
        ) from None
    except Exception as exc:
        raise bad(f"func_source failed to run ({type(exc).__name__})", "func_source") from None
    if name is not None:
        func = namespace.get(name)
    else:
        defined = [v for v in namespace.values() if inspect.isfunction(v)]
        func = defined[-1] if defined else None
    if not callable(func):
        raise bad("func_source defines no such function", "func_name")
    return func  # type: ignore[no-any-return]


# --- /log and /gc ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogQuery:
    func: str | None
    status: str | None
    tags: dict[str, str | None] | None
    limit: int


def parse_log(query: Any) -> LogQuery:
    """``?func=&status=&tag=K=V&tag=K&limit=`` (a Starlette ``QueryParams``)."""
    status = query.get("status")
    if status is not None:
        valid = [s.value for s in TaskStatus.recorded()]
        if status not in valid:
            raise HTTPError(
                400, f"status must be one of {', '.join(valid)}", field="status", valid=valid
            )
    raw = query.get("limit")
    limit = DEFAULT_LOG_LIMIT
    if raw is not None:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not (
            1 <= int(raw) <= MAX_LOG_LIMIT
        ):
            raise bad(f"limit must be an integer in 1..{MAX_LOG_LIMIT}", "limit")
        limit = int(raw)
    tags: dict[str, str | None] = {}
    for text in query.getlist("tag"):
        key, sep, value = text.partition("=")
        if not key:
            raise bad(f"tag must be KEY=VALUE or KEY, not {_quote(text)}", "tag")
        tags[key] = value if sep else None
    return LogQuery(query.get("func") or None, status, tags or None, limit)


@dataclass(frozen=True, slots=True)
class GcQuery:
    older_than_days: float
    max_size_bytes: int | None


def parse_gc(body: Mapping[str, Any]) -> GcQuery:
    """``{"older_than_days": 30, "max_size_bytes": null}`` (both optional).

    ``max_size`` (the published cashet's name) is accepted for ``max_size_bytes``.
    """
    _unknown_fields(body, _GC_FIELDS)
    days = body.get("older_than_days", 30)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= MAX_GC_DAYS:
        raise bad(f"older_than_days must be a number in 0..{MAX_GC_DAYS}", "older_than_days")
    sizes = []
    for field in ("max_size_bytes", "max_size"):
        if field not in body:
            continue
        size = body[field]
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**63
        ):
            raise bad(f"{field} must be a non-negative integer or null", field)
        sizes.append(size)
    if len(sizes) == 2 and sizes[0] != sizes[1]:
        raise bad("give max_size_bytes or max_size (its other name), not both", "max_size")
    size = sizes[0] if sizes else None
    return GcQuery(float(days), size)
