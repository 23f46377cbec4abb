
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
