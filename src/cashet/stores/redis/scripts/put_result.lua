
if ARGV[5] ~= '' then put_blob_at(5) end
put_commit_at(12)
if ARGV[2] ~= '' then release_lease(ARGV[2], ARGV[3], ARGV[4]) end
return 1
