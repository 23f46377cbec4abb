"""The Redis stores' data layout, free of IO: key names, Lua scripts, time and URL helpers.

The operations built on them are in :mod:`cashet.stores.redis.ops`; the stores that run
those operations are in :mod:`cashet.stores.redis.store`.

Key layout (``P`` is the store's prefix, ``cashet:`` by default)::

    P commit:{hash}               HASH  b (commit JSON)  la (last access, µs)  e (expiry, µs)
                                        r (result blob)  c (1 if completed)  f (its fp index)
                                        x (JSON list of the index keys it is in)
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
    P stats:blob / stats:commit   HASH  counters behind ``stats()`` (O(1))
    P lock:{fingerprint}          HASH  the lease: o (owner) e (expiry, µs) h (host) p (pid)
                                        f (function) c (claimed at, µs); key TTL = lease + grace
    P release:{fingerprint}       pub/sub channel, published when a lease is released
    P done:{token}                STRING the reply of a counting script (delete, evict), kept
                                        10 minutes so that a resent call gets it back

Every multi-key change is one Lua script, so a client killed mid-write leaves nothing half
done. A blob is trusted only through its meta key: chunks are written first with an expiry,
then a script checks them, drops the expiry and publishes the meta key. Times are integer
microseconds since the epoch (exact in a double, so ZSET scores and Lua compare them
exactly). The scripts build key names from the prefix, so they need a single Redis (not a
cluster); the prefix lets several caches share one.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cashet.models import TaskStatus

__all__ = [
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


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for error messages."""
    url = re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


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
STATS_BLOB = "stats:blob"
STATS_COMMIT = "stats:commit"


