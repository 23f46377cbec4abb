"""The Redis stores' data layout, free of IO: key names, time and URL helpers, and the Lua
scripts (``scripts/*.lua``, package data, loaded here with their placeholders filled in).

The operations built on them are in :mod:`cashet.stores.redis.ops`; the stores that run
those operations are in :mod:`cashet.stores.redis.store`.

Key layout (``P`` is the store's prefix, ``cashet2:`` by default, which no published
cashet uses)::

    P commit:{hash}               HASH  b (commit JSON)  la (last access, µs)  e (expiry, µs)
                                        r (result blob)  c (1 if completed)  f (its fp index)
                                        x (JSON list of the index keys it is in)
                                        hn, hl, hs (hits: count, last one µs, seconds saved)
    P index:created               ZSET  every commit, scored by created_at (µs)
    P index:fp:{fingerprint}      ZSET  a fingerprint's commits (history, parent)
    P index:hit:{fingerprint}     ZSET  its completed cacheable commits (the cache lookup)
    P index:func:{name}           ZSET  by function          (all scored by created_at)
    P index:status:{status}       ZSET  by status
    P index:tag:{len}:{key}       ZSET  commits having tag ``key``
    P index:tagv:{len}:{key}:{v}  ZSET  commits having tag ``key`` = ``v``
    P index:last_accessed         ZSET  score = last access, else created_at (LRU, age)
    P index:expires               ZSET  score = expires_at, commits with a TTL only
    P index:hashes                ZSET  every commit hash, score 0 (prefix lookup by ZRANGEBYLEX)
    P index:orphans               ZSET  blobs no commit references, scored by when stored
    P blob:meta:{hash}            HASH  s (size)  z (stored size)  n (chunks, 0 = one key)
                                        g (write generation)  i (1 if counted inline)  t
    P blob:data:{hash}            STRING encoded blob (codec: header byte + raw or zstd)
    P blob:data:{hash}:{g}:{i}    STRING chunk i of a blob larger than ``chunk_size``
    P blob:ref:{hash}             STRING number of commits whose result is the blob
    P blob:gone                   SET   blobs of the blob store (``blobs=``: meta ``n`` -1,
                                        no data key) dropped here, whose objects the store
                                        deletes next (a dropped blob put again is kept)
    P stats:blob / stats:commit   HASH  counters behind ``stats()`` (O(1))
    P lock:{fingerprint}          HASH  the lease: o (owner) e (expiry, µs) h (host) p (pid)
                                        f (function) c (claimed at, µs); key TTL = lease + grace
    P release:{fingerprint}       pub/sub channel, published when a lease is released
    P leases:running              ZSET  fingerprint -> its lease's expiry (µs): the calls in
                                        flight (``log(status="running")``), kept by the lease
                                        scripts; a member whose lock key expired is dropped
    P done:{token}                STRING the reply of a counting script (delete, evict), kept
                                        10 minutes so that a resent call gets it back
    P quarantine                  HASH  {kind}:{hash} -> a damaged entry set aside (JSON: see
                                        cashet.stores.quarantine); a damaged commit is moved out

Every multi-key change is one Lua script, so a client killed mid-write leaves nothing half
done. A blob is trusted only through its meta key: chunks are written first with an expiry,
then a script checks them, drops the expiry and publishes the meta key. Times are integer
microseconds since the epoch (exact in a double, so ZSET scores and Lua compare them
exactly). The scripts build key names from the prefix, so they need a single Redis (not a
cluster); the prefix lets several caches share one.
"""

from __future__ import annotations

import hashlib
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

from cashet._humanize import mask_url
from cashet.models import TaskStatus

__all__ = [
    "DEFAULT_PREFIX",
    "BATCH",
    "BLOB_CACHE",
    "BLOB_FRESH_S",
    "CHUNK_TTL_MS",
    "DONE_TTL_MS",
    "HIT_BLOB_MAX",
    "LOCK_GRACE_MS",
    "SCRIPTS",
    "SCRIPT_READ_MAX",
    "SMALL_PUT",
    "TEMPLATE_CACHE",
    "Keys",
    "Script",
    "from_us",
    "mask_url",
    "now_us",
    "to_us",
]

