-- push.lua for the items of one ingest batch task: each object version is accepted
-- exactly once, and the items accepted join the buffer together.
--
-- KEYS: 1-3 ready lanes (live, replay, backfill), 4 items, 5 stats,
--       then for each item: seen (the version as read), seen alias (as the event named it;
--       may equal the first)
-- ARGV: 1 idempotency TTL (s), then for each item: item id, item JSON, lane (1-3)
-- Returns one number an item, in order: 1 added, 0 this object version was accepted before
-- (by an earlier push, or by an earlier item of this batch).
--
-- What push.lua does an item, but the clock read, the buffer's writes and the counters
-- once a batch: 2 commands an item and 5 a batch instead of 7 an item.
local ttl = tonumber(ARGV[1])
local count = (#ARGV - 1) / 3
local out = {}
local fields = {}
local members = {{}, {}, {}}
local added = 0
for i = 1, count do
  local seen, alias = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local id, doc, lane = ARGV[3 * i - 1], ARGV[3 * i], tonumber(ARGV[3 * i + 1])
  local fresh
  if alias ~= seen then
    -- The alias is set (its TTL renewed) and tested in one command: SET ... GET answers
    -- what it held before (Redis 6.2 or later).
    fresh = not redis.call('SET', alias, '1', 'EX', ttl, 'GET')
      and redis.call('SET', seen, '1', 'NX', 'EX', ttl) ~= false
  else
    fresh = redis.call('SET', seen, '1', 'NX', 'EX', ttl) ~= false
    if not fresh then
      redis.call('SET', alias, '1', 'EX', ttl)
    end
  end
  if fresh then
    fields[#fields + 1] = id
    fields[#fields + 1] = doc
    members[lane][#members[lane] + 1] = id
    added = added + 1
    out[i] = 1
  else
    out[i] = 0
  end
end
if added > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[4], unpack(fields))
  for lane = 1, 3 do
    if #members[lane] > 0 then
      local args = {}
      for _, id in ipairs(members[lane]) do
        args[#args + 1] = now
        args[#args + 1] = id
      end
      redis.call('ZADD', KEYS[lane], unpack(args))
    end
  end
  redis.call('HINCRBY', KEYS[5], 'items_added', added)
end
if added < count then
  redis.call('HINCRBY', KEYS[5], 'duplicates', count - added)
end
return out
