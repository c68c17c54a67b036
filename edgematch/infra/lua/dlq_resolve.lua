-- Remove a dead letter because its replay succeeded, unless it failed again meanwhile.
--
-- KEYS: 1 entries (HASH id -> entry JSON), 2 index (ZSET), 3 replays (HASH id -> replay JSON)
-- ARGV: 1 entry id
-- Returns 1 removed, 0 kept (no replay recorded, or a failure recorded since the replay
-- began: that failure is the entry's news now), -1 already gone.
--
-- The failure count, not a clock, decides: hosts' clocks may disagree, counts cannot.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  redis.call('HDEL', KEYS[3], ARGV[1])
  return -1
end
local marker = redis.call('HGET', KEYS[3], ARGV[1])
if not marker then
  return 0
end
local failures = tonumber(cjson.decode(raw)['failures'] or 1)
if tonumber(cjson.decode(marker)['failures']) ~= failures then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
