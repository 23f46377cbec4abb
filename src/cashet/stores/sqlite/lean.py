"""Lean commit rows (schema v6): what a commit row keeps, and how it is read back verified.

A commit's stored form is its canonical content JSON (``hashing.commits``), ~1.3 KB for a
trivial call, most of it the same in every commit of one function: the source, the
function's part of the key manifest, the option and field names. A v6 row keeps instead:

* ``fn``: the id of its function's row in ``funcs`` (one per identity hash, written by
  the first commit of that function version stored here; never changed or removed). That
  row's ``body`` is that first commit's content text, its ``digest`` the BLAKE3 of it.
* ``body``: the commit's content text, raw-deflated (zlib, level 9) with the function
  row's ``body`` followed by the row's ``result_hash`` as the preset dictionary: what
  repeats is a back-reference, what a call adds (its argument digest, times, the readable
  args) is what is left (~90 bytes for ``f(x) = x + 1``).
* ``fp``: a 64-bit key of the fingerprint (the lookup index), instead of its 129 characters.

Reading a row inflates the body with its dictionary (verified against its digest once per
process) and checks the text against the row's hash exactly as before
(``hashing.commits.verified_content``): the commit hash is unchanged, so archives, Redis
and the commits of v5 (``fn`` NULL, ``body`` the whole JSON text) read as they did.
"""

from __future__ import annotations

import sqlite3
import zlib
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from cashet.hashing.commits import (
    Decoder,
    content_digest,
    decode_whole,
    sealed_content,
    stored_json,
    verified_commit,
)
from cashet.models import Commit
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.schema import to_epoch
from cashet.stores.sqlite.schema_v7 import INSERT_INPUT
from cashet.stores.sqlite.tiny import INSERT_COMMIT_DATA

if TYPE_CHECKING:
    from cashet.stores.sqlite.connection import Database

__all__ = [
    "FUNC_DIGEST",
    "ROW_CREATED",
    "commit_row",
    "content_text",
    "index_commit",
    "lean_holds",
    "dictionary",
    "register_functions",
    "FunctionBooks",
    "FunctionRowDamaged",
    "LeanRowsMixin",
    "deflate",
    "fp_key",
    "inflate",
    "lean_row",
    "verified_row",
]

#: A commit's content text is never near this long; a body that inflates past it is damaged.
_INFLATED_MAX = 64 << 20
#: The domain of a function row's digest.
FUNC_DIGEST = b"cashet.function-row.v1\x00"


class FunctionRowDamaged(ValueError):
    """A ``funcs`` row does not hash to its digest: the commits deflated with it cannot be
    read (they are left alone, not quarantined: the damage is not theirs)."""


def fp_key(fingerprint: object) -> int:
    """The index key of a fingerprint: its BLAKE3's first 8 bytes as a signed integer.

    Two fingerprints may share a key (about once in 2**64): a lookup checks every commit
    it finds against the asked fingerprint by its verified content, so a shared key is
    never a wrong answer.
    """
    global _last_key
    last = _last_key  # a miss asks 4 times for one fingerprint's key (lookups, write)
    if type(fingerprint) is str and fingerprint == last[0]:
        return last[1]
    text = fingerprint if isinstance(fingerprint, str) else str(fingerprint)
    digest = blake3(text.encode("utf-8", "surrogatepass")).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    if type(fingerprint) is str:
        _last_key = (fingerprint, key)  # one assignment: safe across threads
    return key


_last_key: tuple[str | None, int] = (None, 0)


def func_digest(body: str) -> str:
    """The digest a ``funcs`` row is checked against."""
    return blake3(FUNC_DIGEST + body.encode("utf-8", "surrogateescape")).hexdigest()


def deflate(content: str, zdict: bytes) -> bytes:
    """``content`` raw-deflated against the dictionary ``zdict``.

    The window is as small as the dictionary and the content allow (at most zlib's 32
    KiB): a compressor's state is then tens of KiB, not the ~270 KiB of the defaults,
    whose allocation (an ``mmap`` and its page faults each time) cost more than the
    compression itself. Inflated with the largest window, which reads any smaller one.
    """
    data = content.encode()
    wbits = min(15, max(9, (len(zdict) + len(data)).bit_length()))
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits, 4, zlib.Z_DEFAULT_STRATEGY, zdict)
    return c.compress(data) + c.flush()


def inflate(body: Any, zdict: bytes) -> str:
    """Invert :func:`deflate`.

    Raises:
        ValueError: ``body`` is not a whole deflate stream of UTF-8 text.
    """
    out = _inflated(body, zdict)
    try:
        return out.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"not a readable commit (its body inflates to bad UTF-8: {exc})") from None


