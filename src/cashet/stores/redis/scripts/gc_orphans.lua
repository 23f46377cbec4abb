
local ids = redis.call('ZRANGEBYSCORE', K_ORPHANS, '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
for _, h in ipairs(ids) do
  if tonumber(redis.call('GET', K_REF .. h) or '0') <= 0 then
    drop_blob(h)
  else
    redis.call('ZREM', K_ORPHANS, h)
  end
end
return #ids
