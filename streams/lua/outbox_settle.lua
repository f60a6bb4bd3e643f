-- Delete published outbox entries: each field only while it still holds the output that was sent
-- (a newer score card of the same customer may have replaced it meanwhile; that one stays).
-- KEYS[1]: the shard's outbox hash, KEYS[2]: its claim-time zset. ARGV: field, output id, ...
local deleted = 0
for i = 1, #ARGV, 2 do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry and string.sub(entry, 1, #ARGV[i + 1] + 2) == '["' .. ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    deleted = deleted + 1
  end
end
return deleted
