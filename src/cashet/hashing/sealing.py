"""A commit's canonical content JSON, written without building its dict (every miss seals one).

:func:`content_json` returns exactly the text of
``json.dumps(content_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
(:mod:`cashet.hashing.commits`, whose hash names the commit), in about half the time: the
fixed keys of a commit and of its task definition are written in their sorted order, and
each value is encoded by that same json encoder (a string by its C escaper, an ``int`` or
a finite ``float`` by the ``repr`` the encoder uses, anything else by the encoder itself).
The tests compare the two texts on commits of every shape.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from cashet.models import Commit

__all__ = ["COMMIT_FORMAT", "content_json", "encode_value"]

#: The ``format`` of a commit's content.
COMMIT_FORMAT = 1

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_INF = float("inf")
# The encoder's own C loop, made once (``encode`` makes one per call): without the
# circular-reference check, so a cycle ends in RecursionError, and the encoder then says.
_C_LOOP: Any = None
if c_make_encoder is not None:
    _C_LOOP = c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", True, False, True
    )


def _encode(v: Any) -> str:
    """``v`` as ``_ENCODER.encode`` writes it."""
    if _C_LOOP is None or isinstance(v, str):
        return _ENCODER.encode(v)
    try:
        return "".join(_C_LOOP(v, 0))
    except RecursionError:
        return _ENCODER.encode(v)  # a cycle: the encoder's own error


def encode_value(v: Any) -> str:
    """``v`` as the canonical encoder writes it (sorted keys, compact, not ASCII-escaped)."""
    t = type(v)
    if t is str:
        return encode_basestring(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if t is int:
        return int.__repr__(v)
    if t is float and -_INF < v < _INF:  # NaN and the infinities: the encoder's spelling
        return float.__repr__(v)
    return _encode(v)


def content_json(c: Commit) -> str:
    """The canonical content text of ``c``: everything that identifies it (not its hash,
    not its last access), as sorted compact JSON."""
    e = encode_value
    td = c.task_def
    result = c.result
    created = c.created_at
    expires = c.expires_at
    res = "null" if result is None else f'{{"hash":{e(result.hash)},"size":{e(result.size)}}}'
    tags = "{}" if not c.tags else _encode(dict(sorted(c.tags.items())))
    inputs = "[]" if not c.input_hashes else _encode(list(c.input_hashes))
    snapshot = td.args_snapshot
    if type(snapshot) is not str:
        snapshot = _text(snapshot)
    manifest = f'"manifest":{_encode(td.manifest)},' if td.manifest else ""
    td_tags = "{}" if not td.tags else _encode(dict(td.tags))
    return (
        f'{{"compute_seconds":{e(c.compute_seconds)},'
        f'"created_at":{"null" if created is None else e(created.isoformat())},'
        f'"error":{e(c.error)},'
        f'"expires_at":{"null" if expires is None else e(expires.isoformat())},'
        f'"format":{COMMIT_FORMAT},"input_hashes":{inputs},"parent_hash":{e(c.parent_hash)},'
        f'"result":{res},"salt":{e(c.salt)},"status":{e(c.status.value)},"tags":{tags},'
        f'"task_def":{{"args_hash":{e(td.args_hash)},"args_snapshot":{e(snapshot)},'
        f'"cache":{e(td.cache)},"force":{e(td.force)},"func_hash":{e(td.func_hash)},'
        f'"func_name":{e(td.func_name)},"func_source":{e(td.func_source)},{manifest}'
        f'"module":{e(td.module)},"retries":{e(td.retries)},"tags":{td_tags},'
        f'"timeout":{e(td.timeout)},"ttl":{e(td.ttl)}}}}}'
    )


def _text(value: object) -> str:
    """A snapshot as text (the published cashet's ``TaskDef`` took bytes)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
