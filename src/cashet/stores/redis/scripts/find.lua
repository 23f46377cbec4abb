
local P, now = ARGV[1], tonumber(ARGV[2])
local K_COMMIT, K_META, K_DATA = P .. '${COMMIT}', P .. '${BLOB_META}', P .. '${BLOB_DATA}'
local start, stop = 0, 0
while true do
  local ids = redis.call('ZREVRANGE', KEYS[1], start, stop)
  if #ids == 0 then return false end
  for _, h in ipairs(ids) do
    local c = redis.call('HMGET', K_COMMIT .. h, 'c', 'e', 'r', 'la')
    if c[1] and ((not c[2]) or tonumber(c[2]) > now) then
      local ok, data = true, ''
      local r = c[3]
      if r then
        local m = redis.call('HMGET', K_META .. r, 'z', 'n', 'g')
        if not m[1] then
          ok = false
        elseif m[2] == '-1' then
          ok = true  -- in the blob store: read (and verified) when loaded
        elseif m[2] == '0' then
          if r ~= ARGV[4] and tonumber(m[1]) <= ${HIT_BLOB_MAX} then
            data = redis.call('GET', K_DATA .. r)
            ok = data ~= false
          else
            ok = redis.call('EXISTS', K_DATA .. r) == 1
          end
        else
          local chunks = {}
          for i = 0, tonumber(m[2]) - 1 do
            chunks[#chunks + 1] = K_DATA .. r .. ':' .. m[3] .. ':' .. i
          end
          ok = redis.call('EXISTS', unpack(chunks)) == #chunks
        end
      end
      if ok then
        local body = ''
        if h ~= ARGV[3] then body = redis.call('HGET', K_COMMIT .. h, 'b') end
        return h .. ' ' .. (c[4] or '-') .. ' ' .. #body .. '\n' .. body .. data
      end
    end
  end
  start, stop = stop + 1, stop + 16
end
