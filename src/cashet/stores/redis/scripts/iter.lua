
local rows = redis.call('ZRANGE', P .. '${IDX_CREATED}', ARGV[2], '+inf', 'BYSCORE', 'LIMIT',
  ARGV[3], ARGV[4], 'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  local c = redis.call('HMGET', K_COMMIT .. rows[i], 'b', 'la')
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = c[1]
  out[#out + 1] = c[2]
end
return out
