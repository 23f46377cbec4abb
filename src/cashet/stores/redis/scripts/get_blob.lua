
local m = redis.call('HMGET', K_META .. ARGV[2], 'z', 'n', 'g')
if not m[1] then return false end
local data = false
if m[2] == '0' and tonumber(m[1]) <= tonumber(ARGV[3]) then
  data = redis.call('GET', K_DATA .. ARGV[2])
end
return {m[1], m[2], m[3], data}
