
local c = redis.call('HMGET', K_SCOMMIT, 'total_commits', 'completed_commits')
local b = redis.call('HMGET', K_SBLOB, 'blob_objects', 'blob_bytes', 'inline_objects',
  'inline_bytes')
return {c[1], c[2], b[1], b[2], b[3], b[4]}
