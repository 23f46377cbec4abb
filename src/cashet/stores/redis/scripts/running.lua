
-- The calls in flight: every member of the running index whose lock still holds a lease.
-- Members whose lock key is gone (released without the index, or expired) are dropped.
local out = {}
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, fp in ipairs(members) do
  local cur = redis.call('HMGET', ARGV[1] .. fp, 'o', 'e', 'h', 'p', 'f', 'c')
  if not cur[1] then
    redis.call('ZREM', KEYS[1], fp)
  elseif #out < tonumber(ARGV[3]) then
    out[#out + 1] = {fp, cur[1], cur[2], cur[3], cur[4], cur[5], cur[6]}
  end
end
return out
