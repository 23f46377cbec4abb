"""Signed stores: trust between the members of a team that share a cache.

Anyone who can write to a shared store (the Redis, the bucket, the database) can plant an
entry; a forged commit that is internally consistent (its content hashes to its hash, its
blob to the blob hash it names) is indistinguishable from a real one, and loading its
result unpickles whatever it holds. With a team key (``Client(signing_key=...)`` or
``$CASHET_SIGNING_KEY``), every commit written carries a keyed MAC (keyed BLAKE3) over its
hash, and every commit read is checked **before** anything it names is loaded:

* the MAC covers the commit hash, which covers the commit's whole content, the result's
  blob hash included; the blob is verified against that hash on every read. So a signed
  commit authenticates its result blob too, and a blob no signed commit names is never
  loaded. The signature travels in the stored commit, outside its hashed content
  (``Commit.signature``), so archives and copies between stores carry it as it is.
* an unsigned commit, or one signed with another key, is treated as absent: a lookup misses
  (the call is computed again and a signed commit recorded), ``get``/``show``/``log`` do
  not see it, and ``check()`` (``cashet doctor``) reports it (``unsigned_commit``,
  ``bad_signature``; a repair removes it).

What it does not protect against: someone who has the key; deleting entries (a miss, then
a recompute); a reader without the key configured (it sees every entry, signed or not).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from blake3 import blake3

from cashet.errors import CashetError
from cashet.hashing.commits import stored_json
from cashet.models import Commit, ObjectRef
from cashet.protocols import AsyncCheckup, CheckReport, Checkup, Finding, Hit, supports
from cashet.stores.base import full_async_store, full_store

__all__ = [
    "ENV",
    "AsyncSignedStore",
    "SignatureError",
    "SignedStore",
    "SigningKey",
    "signed_store",
    "signing_key",
]

#: The environment variable a client (and a cluster worker) reads its team key from.
ENV = "CASHET_SIGNING_KEY"
_KEY_CONTEXT = "cashet 2026-12 commit signing key"
_ID_CONTEXT = "cashet 2026-12 signing key id"
_MIN_BYTES = 16


class SignatureError(CashetError, ValueError):
    """A commit's signature is missing or made with another key (a store refuses to record
    it, an import or a copy between stores skips it)."""


class SigningKey:
    """A team's signing key: any secret of 16 bytes or more (text or bytes).

    Its ``repr`` shows only ``key_id`` (a digest that names the key, never reveals it); it
    cannot be pickled (a key never travels: each process reads its own).
    """

    __slots__ = ("_key", "key_id")

    def __init__(self, secret: str | bytes) -> None:
        material = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(material) < _MIN_BYTES:
            raise ValueError(
                f"a signing key needs at least {_MIN_BYTES} bytes (this one has"
                f" {len(material)}): e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        self._key: bytes = blake3(material, derive_key_context=_KEY_CONTEXT).digest()
        self.key_id: str = blake3(self._key, derive_key_context=_ID_CONTEXT).hexdigest()[:16]

    def sign(self, commit_hash: str) -> str:
        """The signature of the commit named ``commit_hash``: ``<key id>:<MAC>``."""
        mac = blake3(commit_hash.encode(), key=self._key).hexdigest()
        return f"{self.key_id}:{mac}"

    def verdict(self, commit: Commit) -> str:
        """``""`` when ``commit`` is signed with this key, else what is wrong
        (``"unsigned_commit"`` or ``"bad_signature"``)."""
        sig = commit.signature
        if not sig:
            return "unsigned_commit"
        if isinstance(sig, str) and hmac.compare_digest(sig, self.sign(commit.hash)):
            return ""
        return "bad_signature"

    def __repr__(self) -> str:
        return f"SigningKey(id={self.key_id})"

    def __reduce__(self) -> Any:
        raise TypeError(f"a signing key is never pickled: set ${ENV} in each process that needs it")


def signing_key(value: SigningKey | str | bytes | None) -> SigningKey | None:
    """The key a client signs with: ``value``, else ``$CASHET_SIGNING_KEY``, else none."""
    if isinstance(value, SigningKey):
        return value
    if value is None:
        value = os.environ.get(ENV) or None
        if value is None:
            return None
    if not isinstance(value, str | bytes):
        raise TypeError(f"signing_key must be text or bytes, not {type(value).__name__}")
    return SigningKey(value)


def worker_key(key_id: str) -> SigningKey:
    """The key a cluster worker signs with: its own ``$CASHET_SIGNING_KEY``, which must be
    the driver's (``key_id``). Keys never travel with the work.

    Raises:
        ExecutorError: the worker has no key, or another one.
    """
    from cashet.errors import ExecutorError

    key = signing_key(None)
    if key is None:
        raise ExecutorError(
            f"the driver signs its commits (key {key_id}) but this worker has no key:"
            f" set ${ENV} in the workers' environment"
        )
    if key.key_id != key_id:
        raise ExecutorError(
            f"this worker's ${ENV} is another key ({key.key_id}) than the driver's ({key_id})"
        )
    return key


def _signed(key: SigningKey, commit: Commit) -> Commit:
    commit.signature = key.sign(commit.hash)
    commit.sealed_json = stored_json(commit)  # what the store keeps: signature included
    return commit


def _to_record(key: SigningKey, commit: Commit) -> Commit:
    """A commit about to be recorded: signed when it is not; refused when it arrives signed
    with another key.

    Raises:
        SignatureError: the commit is signed with another key.
    """
    if not commit.signature:
        return _signed(key, commit)
    if key.verdict(commit):
        raise SignatureError(
            f"commit {commit.hash[:12]} is signed with another key than this client's"
            f" ({key!r}): not recorded"
        )
    return commit


def _findings(key: SigningKey, commits: Any, report: CheckReport) -> list[str]:
    """Add a finding per commit not signed with ``key``; answer their hashes."""
    bad = []
    for commit in commits:
        verdict = key.verdict(commit)
        if verdict:
            detail = (
                "not signed: never served while a signing key is set"
                if verdict == "unsigned_commit"
                else "signed with another key, or its signature is forged: never served"
            )
            report.findings.append(Finding(verdict, commit.hash, detail))
            bad.append(commit.hash)
    report.counts["signatures"] = report.counts.get("signatures", 0) + len(bad)
    return bad


# --- sync ----------------------------------------------------------------------------------


class SignedStore:
    """A store whose commits are signed on write and checked on read (see the module).

    Every other method and attribute is the wrapped store's (the class gains a forwarding
    method for each public method of the wrapped store's class, so its capabilities stay).
    """

    def __init__(self, store: Any, key: SigningKey) -> None:
        self._store = store
        self._inner: Any = full_store(store)
        self.signing_key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __repr__(self) -> str:
        return f"{self._store!r} (signed, key {self.signing_key.key_id})"

    @property
    def config(self) -> Any:
        """The wrapped store's config, naming the key its workers must sign with."""
        from dataclasses import replace

        from cashet.errors import ExecutorError

        if not isinstance(getattr(type(self._store), "config", None), property):
            raise ExecutorError(
                f"{type(self._store).__name__} cannot be reopened in worker processes (it has"
                " no config property): use SQLiteStore or RedisStore"
            )
        config = self._store.config
        signed = ("signing_key_id", self.signing_key.key_id)
        return replace(config, options=(*config.options, signed))

    def _ok(self, commit: Commit | None) -> Commit | None:
        return commit if commit is not None and not self.signing_key.verdict(commit) else None

    def _all(self, commits: list[Commit]) -> list[Commit]:
        return [c for c in commits if not self.signing_key.verdict(c)]

    # reads: only commits signed with the key
    def lookup(self, fingerprint: str) -> Hit | None:
        hit: Hit | None = self._inner.lookup(fingerprint)
        return hit if hit is None or self._ok(hit.commit) is not None else None

    def get_commit(self, hash: str) -> Commit | None:
        return self._ok(self._inner.get_commit(hash))

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return self._ok(self._inner.find_by_fingerprint(fingerprint))

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        return self._ok(self._inner.latest_for_fingerprint(fingerprint))

    def list_commits(self, *args: Any, **kwargs: Any) -> list[Commit]:
        return self._all(self._inner.list_commits(*args, **kwargs))

    def get_history(self, hash: str) -> list[Commit]:
        return self._all(self._inner.get_history(hash))

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        return self._all(self._inner.find_by_result(blob_hash, limit))

    def iter_commits(self) -> Iterator[Commit]:
        key = self.signing_key
        return (c for c in self._inner.iter_commits() if not key.verdict(c))

    # writes: signed
    def put_commit(self, commit: Commit) -> None:
        self._inner.put_commit(_to_record(self.signing_key, commit))

    def put_result(
        self,
        data: Any,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        key = self.signing_key

        def signed_build(ref: ObjectRef) -> Commit:
            return _signed(key, build(ref))

        commit: Commit = self._inner.put_result(data, signed_build, release)
        return commit

    def check(self, repair: bool = False) -> CheckReport:
        """The wrapped store's check, plus every commit not signed with the key (a repair
        removes them: they can never be served)."""
        report = _base_report(self._store, repair)
        bad = _findings(self.signing_key, self._inner.iter_commits(), report)
        if repair and bad:
            _mark_removed(report, bad, [self._inner.delete_commit(h) for h in bad])
        return report


def _base_report(store: Any, repair: bool) -> CheckReport:
    if supports(store, Checkup):
        report: CheckReport = store.check(repair)
        return report
    return CheckReport(where=repr(store), repair=repair)


def _mark_removed(report: CheckReport, bad: list[str], removed: list[Any]) -> None:
    done = {h for h, r in zip(bad, removed, strict=True) if r}
    for finding in report.findings:
        if finding.subject in done and finding.kind in ("unsigned_commit", "bad_signature"):
            finding.action = "removed"


# --- async ---------------------------------------------------------------------------------


class AsyncSignedStore(SignedStore):
    """:class:`SignedStore` over an async store."""

    def __init__(self, store: Any, key: SigningKey) -> None:
        self._store = store
        self._inner = full_async_store(store)
        self.signing_key = key

    async def lookup(self, fingerprint: str) -> Hit | None:  # type: ignore[override]
        hit: Hit | None = await self._inner.lookup(fingerprint)
        return hit if hit is None or self._ok(hit.commit) is not None else None

    async def get_commit(self, hash: str) -> Commit | None:  # type: ignore[override]
        return self._ok(await self._inner.get_commit(hash))

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:  # type: ignore[override]
        return self._ok(await self._inner.find_by_fingerprint(fingerprint))

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:  # type: ignore[override]
        return self._ok(await self._inner.latest_for_fingerprint(fingerprint))

    async def list_commits(self, *args: Any, **kwargs: Any) -> list[Commit]:  # type: ignore[override]
        return self._all(await self._inner.list_commits(*args, **kwargs))

    async def get_history(self, hash: str) -> list[Commit]:  # type: ignore[override]
        return self._all(await self._inner.get_history(hash))

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:  # type: ignore[override]
        return self._all(await self._inner.find_by_result(blob_hash, limit))

    async def iter_commits(self) -> AsyncIterator[Commit]:  # type: ignore[override]
        async for c in self._inner.iter_commits():
            if not self.signing_key.verdict(c):
                yield c

    async def put_commit(self, commit: Commit) -> None:  # type: ignore[override]
        await self._inner.put_commit(_to_record(self.signing_key, commit))

    async def put_result(  # type: ignore[override]
        self,
        data: Any,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        key = self.signing_key

        def signed_build(ref: ObjectRef) -> Commit:
            return _signed(key, build(ref))

        commit: Commit = await self._inner.put_result(data, signed_build, release)
        return commit

    async def check(self, repair: bool = False) -> CheckReport:  # type: ignore[override]
        if supports(self._store, AsyncCheckup):
            report: CheckReport = await self._store.check(repair)
        else:
            report = CheckReport(where=repr(self._store), repair=repair)
        commits = [c async for c in self._inner.iter_commits()]
        bad = _findings(self.signing_key, commits, report)
        if repair and bad:
            _mark_removed(report, bad, [await self._inner.delete_commit(h) for h in bad])
        return report


# --- making one ----------------------------------------------------------------------------

_CLASSES: dict[tuple[type, type], type] = {}


def _forward(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    if name in _COMMIT_LISTS:  # capabilities that return commits: only the signed ones

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            found = getattr(self._inner, name)(*args, **kwargs)
            if isinstance(found, list):
                return self._all(found)
            found.commits = self._all(found.commits)  # a CommitPage
            return found

    method.__name__ = method.__qualname__ = name
    return method


#: Forwarded capabilities whose commits are filtered like ``list_commits``'s: the web UI's
#: pages and the lineage's downstream (``function_totals`` counts every stored commit).
_COMMIT_LISTS = frozenset({"page_commits", "find_by_input"})


def _class_for(base: type, inner: type) -> type:
    """``base`` with a forwarding method for each public method of ``inner`` it lacks, so
    that capability checks (made on the class) see what the wrapped store has."""
    cls = _CLASSES.get((base, inner))
    if cls is None:
        names = {
            n
            for klass in inner.__mro__
            for n, v in vars(klass).items()
            if not n.startswith("_") and callable(v) and not isinstance(v, type)
        }
        extra = {n: _forward(n) for n in names if not hasattr(base, n)}
        cls = _CLASSES[(base, inner)] = type(f"Signed{inner.__name__}", (base,), extra)
    return cls


def signed_store(store: Any, key: SigningKey | None, *, asynchronous: bool) -> Any:
    """``store`` signing with ``key`` (itself when ``key`` is ``None``)."""
    if key is None:
        return store
    base = AsyncSignedStore if asynchronous else SignedStore
    inner = full_async_store(store) if asynchronous else full_store(store)
    cls = _class_for(base, type(inner))
    wrapped: Any = object.__new__(cls)
    base.__init__(wrapped, store, key)
    return wrapped
