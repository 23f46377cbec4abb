
local ck = K_COMMIT .. ARGV[2]
if redis.call('EXISTS', ck) == 0 then return 0 end
redis.call('HSET', ck, 'la', ARGV[3])
redis.call('ZADD', P .. '${IDX_LAST_ACCESSED}', ARGV[3], ARGV[2])
return 1
