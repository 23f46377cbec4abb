
-- ARGV[3..]: (hash, hits, last hit µs, seconds saved) per commit hit. Adds to the commit's
-- hits ('hn', 'hl', 'hs') and to the totals, and moves its last access (never back); a
-- commit gone since is skipped. Run once per token (a resent batch adds nothing).
local added = 0
for i = 3, #ARGV, 4 do
  local h = ARGV[i]
  local ck = K_COMMIT .. h
  if redis.call('EXISTS', ck) == 1 then
    local last = tonumber(ARGV[i + 2])
    redis.call('HINCRBY', ck, 'hn', ARGV[i + 1])
    redis.call('HINCRBYFLOAT', ck, 'hs', ARGV[i + 3])
    if last > tonumber(redis.call('HGET', ck, 'hl') or '0') then
      redis.call('HSET', ck, 'hl', ARGV[i + 2])
    end
    if last > tonumber(redis.call('HGET', ck, 'la') or '0') then
      redis.call('HSET', ck, 'la', ARGV[i + 2])
      redis.call('ZADD', P .. '${IDX_LAST_ACCESSED}', ARGV[i + 2], h)
    end
    redis.call('HINCRBY', K_SCOMMIT, 'hits', ARGV[i + 1])
    redis.call('HINCRBYFLOAT', K_SCOMMIT, 'hits_saved', ARGV[i + 3])
    added = added + 1
  end
end
return added
