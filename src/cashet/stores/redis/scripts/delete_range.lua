
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
local n = 0
for _, h in ipairs(ids) do n = n + delete_commit(h) end
return {n, #ids}