class Keys:
    """The key names of one store prefix."""

    __slots__ = (
        "created",
        "expires",
        "hashes",
        "last_accessed",
        "orphans",
        "prefix",
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
        self.stats_blob = prefix + STATS_BLOB
        self.stats_commit = prefix + STATS_COMMIT

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


def _script(name: str, body: str, prelude: bool = True) -> Script:
    source = (_PRELUDE + body) if prelude else body
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


# ARGV[1] is the prefix in every script that uses the prelude.
_PRELUDE = f"""
local P = ARGV[1]
local K_COMMIT, K_META = P .. '{COMMIT}', P .. '{BLOB_META}'
local K_DATA, K_REF = P .. '{BLOB_DATA}', P .. '{BLOB_REF}'
local K_ORPHANS = P .. '{IDX_ORPHANS}'
local K_SBLOB, K_SCOMMIT = P .. '{STATS_BLOB}', P .. '{STATS_COMMIT}'

local function chunk_key(h, g, i) return K_DATA .. h .. ':' .. g .. ':' .. i end

local function account(size, inline, sign)
  local kind = (inline == '1') and 'inline' or 'blob'
  redis.call('HINCRBY', K_SBLOB, kind .. '_objects', sign)
  redis.call('HINCRBY', K_SBLOB, kind .. '_bytes', sign * tonumber(size))
end

-- m = HMGET meta z n g i
local function blob_intact(h, m)
  if not m[1] then return false end
  local n = tonumber(m[2])
  if n == 0 then return redis.call('STRLEN', K_DATA .. h) == tonumber(m[1]) end
  for i = 0, n - 1 do
    if redis.call('EXISTS', chunk_key(h, m[3], i)) == 0 then return false end
  end
  return true
end

-- Remove a blob's bytes, meta key and share of the stats; its reference count stays.
local function drop_blob(h)
  local mk = K_META .. h
  local m = redis.call('HMGET', mk, 'z', 'n', 'g', 'i')
  redis.call('ZREM', K_ORPHANS, h)
  if not m[1] then return 0 end
  local n = tonumber(m[2])
  if n == 0 then
    redis.call('DEL', K_DATA .. h)
  else
    for i = 0, n - 1 do redis.call('DEL', chunk_key(h, m[3], i)) end
  end
  redis.call('DEL', mk)
  account(m[1], m[4], -1)
  return 1
end

-- An unreferenced blob is (re)dated now, so GC spares it until its commit is recorded.
local function keep_if_orphan(h, now)
  if tonumber(redis.call('GET', K_REF .. h) or '0') <= 0 then
    redis.call('ZADD', K_ORPHANS, now, h)
  end
end

local function delete_commit(h)
  local ck = K_COMMIT .. h
  local c = redis.call('HMGET', ck, 'x', 'r', 'c')
  if not c[1] then return 0 end
  for _, k in ipairs(cjson.decode(c[1])) do redis.call('ZREM', k, h) end
  redis.call('ZREM', P .. '{IDX_CREATED}', h)
  redis.call('ZREM', P .. '{IDX_LAST_ACCESSED}', h)
  redis.call('ZREM', P .. '{IDX_EXPIRES}', h)
  redis.call('ZREM', P .. '{IDX_HASHES}', h)
  redis.call('DEL', ck)
  redis.call('HINCRBY', K_SCOMMIT, 'total_commits', -1)
  if c[3] == '1' then redis.call('HINCRBY', K_SCOMMIT, 'completed_commits', -1) end
  if c[2] then
    local rk = K_REF .. c[2]
    if redis.call('DECR', rk) <= 0 then
      redis.call('DEL', rk)
      drop_blob(c[2])
    end
  end
  return 1
end

-- ARGV[o..o+6]: hash, size, stored size, inline, now, generation, encoded bytes.
local function put_blob_at(o)
  local h, now = ARGV[o], ARGV[o + 4]
  local m = redis.call('HMGET', K_META .. h, 'z', 'n', 'g', 'i')
  if blob_intact(h, m) then
    keep_if_orphan(h, now)
    return 0
  end
  if m[1] then drop_blob(h) end
  redis.call('SET', K_DATA .. h, ARGV[o + 6])
  redis.call('HSET', K_META .. h, 's', ARGV[o + 1], 'z', ARGV[o + 2], 'n', 0,
    'g', ARGV[o + 5], 'i', ARGV[o + 3], 't', now)
  account(ARGV[o + 2], ARGV[o + 3], 1)
  keep_if_orphan(h, now)
  return 1
end

-- ARGV[o..]: hash, created, lru score, expires|'', completed '1'|'0', result|'', body,
-- last access|'', index-keys JSON, then the index keys (the fingerprint's first), to the end.
local function put_commit_at(o)
  local h, ca = ARGV[o], ARGV[o + 1]
  local ck = K_COMMIT .. h
  if redis.call('EXISTS', ck) == 1 then return 0 end
  for i = o + 9, #ARGV do redis.call('ZADD', ARGV[i], ca, h) end
  redis.call('HSET', ck, 'b', ARGV[o + 6], 'x', ARGV[o + 8], 'c', ARGV[o + 4], 'f', ARGV[o + 9])
  redis.call('ZADD', P .. '{IDX_CREATED}', ca, h)
  redis.call('ZADD', P .. '{IDX_LAST_ACCESSED}', ARGV[o + 2], h)
  redis.call('ZADD', P .. '{IDX_HASHES}', 0, h)
  local exp, res = ARGV[o + 3], ARGV[o + 5]
  if exp ~= '' then
    redis.call('HSET', ck, 'e', exp)
    redis.call('ZADD', P .. '{IDX_EXPIRES}', exp, h)
  end
  if ARGV[o + 7] ~= '' then redis.call('HSET', ck, 'la', ARGV[o + 7]) end
  redis.call('HINCRBY', K_SCOMMIT, 'total_commits', 1)
  if ARGV[o + 4] == '1' then redis.call('HINCRBY', K_SCOMMIT, 'completed_commits', 1) end
  if res ~= '' then
    redis.call('HSET', ck, 'r', res)
    redis.call('INCR', K_REF .. res)
    redis.call('ZREM', K_ORPHANS, res)
  end
  return 1
end

local function release_lease(lock, owner, channel)
  if redis.call('HGET', lock, 'o') ~= owner then return 0 end
  redis.call('DEL', lock)
  redis.call('PUBLISH', channel, '1')
  return 1
end

local function ids_of(keys)
  if #keys == 1 then return redis.call('ZRANGE', keys[1], 0, -1) end
  return redis.call('ZINTER', #keys, unpack(keys))
end
"""

# ARGV: P, then the commit (see put_commit_at). Returns 1 recorded, 0 already there.
PUT_COMMIT = _script("put_commit", "return put_commit_at(2)")

# Store a small result, record its commit and release the lease, as one step: the end of
# a miss in one round trip. ARGV: P, lock key|'', owner, release channel, then the blob's 7
# arguments of put_blob_at (its hash '' when stored already), then the commit's.
PUT_RESULT = _script(
    "put_result",
    """
if ARGV[5] ~= '' then put_blob_at(5) end
put_commit_at(12)
if ARGV[2] ~= '' then release_lease(ARGV[2], ARGV[3], ARGV[4]) end
return 1
""",
)

# The cache lookup, one round trip (a process that found the same commit before first
# confirms it with three plain reads instead, see _redis_ops.Ops._confirm: a tenth of the
# work for the single-threaded server): the newest unexpired commit of KEYS[1] (the
# fingerprint's hit index) whose result blob is present. ARGV: P, now, the commit whose
# JSON the caller has, the blob whose bytes it has. Returns nil or one string (one bulk
# reply parses fastest): "<hash> <last access> <JSON length>\n<JSON><blob bytes>", the JSON
# empty when the caller has it, the blob bytes only when small and not held by the caller.
# No prelude: this is the hot path, and the prelude's closures cost a microsecond a call.
FIND = _script(
    "find",
    f"""
local P, now = ARGV[1], tonumber(ARGV[2])
local K_COMMIT, K_META, K_DATA = P .. '{COMMIT}', P .. '{BLOB_META}', P .. '{BLOB_DATA}'
local start, stop = 0, 0
while true do
  local ids = redis.call('ZREVRANGE', KEYS[1], start, stop)
  if #ids == 0 then return false end
  for _, h in ipairs(ids) do
    local c = redis.call('HMGET', K_COMMIT .. h, 'c', 'e', 'r', 'la')
    if c[1] and ((not c[2]) or tonumber(c[2]) > now) then
      local ok, data = true, ''
      local r = c[3]
      if r then
        local m = redis.call('HMGET', K_META .. r, 'z', 'n', 'g')
        if not m[1] then
          ok = false
        elseif m[2] == '0' then
          if r ~= ARGV[4] and tonumber(m[1]) <= {HIT_BLOB_MAX} then
            data = redis.call('GET', K_DATA .. r)
            ok = data ~= false
          else
            ok = redis.call('EXISTS', K_DATA .. r) == 1
          end
        else
          local chunks = {{}}
          for i = 0, tonumber(m[2]) - 1 do
            chunks[#chunks + 1] = K_DATA .. r .. ':' .. m[3] .. ':' .. i
          end
          ok = redis.call('EXISTS', unpack(chunks)) == #chunks
        end
      end
      if ok then
        local body = ''
        if h ~= ARGV[3] then body = redis.call('HGET', K_COMMIT .. h, 'b') end
        return h .. ' ' .. (c[4] or '-') .. ' ' .. #body .. '\\n' .. body .. data
      end
    end
  end
  start, stop = stop + 1, stop + 16
end
""",
    prelude=False,
)

# KEYS[1]: the fingerprint index. Returns {body, last access} of its newest commit.
LATEST = _script(
    "latest",
    """
local ids = redis.call('ZREVRANGE', KEYS[1], 0, 0)
if #ids == 0 then return false end
return redis.call('HMGET', K_COMMIT .. ids[1], 'b', 'la')
""",
)

# KEYS: index keys to intersect. ARGV: P, limit (-1: all). Returns body, la, ... newest first.
LIST = _script(
    "list",
    """
local limit = tonumber(ARGV[2])
if limit == 0 then return {} end
local ids
if #KEYS == 1 then
  ids = redis.call('ZREVRANGE', KEYS[1], 0, limit < 0 and -1 or limit - 1)
else
  local all = redis.call('ZINTER', #KEYS, unpack(KEYS))
  ids = {}
  local stop = 1
  if limit > 0 and #all > limit then stop = #all - limit + 1 end
  for i = #all, stop, -1 do ids[#ids + 1] = all[i] end
end
local out = {}
for _, h in ipairs(ids) do
  local c = redis.call('HMGET', K_COMMIT .. h, 'b', 'la')
  out[#out + 1] = c[1]
  out[#out + 1] = c[2]
end
return out
""",
)

# ARGV: P, hash, now. Unexpired commits of the hash's fingerprint, oldest first.
HISTORY = _script(
    "history",
    """
local fk = redis.call('HGET', K_COMMIT .. ARGV[2], 'f')
if not fk then return {} end
local now = tonumber(ARGV[3])
local out = {}
for _, h in ipairs(redis.call('ZRANGE', fk, 0, -1)) do
  local c = redis.call('HMGET', K_COMMIT .. h, 'b', 'la', 'e')
  if c[1] and ((not c[3]) or tonumber(c[3]) > now) then
    out[#out + 1] = c[1]
    out[#out + 1] = c[2]
  end
end
return out
""",
)

# ARGV: P, min score, offset, count. Returns score, body, la, ... oldest first.
ITER = _script(
    "iter",
    f"""
local rows = redis.call('ZRANGE', P .. '{IDX_CREATED}', ARGV[2], '+inf', 'BYSCORE', 'LIMIT',
  ARGV[3], ARGV[4], 'WITHSCORES')
local out = {{}}
for i = 1, #rows, 2 do
  local c = redis.call('HMGET', K_COMMIT .. rows[i], 'b', 'la')
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = c[1]
  out[#out + 1] = c[2]
end
return out
""",
)

# ARGV: P, hash, last access.
TOUCH = _script(
    "touch",
    f"""
local ck = K_COMMIT .. ARGV[2]
if redis.call('EXISTS', ck) == 0 then return 0 end
redis.call('HSET', ck, 'la', ARGV[3])
redis.call('ZADD', P .. '{IDX_LAST_ACCESSED}', ARGV[3], ARGV[2])
return 1
""",
)

STATS = _script(
    "stats",
    """
local c = redis.call('HMGET', K_SCOMMIT, 'total_commits', 'completed_commits')
local b = redis.call('HMGET', K_SBLOB, 'blob_objects', 'blob_bytes', 'inline_objects',
  'inline_bytes')
return {c[1], c[2], b[1], b[2], b[3], b[4]}
""",
)


def _once(name: str, body: str) -> Script:
    """A script whose reply is kept for a while under its call's token (ARGV[2]), so that a
    call resent after a lost reply does nothing more and gets the first reply back."""
    return _script(
        name,
        f"""
local DONE = P .. 'done:' .. ARGV[2]
local kept = redis.call('GET', DONE)
if kept then return cjson.decode(kept) end
local function run()
{body}
end
local out = run()
redis.call('SET', DONE, cjson.encode(out), 'PX', {DONE_TTL_MS})
return out
""",
    )


# ARGV: P, token, hashes... Returns how many existed.
DELETE = _once(
    "delete",
    """
local n = 0
for i = 3, #ARGV do n = n + delete_commit(ARGV[i]) end
return n
""",
)

# KEYS: tag index keys (intersected). ARGV: P, token.
DELETE_TAGS = _once(
    "delete_tags",
    """
local n = 0
for _, h in ipairs(ids_of(KEYS)) do n = n + delete_commit(h) end
return n
""",
)

# KEYS[1]: an index. ARGV: P, token, max score (a '(' prefix excludes it), batch.
# Returns {deleted, looked at}.
DELETE_RANGE = _once(
    "delete_range",
    """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
local n = 0
for _, h in ipairs(ids) do n = n + delete_commit(h) end
return {n, #ids}
""",
)

# ARGV: P, token, max stored bytes, batch. Drops least recently used commits until the
# stored bytes fit. Returns {deleted, done}.
SHRINK = _once(
    "shrink",
    f"""
local max, n = tonumber(ARGV[3]), 0
while n < tonumber(ARGV[4]) do
  local b = redis.call('HMGET', K_SBLOB, 'blob_bytes', 'inline_bytes')
  if tonumber(b[1] or '0') + tonumber(b[2] or '0') <= max then return {{n, 1}} end
  local ids = redis.call('ZRANGE', P .. '{IDX_LAST_ACCESSED}', 0, 0)
  if #ids == 0 then return {{n, 1}} end
  n = n + delete_commit(ids[1])
end
return {{n, 0}}
""",
)

# ARGV: P, token, stored before, batch. Frees blobs unreferenced since before the bound.
GC_ORPHANS = _once(
    "gc_orphans",
    """
local ids = redis.call('ZRANGEBYSCORE', K_ORPHANS, '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
for _, h in ipairs(ids) do
  if tonumber(redis.call('GET', K_REF .. h) or '0') <= 0 then
    drop_blob(h)
  else
    redis.call('ZREM', K_ORPHANS, h)
  end
end
return #ids
""",
)

# ARGV: P, then the blob (see put_blob_at). Returns 0 when an intact copy was already
# there, 1 when written (or repaired).
PUT_BLOB = _script("put_blob", "return put_blob_at(2)")

# ARGV: P, hash, now, refresh ('1': re-date an unreferenced blob). 1 when stored intact.
HAVE_BLOB = _script(
    "have_blob",
    """
local m = redis.call('HMGET', K_META .. ARGV[2], 'z', 'n', 'g', 'i')
if not blob_intact(ARGV[2], m) then return 0 end
if ARGV[4] == '1' then keep_if_orphan(ARGV[2], ARGV[3]) end
return 1
""",
)

# ARGV: P, hash, size, stored size, inline, now, generation, chunks.
# Publishes chunks already written (with an expiry). Returns 1 published, 0 an intact copy
# was already there (ours are dropped), -1 some of ours are gone.
PUBLISH_CHUNKED = _script(
    "publish_chunked",
    """
local h, g, n = ARGV[2], ARGV[7], tonumber(ARGV[8])
local m = redis.call('HMGET', K_META .. h, 'z', 'n', 'g', 'i')
if m[1] and m[3] == g then return 1 end  -- ours, published already: this call was resent
if blob_intact(h, m) then
  for i = 0, n - 1 do redis.call('DEL', chunk_key(h, g, i)) end
  keep_if_orphan(h, ARGV[6])
  return 0
end
for i = 0, n - 1 do
  if redis.call('EXISTS', chunk_key(h, g, i)) == 0 then
    for j = 0, n - 1 do redis.call('DEL', chunk_key(h, g, j)) end
    return -1
  end
end
if m[1] then drop_blob(h) end
for i = 0, n - 1 do redis.call('PERSIST', chunk_key(h, g, i)) end
redis.call('HSET', K_META .. h, 's', ARGV[3], 'z', ARGV[4], 'n', n, 'g', g, 'i', ARGV[5],
  't', ARGV[6])
account(ARGV[4], ARGV[5], 1)
keep_if_orphan(h, ARGV[6])
return 1
""",
)

# ARGV: P, hash, max bytes to return. {stored size, chunks, generation, bytes|nil} or nil.
GET_BLOB = _script(
    "get_blob",
    """
local m = redis.call('HMGET', K_META .. ARGV[2], 'z', 'n', 'g')
if not m[1] then return false end
local data = false
if m[2] == '0' and tonumber(m[1]) <= tonumber(ARGV[3]) then
  data = redis.call('GET', K_DATA .. ARGV[2])
end
return {m[1], m[2], m[3], data}
""",
)

# ARGV: P, hash, generation. Drops a blob found corrupt, unless it was rewritten since.
DISCARD_BLOB = _script(
    "discard_blob",
    """
if redis.call('HGET', K_META .. ARGV[2], 'g') ~= ARGV[3] then return 0 end
return drop_blob(ARGV[2])
""",
)

# KEYS[1]: the lock. ARGV: owner, expires, host, pid, function, now, key ttl (ms).
# Takes the lease when it is free, ours or expired: 1; else the holder's fields.
CLAIM = _script(
    "claim",
    """
local cur = redis.call('HMGET', KEYS[1], 'o', 'e', 'h', 'p', 'f', 'c')
if cur[1] and cur[1] ~= ARGV[1] and tonumber(cur[2]) > tonumber(ARGV[6]) then return cur end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'o', ARGV[1], 'e', ARGV[2], 'h', ARGV[3], 'p', ARGV[4],
  'f', ARGV[5], 'c', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
""",
    prelude=False,
)

# KEYS[1]: the lock. ARGV: holder's owner, holder's expiry, then CLAIM's ARGV.
# Replaces the lease only if it is still the one judged dead.
TAKEOVER = _script(
    "takeover",
    """
local cur = redis.call('HMGET', KEYS[1], 'o', 'e')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'o', ARGV[3], 'e', ARGV[4], 'h', ARGV[5], 'p', ARGV[6],
  'f', ARGV[7], 'c', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
return 1
""",
    prelude=False,
)

# KEYS[1]: the lock. ARGV: owner, expires, key ttl (ms).
RENEW = _script(
    "renew",
    """
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
""",
    prelude=False,
)

# KEYS[1]: the lock. ARGV: P, owner, release channel.
RELEASE = _script("release", "return release_lease(KEYS[1], ARGV[2], ARGV[3])")

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
    CLAIM,
    TAKEOVER,
    RENEW,
    RELEASE,
)
