
local h, g, n = ARGV[2], ARGV[7], tonumber(ARGV[8])
local m = redis.call('HMGET', K_META .. h, 'z', 'n', 'g', 'i')
if m[1] and m[3] == g then return 1 end  -- ours, published already: this call was resent
if blob_intact(h, m) then
  for i = 0, n - 1 do redis.call('DEL', chunk_key(h, g, i)) end
  keep_if_orphan(h, ARGV[6])
  return 0
end
for i = 0, n - 1 do
  if redis.call('EXISTS', chunk_key(h, g, i)) == 0 then
    for j = 0, n - 1 do redis.call('DEL', chunk_key(h, g, j)) end
    return -1
  end
end
if m[1] then drop_blob(h) end
for i = 0, n - 1 do redis.call('PERSIST', chunk_key(h, g, i)) end
redis.call('HSET', K_META .. h, 's', ARGV[3], 'z', ARGV[4], 'n', n, 'g', g, 'i', ARGV[5],
  't', ARGV[6])
account(ARGV[4], ARGV[5], 1)
keep_if_orphan(h, ARGV[6])
return 1
