
local max, n = tonumber(ARGV[3]), 0
while n < tonumber(ARGV[4]) do
  local b = redis.call('HMGET', K_SBLOB, 'blob_bytes', 'inline_bytes')
  if tonumber(b[1] or '0') + tonumber(b[2] or '0') <= max then return {n, 1} end
  local ids = redis.call('ZRANGE', P .. '${IDX_LAST_ACCESSED}', 0, 0)
  if #ids == 0 then return {n, 1} end
  n = n + delete_commit(ids[1])
end
return {n, 0}
