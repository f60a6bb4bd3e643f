#!lua flags=no-writes
-- (no-writes: it runs while Redis refuses writes, so batch lookups keep working)
-- Many reads of one kind in one call: KEYS share a slot (one state shard); the reply holds
-- one entry per key, in order: GET (nil when absent), or SMEMBERS.
-- One call per shard instead of a command per key: a batch lookup of 1,000 customers is 16
-- replies for the client to parse, not 1,000.
local out = {}
if ARGV[1] == 'GET' then
  for i, key in ipairs(KEYS) do out[i] = redis.call('GET', key) end
elseif ARGV[1] == 'SMEMBERS' then
  for i, key in ipairs(KEYS) do out[i] = redis.call('SMEMBERS', key) end
else
  return redis.error_reply('read_many: ARGV[1] must be GET or SMEMBERS')
end
return out
