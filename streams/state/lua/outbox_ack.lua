-- Delete published outbox entries: each field only while it still holds the output that was sent
-- (a newer score card of the same customer may have replaced it meanwhile; that one stays).
-- KEYS: outbox hash, claim-time zset, outbox hash, claim-time zset, ... (one pair per shard).
-- ARGV: triples of (index of the shard's outbox hash in KEYS, field, output id).
-- Three commands per shard and slice of fields (HMGET, HDEL, ZREM), not three per output.
local SLICE = 500                 -- fields per command: Lua's unpack stops near 8,000 arguments
local groups, order = {}, {}
for i = 1, #ARGV, 3 do
  local k = tonumber(ARGV[i])
  local g = groups[k]
  if not g then
    g = {fields = {}, ids = {}}
    groups[k] = g
    order[#order + 1] = k
  end
  g.fields[#g.fields + 1] = ARGV[i + 1]
  g.ids[#g.ids + 1] = ARGV[i + 2]
end
local deleted = 0
for _, k in ipairs(order) do
  local g = groups[k]
  for first = 1, #g.fields, SLICE do
    local last = math.min(first + SLICE - 1, #g.fields)
    local entries = redis.call('HMGET', KEYS[k], unpack(g.fields, first, last))
    local gone, marked = {}, {}
    for j = first, last do
      local entry, id, field = entries[j - first + 1], g.ids[j], g.fields[j]
      if entry and not marked[field] and string.sub(entry, 1, #id + 2) == '["' .. id then
        gone[#gone + 1] = field
        marked[field] = true
      end
    end
    if #gone > 0 then
      redis.call('HDEL', KEYS[k], unpack(gone))
      redis.call('ZREM', KEYS[k + 1], unpack(gone))
      deleted = deleted + #gone
    end
  end
end
return deleted
