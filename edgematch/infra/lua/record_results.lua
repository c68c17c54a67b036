-- Record the results of one batch: record_result.lua for each of them, in one call. Each
-- item is its own compare-and-set on its hash object's recorded result, and its first
-- recording is staged for the verdict log (pipeline/verdictlog.py) in the same step; the
-- log's room is shared in item order, and an item it has no room for is not written at
-- all (its caller retries it), as record_result.lua does for one.
-- The hash objects of one call are distinct (the caller splits a batch that repeats one).
-- KEYS: 1 the verdict log's staged lines, then for each item i (from 0) at 2 + 3i:
--       the hash object's result, the content object's pointer to it, the item's
--       "recorded once" marker.
-- ARGV: 1 the item count, 2 the TTL (s), 3 the most lines staged at once, then for each
--       item at 4 + 6i: its id, the item id of the result its decision was made on ('' none),
--       '1' to make it the recorded result, the result (JSON), the pointer, the log line.
-- Returns one outcome an item, in order: -1 when the recorded result is not the one
-- expected (decide again), -2 when the verdict log has no room for it (nothing written),
-- else 1 for the item's first recording and 0 for a repeat.
local n = tonumber(ARGV[1])
local ttl = ARGV[2]
local result_keys = {}
for i = 0, n - 1 do
  result_keys[i + 1] = KEYS[2 + 3 * i]
end
local currents = redis.call('MGET', unpack(result_keys))
local room = tonumber(ARGV[3]) - redis.call('LLEN', KEYS[1])
local lines = {}
local outcomes = {}
for i = 0, n - 1 do
  local k, a = 2 + 3 * i, 4 + 6 * i
  local item, expected = ARGV[a], ARGV[a + 1]
  local current_item = ''
  if currents[i + 1] then
    local ok, doc = pcall(cjson.decode, currents[i + 1])
    if ok and type(doc) == 'table' and type(doc['item_id']) == 'string' then
      current_item = doc['item_id']
    end
  end
  local outcome
  if current_item ~= expected then
    outcome = -1
  else
    outcome = 1
    if current_item == item or not redis.call('SET', KEYS[k + 2], '1', 'NX', 'EX', ttl) then
      outcome = 0
    end
    if outcome == 1 then
      if room > 0 then
        room = room - 1
        lines[#lines + 1] = ARGV[a + 5]
      else
        redis.call('DEL', KEYS[k + 2])
        outcome = -2
      end
    end
    if outcome >= 0 and ARGV[a + 2] == '1' then
      redis.call('SET', KEYS[k], ARGV[a + 3], 'EX', ttl)
      redis.call('SET', KEYS[k + 1], ARGV[a + 4], 'EX', ttl)
    end
  end
  outcomes[i + 1] = outcome
end
if #lines > 0 then
  redis.call('RPUSH', KEYS[1], unpack(lines))
end
return outcomes
