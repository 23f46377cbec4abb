
local ids = redis.call('ZREVRANGE', KEYS[1], 0, 0)
if #ids == 0 then return false end
return redis.call('HMGET', K_COMMIT .. ids[1], 'b', 'la')
