
local m = redis.call('HMGET', K_META .. ARGV[2], 'z', 'n', 'g', 'i')
if not blob_intact(ARGV[2], m) then return 0 end
if ARGV[4] == '1' then keep_if_orphan(ARGV[2], ARGV[3]) end
return 1
