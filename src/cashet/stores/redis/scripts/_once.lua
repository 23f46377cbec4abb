
local DONE = P .. 'done:' .. ARGV[2]
local kept = redis.call('GET', DONE)
if kept then return cjson.decode(kept) end
local function run()
${body}
end
local out = run()
redis.call('SET', DONE, cjson.encode(out), 'PX', ${DONE_TTL_MS})
return out
