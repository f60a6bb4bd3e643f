-- Delete published outbox entries: each field only while it still holds the output that was sent
-- (a newer score card of the same customer may have replaced it meanwhile; that one stays).
-- KEYS: outbox hash, claim-time zset, outbox hash, claim-time zset, ... (one pair per shard).
-- ARGV: triples of (index of the shard's outbox hash in KEYS, field, output id).
local deleted = 0
for i = 1, #ARGV, 3 do
  local hash = KEYS[tonumber(ARGV[i])]
  local field, id = ARGV[i + 1], ARGV[i + 2]
  local entry = redis.call('HGET', hash, field)
  if entry and string.sub(entry, 1, #id + 2) == '["' .. id then
    redis.call('HDEL', hash, field)
    redis.call('ZREM', KEYS[tonumber(ARGV[i]) + 1], field)
    deleted = deleted + 1
  end
end
return deleted
