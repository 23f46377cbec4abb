
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