MiB = 1 << 20
#: The default key prefix: no published cashet (which used ``cashet:``) writes under it,
#: so the two never meet on one Redis (issue 12).
DEFAULT_PREFIX = "cashet2:"
#: Blobs up to this size are encoded and sent in one script call, even if already stored.
SMALL_PUT = 64 << 10
#: ``get_blob`` receives the bytes from its script up to this stored size, else a plain GET.
SCRIPT_READ_MAX = 1 * MiB
#: The cache lookup returns (and this process keeps) result blobs up to this stored size.
HIT_BLOB_MAX = 64 << 10
#: Chunks not yet published vanish after this long (a writer killed mid-blob leaves nothing).
CHUNK_TTL_MS = 3_600_000
#: A lock key outlives its lease by this much; expiry is judged from the lease itself.
LOCK_GRACE_MS = 60_000
#: How long a script that counts what it did keeps its reply for a resent call.
DONE_TTL_MS = 600_000
#: Rows handled per script call in ``evict`` and ``iter_commits``, so Redis is never held long.
BATCH = 256
#: How many recently found commits and small result blobs this process keeps.
TEMPLATE_CACHE = 1024
BLOB_CACHE = 256
#: A cached blob serves ``get_blob`` for this long after a lookup saw it in Redis.
BLOB_FRESH_S = 2.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def now_us() -> int:
    """The current time in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def to_us(dt: datetime) -> int:
    """Exact microseconds since the epoch; a naive datetime is taken to be UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """Invert :func:`to_us` (an aware UTC datetime)."""
    return _EPOCH + timedelta(microseconds=us)


# --- key names ------------------------------------------------------------------------------

COMMIT = "commit:"
BLOB_META = "blob:meta:"
BLOB_DATA = "blob:data:"
BLOB_REF = "blob:ref:"
IDX_CREATED = "index:created"
IDX_LAST_ACCESSED = "index:last_accessed"
IDX_EXPIRES = "index:expires"
IDX_HASHES = "index:hashes"
IDX_ORPHANS = "index:orphans"
#: Blobs kept in the blob store (``blobs=``) whose objects are to be deleted (issue 16).
BLOBS_GONE = "blob:gone"
IDX_RUNNING = "leases:running"
STATS_BLOB = "stats:blob"
STATS_COMMIT = "stats:commit"
QUARANTINE = "quarantine"


