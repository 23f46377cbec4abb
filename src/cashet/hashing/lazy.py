"""A verified commit decoded lazily: what a cache hit reads now, the rest when asked.

A commit's canonical content (``hashing.commits``) is ~1 KB of JSON, most of it what a
hit never reads: the function's source, the key manifest, the module and options. A hit
reads the status, the fingerprint (``func_hash``, ``args_hash``), the cache flag, the
expiry and the result, and every one of them comes before the source in the canonical
text (its keys are sorted). :func:`decode_lazily` reads that head with one anchored
pattern and leaves the rest of the task definition undecoded, in the returned
:class:`~cashet.models.TaskDef` (its ``func_source``, ``manifest``, ``module``,
``retries``, ``timeout``, ``ttl`` and ``tags`` are decoded when first read: ``show``,
``log``, ``diff``, pickling, comparing).

Nothing here verifies: callers decode only text that hashed to the commit's hash (see
``verified_content``). The pattern is strict: every value it takes is a whole JSON token
(strings with only JSON's escapes, numbers in JSON's syntax, digits ASCII), in the one
order the canonical form has, each key once; it decodes them exactly as ``json.loads``
and ``commit_from_dict`` do. Anything else (a text written otherwise, a number JSON
writes as ``NaN``) is decoded whole, as before. The rest is decoded as a JSON object in
its turn and must hold none of the head's keys: the commit is then exactly the one the
whole text decodes to (a rest that is not the tail of a task definition is reported as a
``ValueError`` when read).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from json.decoder import scanstring  # type: ignore[attr-defined]

from cashet.hashing.commits import commit_from_dict, task_def_from_dict
from cashet.models import Commit, ObjectRef, TaskDef, TaskStatus, new_commit

__all__ = ["decode_lazily"]

# A JSON string token (json.loads' strict mode: no raw control character, JSON's escapes).
# Possessive (*+): what follows a run of plain characters is a backslash or the closing
# quote, so giving any back never helps a match; not keeping them to give back is faster.
_S = r'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
_NUM = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_INT = r"-?(?:0|[1-9][0-9]*)"
_DICT = rf"\{{(?:{_S}:{_S}(?:,{_S}:{_S})*)?\}}"
_STRING = re.compile(_S)
#: The status tokens the call flow writes (any other is parsed as commit_from_dict does).
_STATUS = {f'"{status.value}"': status for status in TaskStatus}
_HEAD = re.compile(
    rf'\{{"compute_seconds":(null|{_NUM})'
    rf',"created_at":({_S})'
    rf',"error":(null|{_S})'
    rf',"expires_at":(null|{_S})'
    rf',"format":1'
    rf',"input_hashes":\[((?:{_S}(?:,{_S})*)?)\]'
    rf',"parent_hash":(null|{_S})'
    rf',"result":(?:null|\{{"hash":({_S}),"size":({_INT})\}})'
    rf',"salt":({_S})'
    rf',"status":({_S})'
    rf',"tags":({_DICT})'
    rf',"task_def":\{{"args_hash":({_S}),"args_snapshot":({_S})'
    rf',"cache":(true|false),"force":(true|false),"func_hash":({_S}),"func_name":({_S})'
    r'(?=,"func_source":)'
)
#: The task definition's keys the head holds (the rest must hold none of them).
_HEAD_KEYS = frozenset(("args_hash", "args_snapshot", "cache", "force", "func_hash", "func_name"))
#: The fields of a lazily decoded ``TaskDef`` set when first read.
_LAZY = ("func_source", "module", "retries", "timeout", "ttl", "tags", "manifest")
_SLOTS = {name: TaskDef.__dict__[name] for name in _LAZY}  # their slot descriptors


def _str(token: str) -> str:
    """A JSON string token's value (as ``json.loads`` decodes it)."""
    return token[1:-1] if "\\" not in token else str(scanstring(token, 1)[0])


