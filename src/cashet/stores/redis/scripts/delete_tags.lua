
local n = 0
for _, h in ipairs(ids_of(KEYS)) do n = n + delete_commit(h) end
return n