class Keys:
    """The key names of one store prefix."""

    __slots__ = (
        "created",
        "expires",
        "hashes",
        "last_accessed",
        "orphans",
        "prefix",
        "quarantine",
        "running",
        "stats_blob",
        "stats_commit",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.created = prefix + IDX_CREATED
        self.last_accessed = prefix + IDX_LAST_ACCESSED
        self.expires = prefix + IDX_EXPIRES
        self.hashes = prefix + IDX_HASHES
        self.orphans = prefix + IDX_ORPHANS
        self.running = prefix + IDX_RUNNING
        self.stats_blob = prefix + STATS_BLOB
        self.stats_commit = prefix + STATS_COMMIT
        self.quarantine = prefix + QUARANTINE

    def commit(self, h: str) -> str:
        return f"{self.prefix}{COMMIT}{h}"

    def fp(self, fingerprint: str) -> str:
        return f"{self.prefix}index:fp:{fingerprint}"

    def hit(self, fingerprint: str) -> str:
        return f"{self.prefix}index:hit:{fingerprint}"

    def func(self, name: str) -> str:
        return f"{self.prefix}index:func:{name}"

    def status(self, status: TaskStatus) -> str:
        return f"{self.prefix}index:status:{status.value}"

    def tag(self, key: str, value: str | None = None) -> str:
        # The key's length makes "a" + "b:c" and "a:b" + "c" different keys.
        if value is None:
            return f"{self.prefix}index:tag:{len(key)}:{key}"
        return f"{self.prefix}index:tagv:{len(key)}:{key}:{value}"

    def blob_meta(self, h: str) -> str:
        return f"{self.prefix}{BLOB_META}{h}"

    def blob_data(self, h: str) -> str:
        return f"{self.prefix}{BLOB_DATA}{h}"

    def blob_chunk(self, h: str, gen: str, i: int) -> str:
        return f"{self.prefix}{BLOB_DATA}{h}:{gen}:{i}"

    def blob_ref(self, h: str) -> str:
        return f"{self.prefix}{BLOB_REF}{h}"

    def lock(self, fingerprint: str) -> str:
        return f"{self.prefix}lock:{fingerprint}"

    def channel(self, fingerprint: str) -> str:
        return f"{self.prefix}release:{fingerprint}"


# --- Lua ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, run by ``EVALSHA`` (loaded on the first ``NOSCRIPT``)."""

    name: str
    source: str
    sha: str


def _lua(name: str, **extra: str) -> str:
    """The text of ``scripts/<name>.lua`` with its ``${NAME}`` placeholders filled in from
    this module's constants (key names, limits: Python and Lua agree on them) and ``extra``."""
    text = (resources.files(__package__) / "scripts" / f"{name}.lua").read_text("utf-8")
    return string.Template(text).substitute(_LUA_CONSTANTS, **extra)


def _script(name: str, prelude: bool = True, body: str | None = None) -> Script:
    """The script ``scripts/<name>.lua`` (or ``body``), after the shared functions of
    ``_prelude.lua`` (whose ``ARGV[1]`` is the prefix) unless ``prelude`` is false."""
    text = _lua(name) if body is None else body
    source = (_PRELUDE + text) if prelude else text
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def _once(name: str) -> Script:
    """A script whose reply is kept for a while under its call's token (ARGV[2]), so that a
    call resent after a lost reply does nothing more and gets the first reply back
    (``_once.lua`` around ``<name>.lua``)."""
    return _script(name, body=_lua("_once", body=_lua(name)))


_LUA_CONSTANTS = {
    name: str(value)
    for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, str | int)
}
_PRELUDE = _lua("_prelude")

# ARGV: P, then the commit (see put_commit_at). Returns 1 recorded, 0 already there.
PUT_COMMIT = _script("put_commit")

# Store a small result, record its commit and release the lease, as one step: the end of
# a miss in one round trip. ARGV: P, lock key|'', owner, release channel, then the blob's 7
# arguments of put_blob_at (its hash '' when stored already), then the commit's.
PUT_RESULT = _script("put_result")

# The cache lookup, one round trip (a process that found the same commit before first
# confirms it with three plain reads instead, see _redis_ops.Ops._confirm: a tenth of the
# work for the single-threaded server): the newest unexpired commit of KEYS[1] (the
# fingerprint's hit index) whose result blob is present. ARGV: P, now, the commit whose
# JSON the caller has, the blob whose bytes it has. Returns nil or one string (one bulk
# reply parses fastest): "<hash> <last access> <JSON length>\n<JSON><blob bytes>", the JSON
# empty when the caller has it, the blob bytes only when small and not held by the caller.
# No prelude: this is the hot path, and the prelude's closures cost a microsecond a call.
FIND = _script("find", prelude=False)

# KEYS[1]: the fingerprint index. Returns {body, last access} of its newest commit.
LATEST = _script("latest")

# KEYS: index keys to intersect. ARGV: P, limit (-1: all). Returns body, la, ... newest first.
LIST = _script("list")

# ARGV: P, hash, now. Unexpired commits of the hash's fingerprint, oldest first.
HISTORY = _script("history")

# ARGV: P, min score, offset, count. Returns score, body, la, ... oldest first.
ITER = _script("iter")