def _opt(token: str) -> str | None:
    return None if token == "null" else _str(token)


def _num(token: str) -> int | float | None:
    if token == "null":
        return None
    if "." in token or "e" in token or "E" in token:
        return float(token)
    return int(token)


class _Rest:
    """The undecoded rest of a task definition: decodes it into the ``TaskDef`` when one
    of its fields is first read (``models._Decoded.__getattr__``)."""

    __slots__ = ("at", "text")

    def __init__(self, text: str, at: int) -> None:
        self.text = text
        self.at = at  # where the rest starts: the comma before "func_source"

    def __call__(self, td: TaskDef) -> None:
        try:
            rest = json.loads("{" + self.text[self.at + 1 : -1])
            if rest.keys() & _HEAD_KEYS:
                raise ValueError(f"the keys {sorted(rest.keys() & _HEAD_KEYS)} twice")
            full = task_def_from_dict({"func_name": "", "func_hash": "", "args_hash": "", **rest})
        except Exception as exc:  # verified text that is not a commit: one verdict
            raise ValueError(f"not a readable commit ({type(exc).__name__}: {exc})") from None
        for name, slot in _SLOTS.items():
            try:
                slot.__get__(td)  # set meanwhile (by its owner): kept
            except AttributeError:
                slot.__set__(td, getattr(full, name))
        object.__setattr__(td, "_pending", None)  # (a slot of TaskDef's base)


def decode_lazily(content: str, commit_hash: str) -> Commit:
    """The commit whose canonical content text is ``content`` (already verified against
    ``commit_hash``), its task definition's tail decoded when first read.

    Decoded whole (``json.loads``) when the text is not in the canonical form.

    Raises:
        ValueError: ``content`` is not a commit.
    """
    m = _HEAD.match(content)
    if m is not None and content.endswith("}}"):
        try:
            return _commit(content, commit_hash, m)
        except (ValueError, TypeError, OverflowError):
            pass  # (a date or a status that does not parse): the whole decode says why
    try:
        d = json.loads(content)
        d["hash"] = commit_hash
        return commit_from_dict(d)
    except Exception as exc:  # verified text that is not a commit: all one verdict
        raise ValueError(f"not a readable commit ({type(exc).__name__}: {exc})") from None


def _commit(content: str, commit_hash: str, m: re.Match[str]) -> Commit:
    g = m.groups()  # in the order of _HEAD's groups
    td: TaskDef = _new(TaskDef)
    td.func_name = _str(g[16])
    td.func_hash = _str(g[15])
    td.args_hash = _str(g[11])
    td.args_snapshot = _str(g[12])
    td.cache = g[13] == "true"
    td.force = g[14] == "true"
    td.identity = None
    object.__setattr__(td, "_pending", _Rest(content, m.end()))  # (see models._Decoded)
    status, tags, inputs, rh, expires = g[9], g[10], g[4], g[6], g[3]
    if rh is None:
        result = None
    else:  # (ObjectRef's fields set as its frozen __init__ does, without its overhead)
        result = _new(ObjectRef)
        _set_ref_hash(result, _str(rh))
        _set_ref_size(result, int(g[7]))
    return new_commit(
        str(commit_hash),
        td,
        _STATUS.get(status) or TaskStatus.parse(_str(status)),
        datetime.fromisoformat(_str(g[1])),
        result,
        _opt(g[5]),
        _opt(g[2]),
        {} if tags == "{}" else {str(k): str(v) for k, v in json.loads(tags).items()},
        _num(g[0]),
        None if expires == "null" else datetime.fromisoformat(_str(expires)),
        tuple(_str(t) for t in _STRING.findall(inputs)) if inputs else (),
        _str(g[8]),
        None,  # last_accessed: the store's column
        None,  # signature: beside the content
    )


_new = object.__new__
_set_ref_hash = ObjectRef.__dict__["hash"].__set__
_set_ref_size = ObjectRef.__dict__["size"].__set__
