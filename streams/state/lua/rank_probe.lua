#!lua flags=no-writes
-- (no-writes: it runs while Redis refuses writes, e.g. paused or out of memory, so reads keep working)
-- One round of a selection over lex-ordered sorted sets (KEYS, one slot on a cluster).
-- ARGV[1], ARGV[2]: the range [lo, hi) of key prefixes; ARGV[3..]: bounds. Reply: the least and
-- greatest member in the range over all KEYS ("" when none), then for each bound how many
-- members sort below it, summed over KEYS. Counting only: what the keys mean is the core's.
local lo, hi = '[' .. ARGV[1], '(' .. ARGV[2]
local least, greatest = '', ''
local counts = {}
for b = 3, #ARGV do counts[b - 2] = 0 end
for _, key in ipairs(KEYS) do
  local first = redis.call('ZRANGEBYLEX', key, lo, hi, 'LIMIT', 0, 1)[1]
  local last = redis.call('ZREVRANGEBYLEX', key, hi, lo, 'LIMIT', 0, 1)[1]
  if first and (least == '' or first < least) then least = first end
  if last and (greatest == '' or last > greatest) then greatest = last end
  for b = 3, #ARGV do
    counts[b - 2] = counts[b - 2] + redis.call('ZLEXCOUNT', key, '-', '(' .. ARGV[b])
  end
end
local reply = {least, greatest}
for i = 1, #counts do reply[#reply + 1] = counts[i] end
return reply
