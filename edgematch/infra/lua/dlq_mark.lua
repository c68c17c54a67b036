-- Mark a dead letter as being replayed by one task, and say whether this replay is fresh.
--
-- KEYS: 1 entries (HASH id -> entry JSON), 2 replays (HASH id -> replay JSON)
-- ARGV: 1 entry id, 2 the replay's task id, 3 now (epoch seconds)
-- Returns -1 when the entry is gone, 1 for a fresh replay (the entry had failed since any
-- earlier replay began), 0 when a replay of this very failure is already under way.
--
-- Atomic so that two operators replaying the same entry at once agree on who started it:
-- only a fresh replay may make ingest forget the object (and so scan it again).
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return -1
end
local failures = tonumber(cjson.decode(raw)['failures'] or 1)
local fresh = 1
local replays = 0
local marker = redis.call('HGET', KEYS[2], ARGV[1])
if marker then
  local previous = cjson.decode(marker)
  replays = tonumber(previous['replays'] or 0)
  if tonumber(previous['failures']) == failures then
    fresh = 0
  end
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({
  task_id = ARGV[2], at = tonumber(ARGV[3]), failures = failures, replays = replays + 1
}))
return fresh
