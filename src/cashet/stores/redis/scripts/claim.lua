
local cur = redis.call('HMGET', KEYS[1], 'o', 'e', 'h', 'p', 'f', 'c')
if cur[1] and cur[1] ~= ARGV[1] and tonumber(cur[2]) > tonumber(ARGV[6]) then return cur end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'o', ARGV[1], 'e', ARGV[2], 'h', ARGV[3], 'p', ARGV[4],
  'f', ARGV[5], 'c', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[8])
return 1
