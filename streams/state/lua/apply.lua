-- Apply one shard's changes atomically, or nothing when a customer moved on since it was read.
-- Answers -1, applying nothing, when a "config" key names another scoring config than the write's
-- (a newer worker adopted one).
-- KEYS: every key touched (one hash slot). ARGV[1]: JSON {"config": [[key index, fingerprint]],
-- "check": [[key index, read token, width]],
-- "ops": [[command, key index, arg...]]}: a check reads the key's write token from its hash field
-- `v` (width 0) or from the first `width` bytes of its string value (a customer); an argument is a
-- string, or a number n that stands for ARGV[n] (bytes JSON cannot carry: a customer's value).
-- ARGV[2...]: those bytes. No scoring rule lives here: the commands are the core's deltas,
-- translated by streams/state/layout.py.
local doc = cjson.decode(ARGV[1])
for _, config in ipairs(doc.config or {}) do
  local adopted = redis.call('GET', KEYS[config[1]])
  if adopted and adopted ~= config[2] then
    return -1
  end
end
for _, check in ipairs(doc.check) do
  local token
  if check[3] == 0 then
    token = redis.call('HGET', KEYS[check[1]], 'v') or '0'
  else
    token = redis.call('GETRANGE', KEYS[check[1]], 0, check[3] - 1)
    if token == '' then token = '0' end
  end
  if token ~= check[2] then
    return 0
  end
end
for _, op in ipairs(doc.ops) do
  for i = 3, #op do
    if type(op[i]) == 'number' then op[i] = ARGV[op[i]] end
  end
  redis.call(op[1], KEYS[op[2]], unpack(op, 3))
end
return 1
