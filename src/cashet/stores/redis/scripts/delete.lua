
local n = 0
for i = 3, #ARGV do n = n + delete_commit(ARGV[i]) end
return n
