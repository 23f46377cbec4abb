"""The hand-written OpenAPI 3.1 document of the HTTP server (``GET /openapi.json``).

Kept beside :mod:`cashet.server.app` and checked against it by ``tests/test_server_schema.py``
(schemathesis: no 5xx, no response contradicting this document). Limits come from the
server module's constants, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cashet._version import __version__
from cashet.core.options import CALL_OPTIONS
from cashet.server.input import MAX_GC_DAYS, MAX_LOG_LIMIT, MAX_RETRIES, MAX_SECONDS

__all__ = ["openapi_document"]

_HASH = {"type": "string", "pattern": "^[0-9a-fA-F]{1,64}$"}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_NULL_STR = {"type": ["string", "null"]}
_ANY: dict[str, Any] = {}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": _HASH,
    }


def _schemas(tasks: Sequence[str], remote_code: bool) -> dict[str, Any]:
    seconds = {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": MAX_SECONDS}
    task_name: dict[str, Any] = {"type": "string", "minLength": 1}
    if tasks:
        task_name["examples"] = list(tasks)
    submit: dict[str, Any] = {
        "type": "object",
        "properties": {
            "task": task_name,
            "args": {"type": "array", "description": "positional arguments (JSON)"},
            "kwargs": {
                "type": "object",
                "description": "keyword arguments (JSON); options go in their own fields",
                "propertyNames": {"not": {"enum": list(CALL_OPTIONS)}},
            },
            "cache": {"type": ["boolean", "null"]},
            "force": {"type": ["boolean", "null"]},
            "tags": {
                "type": ["object", "null"],
                "propertyNames": {"minLength": 1},
                "additionalProperties": {"type": "string"},
            },
            "retries": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_RETRIES},
            "timeout": seconds,
            "ttl": seconds,
        },
        "additionalProperties": False,
    }
    if remote_code:
        for field in ("func_source", "func_name", "func_b64", "args_b64", "kwargs_b64"):
            submit["properties"][field] = {"type": "string"}
    else:
        submit["required"] = ["task"]
    result_props: dict[str, Any] = {
        "commit_hash": {"type": ["string", "null"]},
        "blob_hash": _HEX64,
        "size": {"type": "integer", "minimum": 0},
        "result": {"description": "the value as JSON, or null when it is not JSON data"},
        "result_is_json": {"type": "boolean"},
        "result_b64": {
            "type": "string",
            "contentEncoding": "base64",
            "description": "the serializer's bytes",
        },
    }
    commit_props: dict[str, Any] = {
        "hash": _HEX64,
        "func_name": {"type": "string"},
        "module": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "completed", "failed"]},
        "created_at": _NULL_STR,
        "last_accessed": _NULL_STR,
        "hits": {"type": "integer"},
        "last_hit": _NULL_STR,
        "expires_at": _NULL_STR,
        "expired": {"type": "boolean"},
        "parent_hash": _NULL_STR,
        "result": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {"hash": _HEX64, "size": {"type": "integer"}},
                    "required": ["hash", "size"],
                },
            ]
        },
        "compute_seconds": {"type": ["number", "null"]},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "error": {"type": ["string", "null"], "description": "last line of the error"},
        "fingerprint": {"type": "string"},
        "func_hash": {"type": "string"},
        "args_hash": {"type": "string"},
        "args_snapshot": {"type": "string"},
        "input_hashes": {"type": "array", "items": {"type": "string"}},
        "options": {"type": "object"},
        "short_hash": {"type": "string", "description": "the published cashet's name"},
        "function": {"type": "string", "description": "= func_name (published name)"},
        "output": {**_NULL_STR, "description": "= result.hash (published name)"},
        "parent": {**_NULL_STR, "description": "= parent_hash (published name)"},
    }
    summary = {"type": "object", "properties": commit_props, "required": list(commit_props)}
    full = {
        "type": "object",
        "properties": {**commit_props, "func_source": {"type": "string"}},
        "required": [*commit_props, "func_source"],
    }
    diff_props = {
        **{k: {"type": "boolean"} for k in ("func_changed", "args_changed", "output_changed")},
        "status_changed": {"type": "boolean"},
        "hash_a": _HEX64,
        "hash_b": _HEX64,
        "source_diff": {"type": "string"},
        "args_diff": {"type": "array", "items": {"type": "object"}},
    }
    return {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "detail": {"type": "string", "description": "more about the error"},
                "field": {"type": "string", "description": "the request field at fault"},
                "candidates": {"type": "array", "items": {"type": "string"}},
                "tasks": {"type": "array", "items": {"type": "string"}},
                "valid": {"type": "array", "items": {"type": "string"}},
                "task": {"type": "string"},
            },
            "required": ["error"],
        },
        "SubmitRequest": submit,
        "SubmitResponse": {
            "type": "object",
            "properties": {**result_props, "cached": {"type": "boolean"}},
            "required": [*result_props, "cached"],
        },
        "ResultResponse": {
            "type": "object",
            "properties": result_props,
            "required": list(result_props),
        },
        "Commit": full,
        "CommitSummary": summary,
        "CommitList": {
            "type": "object",
            "properties": {"commits": {"type": "array", "items": _ref("CommitSummary")}},
            "required": ["commits"],
        },
        "Diff": {"type": "object", "properties": diff_props, "required": list(diff_props)},
        "Stats": {
            "type": "object",
            "properties": {"seconds_saved": {"type": "number"}},
            "additionalProperties": {"type": "integer"},
        },
        "GcRequest": {
            "type": "object",
            "properties": {
                "older_than_days": {"type": "number", "minimum": 0, "maximum": MAX_GC_DAYS},
                "max_size_bytes": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "maximum": 2**63 - 1,
                },
                "max_size": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "maximum": 2**63 - 1,
                    "description": "the published cashet's name for max_size_bytes",
                },
            },
            "additionalProperties": False,
        },
        "GcResponse": {
            "type": "object",
            "properties": {
                "evicted": {"type": "integer", "minimum": 0},
                "deleted": {"type": "integer", "minimum": 0, "description": "= evicted"},
            },
            "required": ["evicted", "deleted"],
        },
    }


def openapi_document(
    *,
    tasks: Sequence[str] = (),
    token: bool = False,
    read_only: bool = False,
    remote_code: bool = False,
    max_body_bytes: int,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app with these settings.

    Args:
        tasks: names ``/submit`` accepts now (listed as examples).
        token: whether every operation needs the Bearer token.
        read_only: whether the server refuses mutations.
        remote_code: whether the legacy remote-code fields are accepted.
        max_body_bytes: the body limit (named in the 413 descriptions).
    """
    common: dict[str, Any] = {"503": _error("the store is unavailable")}
    if token:
        common["401"] = _error("missing or invalid Bearer token")
    lookup = {
        "400": _error("malformed hash"),
        "404": _error("no such commit"),
        "409": _error("ambiguous hash prefix; `candidates` lists the matches"),
    }
    too_large = _error(f"body larger than {max_body_bytes} bytes")
    ro = " (refused with 403: this server is read-only)" if read_only else ""

    def op(summary: str, ok: dict[str, Any], **responses: Any) -> dict[str, Any]:
        return {"summary": summary, "responses": {"200": ok, **responses, **common}}

    submit = op(
        "Run a registered task with JSON arguments (or return its cached result)",
        _json(_ref("SubmitResponse"), "the result"),
        **{
            "400": _error("invalid request; `field` names the culprit"),
            "403": _error("remote code refused, or read-only server and the call is not cached"),
            "404": _error("unknown task; `tasks` lists the registered ones"),
            "413": too_large,
            "422": _error(
                'the task failed: `error` is "task failed", `detail` the last line of its error'
            ),
        },
    )
    submit["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": _ref("SubmitRequest")}},
    }
    gc = op(
        "Evict old, expired and (over a size) least recently used entries" + ro,
        _json(_ref("GcResponse"), "how many commits were removed"),
        **{
            "400": _error("invalid request"),
            "403": _error("read-only server"),
            "413": too_large,
        },
    )
    gc["requestBody"] = {
        "required": False,
        "content": {"application/json": {"schema": _ref("GcRequest")}},
    }
    log_params = [
        {"name": "func", "in": "query", "schema": {"type": "string"}},
        {
            "name": "status",
            "in": "query",
            "schema": {"type": "string", "enum": ["running", "completed", "failed"]},
        },
        {
            "name": "tag",
            "in": "query",
            "description": "KEY=VALUE, or KEY for any value; repeatable",
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string", "pattern": "^[^=]"}},
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LOG_LIMIT},
        },
    ]
    hash_param = [_path_param("hash", "commit hash or unique prefix")]
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "cashet",
            "version": __version__,
            "description": "A persistent memoization cache served over HTTP.",
        },
        "paths": {
            "/submit": {"post": submit},
            "/result/{hash}": {
                "get": {
                    **op(
                        "Fetch a result (by commit hash or prefix, or full blob hash)",
                        _json(_ref("ResultResponse"), "the result"),
                        **lookup,
                    ),
                    "parameters": [_path_param("hash", "commit hash, prefix or blob hash")],
                }
            },
            "/commit/{hash}": {
                "get": {
                    **op("Commit metadata", _json(_ref("Commit"), "the commit"), **lookup),
                    "parameters": hash_param,
                }
            },
            "/history/{hash}": {
                "get": {
                    **op(
                        "Every run of the same function and arguments, oldest first",
                        _json(_ref("CommitList"), "the runs"),
                        **lookup,
                    ),
                    "parameters": hash_param,
                }
            },
            "/diff/{a}/{b}": {
                "get": {
                    **op("Compare two commits", _json(_ref("Diff"), "the comparison"), **lookup),
                    "parameters": [
                        _path_param("a", "first commit"),
                        _path_param("b", "second commit"),
                    ],
                }
            },
            "/log": {
                "get": {
                    **op(
                        "List commits, newest first",
                        _json(
                            {"type": "array", "items": _ref("CommitSummary")},
                            "the commits (a list, as the published cashet answers)",
                        ),
                        **{"400": _error("invalid query parameter")},
                    ),
                    "parameters": log_params,
                }
            },
            "/stats": {"get": op("Storage statistics", _json(_ref("Stats"), "counters"))},
            "/gc": {"post": gc},
            "/openapi.json": {
                "get": op("This document", _json({"type": "object"}, "the OpenAPI document"))
            },
        },
        "components": {"schemas": _schemas(tasks, remote_code)},
    }
    if token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