def _inflated(body: Any, zdict: bytes) -> bytes:
    """The bytes :func:`deflate` was given.

    Raises:
        ValueError: ``body`` is not a whole deflate stream.
    """
    if not isinstance(body, bytes):
        raise ValueError(f"not a readable commit (a lean body is bytes, not {type(body).__name__})")
    d = zlib.decompressobj(-15, zdict)
    try:
        out = d.decompress(body, _INFLATED_MAX)
    except zlib.error as exc:
        raise ValueError(f"not a readable commit (its body does not inflate: {exc})") from None
    if not d.eof or d.unused_data or d.unconsumed_tail:
        raise ValueError("not a readable commit (its body is not one whole deflate stream)")
    return out


class FunctionBooks:
    """The ``funcs`` rows this process has read or written, verified: by id (to read a
    commit) and by identity hash (to write one). Rows never change, so they are kept.
    No lock (one could be held across a fork): each update is one dict assignment."""

    _MAX = 4096

    def __init__(self) -> None:
        self._by_id: dict[int, bytes] = {}
        self._by_func: dict[str, tuple[int, bytes]] = {}

    def by_id(self, fn: int) -> bytes | None:
        return self._by_id.get(fn)

    def by_func(self, func_hash: str) -> tuple[int, bytes] | None:
        return self._by_func.get(func_hash)

    def learn(self, fn: int, func_hash: str | None, digest: Any, body: Any) -> bytes:
        """Check a ``funcs`` row and keep it; return its dictionary.

        Raises:
            FunctionRowDamaged: it does not hash to its digest.
        """
        if not isinstance(body, str) or func_digest(body) != digest:
            raise FunctionRowDamaged(
                f"function row {fn} does not hash to its digest: the commits stored"
                " against it cannot be verified (cashet doctor lists them)"
            )
        zdict = body.encode()
        if len(self._by_id) >= self._MAX:
            self.clear()
        self._by_id[fn] = zdict
        if func_hash is not None:
            self._by_func[func_hash] = (fn, zdict)
        return zdict

    def clear(self) -> None:
        self._by_id = {}
        self._by_func = {}


def dictionary(zdict: bytes, result_hash: Any) -> bytes:
    """What a commit's body is deflated against: its function row's text, then its result's
    hash (a column of the row already: in the body it is then a back-reference)."""
    return zdict + result_hash.encode() if isinstance(result_hash, str) else zdict


def verified_row(
    h: Any,
    body: Any,
    fn: Any,
    zdict: bytes | None,
    result: Any = None,
    decode: Decoder = decode_whole,
) -> Commit:
    """The verified commit of a row: ``fn`` NULL, its body is the whole stored JSON (v5
    and caller-named commits); else the lean body, inflated with ``zdict`` and ``result``
    (the row's result hash; see :func:`dictionary`). Verified text is decoded with
    ``decode`` (default: whole; see ``hashing.commits.Decoder``).

    Raises:
        ValueError: the row does not verify (the message says why).
    """
    if fn is None:
        return verified_commit(body, h, decode)
    if zdict is None:
        raise ValueError(f"its function row {fn!r} is missing")
    if not isinstance(h, str):
        raise ValueError(f"its hash is {type(h).__name__}, not text")
    # Hashed as inflated (the text's UTF-8: the same digest), decoded once verified.
    content, _, signature = _inflated(body, dictionary(zdict, result)).partition(b"\x00")
    if content_digest(content) != h:
        raise ValueError(f"its content does not hash to {h[:16]}...")
    try:
        text = content.decode()
        signed = signature.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"not a readable commit (its body inflates to bad UTF-8: {exc})") from None
    try:  # (verified_content's verdict, for text verified just now)
        commit = decode(text, h)
    except Exception as exc:
        raise ValueError(f"not a readable commit ({type(exc).__name__}: {exc})") from None
    commit.signature = signed or None  # checked by a signed store, never here
    return commit


#: Where ``created_at`` (epoch seconds) stands in a :func:`commit_row` (tag rows repeat it).
ROW_CREATED = 4


def commit_row(commit: Commit, fn: int | None, body: str | bytes) -> tuple[Any, ...]:
    """The ``INSERT_COMMIT`` parameters of ``commit``, stored as ``body`` (deflated against
    function row ``fn``; ``None``: the whole JSON text)."""
    td = commit.task_def
    result = commit.result
    return (
        commit.hash,
        fp_key(td.fingerprint),
        td.func_name,
        commit.status.value,
        to_epoch(commit.created_at),
        None if commit.expires_at is None else to_epoch(commit.expires_at),
        None if commit.last_accessed is None else to_epoch(commit.last_accessed),
        int(td.cache),
        None if result is None else result.hash,
        0 if result is None else result.size,
        commit.parent_hash,
        fn,
        body,
    )