# ARGV: P, hash, last access.
TOUCH = _script("touch")

STATS = _script("stats")

# ARGV: P, token, then (hash, hits, last hit µs, seconds saved) per commit. Returns how many
# commits existed.
ADD_HITS = _once("add_hits")

# ARGV: P, hashes... Returns hits, last hit µs ('' when none) per hash.
HIT_COUNTS = _script("hit_counts")


# ARGV: P, token, hashes... Returns how many existed.
DELETE = _once("delete")

# KEYS: tag index keys (intersected). ARGV: P, token.
DELETE_TAGS = _once("delete_tags")

# KEYS[1]: an index. ARGV: P, token, max score (a '(' prefix excludes it), batch.
# Returns {deleted, looked at}.
DELETE_RANGE = _once("delete_range")

# ARGV: P, token, max stored bytes, batch. Drops least recently used commits until the
# stored bytes fit. Returns {deleted, done}.
SHRINK = _once("shrink")

# ARGV: P, token, stored before, batch. Frees blobs unreferenced since before the bound.
GC_ORPHANS = _once("gc_orphans")

# ARGV: P, then the blob (see put_blob_at). Returns 0 when an intact copy was already
# there, 1 when written (or repaired).
PUT_BLOB = _script("put_blob")

# ARGV: P, hash, now, refresh ('1': re-date an unreferenced blob). 1 when stored intact.
HAVE_BLOB = _script("have_blob")

# ARGV: P, hash, size, stored size, inline, now, generation, chunks.
# Publishes chunks already written (with an expiry). Returns 1 published, 0 an intact copy
# was already there (ours are dropped), -1 some of ours are gone.
PUBLISH_CHUNKED = _script("publish_chunked")

# ARGV: P, hash, max bytes to return. {stored size, chunks, generation, bytes|nil} or nil.
GET_BLOB = _script("get_blob")

# ARGV: P, hash, generation. Drops a blob found corrupt, unless it was rewritten since.
DISCARD_BLOB = _script("discard_blob")

# ARGV: P, hash, body as found ('' for none), entry JSON, its field. Sets a damaged commit
# aside (see scripts/quarantine.lua). Returns 1 when the commit was moved out.
QUARANTINE_COMMIT = _script("quarantine")

# KEYS[1]: the lock, KEYS[2]: the running index. ARGV: owner, expires, host, pid, function,
# now, key ttl (ms), fingerprint.
# Takes the lease when it is free, ours or expired: 1; else the holder's fields.
CLAIM = _script("claim", prelude=False)

# KEYS as CLAIM's. ARGV: holder's owner, holder's expiry, then CLAIM's ARGV.
# Replaces the lease only if it is still the one judged dead.
TAKEOVER = _script("takeover", prelude=False)

# KEYS as CLAIM's. ARGV: owner, expires, key ttl (ms), fingerprint.
RENEW = _script("renew", prelude=False)

# KEYS[1]: the running index. ARGV: the lock key prefix, now (µs), at most how many.
# The live leases: {fingerprint, o, e, h, p, f, c} each; drops members whose lease is gone.
RUNNING = _script("running", prelude=False)

# KEYS[1]: the lock. ARGV: P, owner, release channel.
RELEASE = _script("release")

SCRIPTS: tuple[Script, ...] = (
    PUT_COMMIT,
    PUT_RESULT,
    FIND,
    LATEST,
    LIST,
    HISTORY,
    ITER,
    TOUCH,
    STATS,
    ADD_HITS,
    HIT_COUNTS,
    DELETE,
    DELETE_TAGS,
    DELETE_RANGE,
    SHRINK,
    GC_ORPHANS,
    PUT_BLOB,
    HAVE_BLOB,
    PUBLISH_CHUNKED,
    GET_BLOB,
    DISCARD_BLOB,
    QUARANTINE_COMMIT,
    CLAIM,
    TAKEOVER,
    RENEW,
    RELEASE,
    RUNNING,
)
