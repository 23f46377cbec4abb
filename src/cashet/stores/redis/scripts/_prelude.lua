
local P = ARGV[1]
local K_COMMIT, K_META = P .. '${COMMIT}', P .. '${BLOB_META}'
local K_DATA, K_REF = P .. '${BLOB_DATA}', P .. '${BLOB_REF}'
local K_ORPHANS = P .. '${IDX_ORPHANS}'
local K_SBLOB, K_SCOMMIT = P .. '${STATS_BLOB}', P .. '${STATS_COMMIT}'

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
  if n == -1 then return true end  -- in the blob store, verified when read
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
  if n == -1 then
    redis.call('SADD', P .. '${BLOBS_GONE}', h)  -- the store deletes the object
  elseif n == 0 then
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
  local c = redis.call('HMGET', ck, 'x', 'r', 'c', 'hn', 'hs')
  if not c[1] then return 0 end
  if c[4] then  -- its hits leave the totals with it
    redis.call('HINCRBY', K_SCOMMIT, 'hits', -tonumber(c[4]))
    redis.call('HINCRBYFLOAT', K_SCOMMIT, 'hits_saved', -tonumber(c[5] or '0'))
  end
  for _, k in ipairs(cjson.decode(c[1])) do redis.call('ZREM', k, h) end
  redis.call('ZREM', P .. '${IDX_CREATED}', h)
  redis.call('ZREM', P .. '${IDX_LAST_ACCESSED}', h)
  redis.call('ZREM', P .. '${IDX_EXPIRES}', h)
  redis.call('ZREM', P .. '${IDX_HASHES}', h)
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
  local n = -1  -- inline 'e': the bytes are in the blob store (blobs=), none here
  if ARGV[o + 3] ~= 'e' then
    n = 0
    redis.call('SET', K_DATA .. h, ARGV[o + 6])
  end
  redis.call('SREM', P .. '${BLOBS_GONE}', h)
  redis.call('HSET', K_META .. h, 's', ARGV[o + 1], 'z', ARGV[o + 2], 'n', n,
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
  redis.call('ZADD', P .. '${IDX_CREATED}', ca, h)
  redis.call('ZADD', P .. '${IDX_LAST_ACCESSED}', ARGV[o + 2], h)
  redis.call('ZADD', P .. '${IDX_HASHES}', 0, h)
  local exp, res = ARGV[o + 3], ARGV[o + 5]
  if exp ~= '' then
    redis.call('HSET', ck, 'e', exp)
    redis.call('ZADD', P .. '${IDX_EXPIRES}', exp, h)
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
  -- lock = P .. 'lock:' .. fingerprint
  redis.call('ZREM', P .. '${IDX_RUNNING}', string.sub(lock, #P + 6))
  redis.call('PUBLISH', channel, '1')
  return 1
end

local function ids_of(keys)
  if #keys == 1 then return redis.call('ZRANGE', keys[1], 0, -1) end
  return redis.call('ZINTER', #keys, unpack(keys))
end