def lean_row(commit: Commit, content: str, fn: int, zdict: bytes) -> tuple[Any, ...]:
    """The row of a sealed ``commit`` whose content text is ``content``, deflated against
    function row ``fn`` (its text ``zdict``) and its result's hash."""
    result = None if commit.result is None else commit.result.hash
    if commit.signature:  # outside the hashed content (stores/signing.py): after a NUL
        content = f"{content}{_SIGNED}{commit.signature}"
    return commit_row(commit, fn, deflate(content, dictionary(zdict, result)))


#: Between a lean body's content and its signature (canonical JSON never holds a raw NUL).
_SIGNED = "\x00"


def content_text(body: Any, zdict: Any, result_hash: Any) -> str | None:
    """A row's content text, unverified (derived state only: the v7 migration's inputs):
    a whole JSON body as it is, a lean one inflated with its function row's text
    ``zdict``; ``None`` when it cannot be read."""
    if isinstance(body, str):
        return body
    if not isinstance(zdict, str):
        return None
    try:
        return inflate(body, dictionary(zdict.encode(), result_hash)).partition(_SIGNED)[0]
    except ValueError:
        return None


def lean_holds(body: Any, zdict: bytes, needle: bytes) -> bool:
    """Whether a lean body, inflated with ``zdict`` (its :func:`dictionary`), holds
    ``needle`` (lower case; ASCII letters in any case, as SQLite's ``LIKE``), unverified:
    the text search's test (``False`` for a body that does not inflate)."""
    if not isinstance(body, bytes):
        return False
    try:
        text = zlib.decompressobj(-15, zdict).decompress(body, _INFLATED_MAX)
    except zlib.error:
        return False
    return needle in text.partition(b"\x00")[0].lower()


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the migrations call (``cashet_fp``: :func:`fp_key`, v6;
    ``cashet_content``: :func:`content_text`, v7)."""
    conn.create_function("cashet_fp", 1, fp_key, deterministic=True)
    conn.create_function("cashet_content", 3, content_text, deterministic=True)


class LeanRowsMixin:
    """How ``SQLiteStore`` writes a commit row (its ``_db`` and ``_books``)."""

    _db: Database
    _books: FunctionBooks

    def _commit_row(self, commit: Commit) -> tuple[Any, ...]:
        """The row of ``commit`` (v6, :mod:`~cashet.stores.sqlite.lean`): deflated against its
        function's row; a commit named by its caller keeps its whole stored JSON."""
        if not commit.hash:
            raise ValueError("a commit needs its hash (see cashet.hashing.commits.seal_commit)")
        content = sealed_content(commit)
        if content is not None:
            func_hash = commit.task_def.func_hash
            book = self._books.by_func(func_hash) or self._function_row(func_hash, content)
            if book is not None:
                return lean_row(commit, content, *book)
        return commit_row(commit, None, commit.sealed_json or stored_json(commit))

    def _function_row(self, func_hash: str, content: str) -> tuple[int, bytes] | None:
        """The function row of ``func_hash`` (made from ``content`` if none): its id and
        dictionary, kept once committed (its own transaction, once per function per
        process); ``None`` when it is damaged (commits then keep their whole JSON)."""
        with self._db.transact() as conn:
            conn.execute(sql.NEW_FUNC, (func_hash, func_digest(content), content))
            fn, digest, body = conn.execute(sql.FUNC_OF, (func_hash,)).fetchone()
        try:
            return fn, self._books.learn(fn, func_hash, digest, body)
        except FunctionRowDamaged:
            return None

    def _insert_commit(
        self, conn: sqlite3.Connection, commit: Commit, row: Any, data: bytes | None = None
    ) -> None:
        """Insert ``row``, with ``data``: its tiny result's encoded bytes (``tiny.in_row``)."""
        created = row[ROW_CREATED]
        # Triggers count the commit and the blob reference, only if really inserted.
        if data is None:
            inserted = conn.execute(sql.INSERT_COMMIT, row).rowcount
        else:
            inserted = conn.execute(INSERT_COMMIT_DATA, (*row, data)).rowcount
        if inserted:
            index_commit(conn, commit, created)


def index_commit(conn: sqlite3.Connection, commit: Commit, created: float) -> None:
    """Write the tag and input rows of ``commit``, just inserted (in its transaction): the
    inputs index (v7) is kept here, not by a trigger, as a lean body is deflated."""
    if commit.tags:
        conn.executemany(
            sql.INSERT_TAG, [(commit.hash, k, str(v), created) for k, v in commit.tags.items()]
        )
    if commit.input_hashes:
        conn.executemany(INSERT_INPUT, [(h, commit.hash) for h in commit.input_hashes])
