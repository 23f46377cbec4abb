
local cur = redis.call('HMGET', KEYS[1], 'o', 'e')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'o', ARGV[3], 'e', ARGV[4], 'h', ARGV[5], 'p', ARGV[6],
  'f', ARGV[7], 'c', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[10])
return 1
