#!lua flags=no-writes
-- (no-writes: it runs while Redis refuses writes, e.g. paused or out of memory, so reads keep working)
-- Sum integer hashes field by field: KEYS are the hashes (one slot on a cluster), the reply is
-- a flat [field, total, ...]. Generic addition only: what the totals mean is the core's.
local totals, order = {}, {}
for _, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local field = flat[i]
    if totals[field] == nil then
      totals[field] = 0
      order[#order + 1] = field
    end
    totals[field] = totals[field] + tonumber(flat[i + 1])
  end
end
local reply = {}
for _, field in ipairs(order) do
  reply[#reply + 1] = field
  reply[#reply + 1] = string.format('%.0f', totals[field])
end
return reply
