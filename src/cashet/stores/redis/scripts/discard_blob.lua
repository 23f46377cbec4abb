
if redis.call('HGET', K_META .. ARGV[2], 'g') ~= ARGV[3] then return 0 end
return drop_blob(ARGV[2])
