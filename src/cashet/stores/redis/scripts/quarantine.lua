
-- ARGV: P, hash, the commit's body as found, the entry (JSON), its field in the quarantine
-- hash. Records the entry; when a body is given and the commit still holds it, the commit is
-- removed like a delete (its index list must decode, else it stays, recorded). Safe to resend.
local h, body = ARGV[2], ARGV[3]
redis.call('HSET', P .. '${QUARANTINE}', ARGV[5], ARGV[4])
if body == '' or redis.call('HGET', K_COMMIT .. h, 'b') ~= body then return 0 end
local x = redis.call('HGET', K_COMMIT .. h, 'x')
if not x or not pcall(cjson.decode, x) then return 0 end
return delete_commit(h)
