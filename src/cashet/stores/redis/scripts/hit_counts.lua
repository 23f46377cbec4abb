
-- ARGV[2..]: commit hashes. Returns hits and last hit µs ('' when none) per hash.
local out = {}
for i = 2, #ARGV do
  local m = redis.call('HMGET', K_COMMIT .. ARGV[i], 'hn', 'hl')
  out[#out + 1] = m[1] or ''
  out[#out + 1] = m[2] or ''
end
return out
