-- Claim outbox entries whose time has come (their writer died or is stuck), for one more grace:
-- another worker's redrive then leaves them alone until the lease ends.
-- KEYS[1]: the shard's outbox hash, KEYS[2]: its claim-time zset.
-- ARGV[1]: now (ms), ARGV[2]: the lease's end (ms), ARGV[3]: at most this many.
-- Returns field, entry, field, entry, ...
local fields = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, field in ipairs(fields) do
  local entry = redis.call('HGET', KEYS[1], field)
  if entry then
    redis.call('ZADD', KEYS[2], ARGV[2], field)
    claimed[#claimed + 1] = field
    claimed[#claimed + 1] = entry
  else
    redis.call('ZREM', KEYS[2], field)
  end
end
return claimed
