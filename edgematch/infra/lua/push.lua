-- Accept an object version for scanning exactly once, and put its item in the buffer.
--
-- KEYS: 1 seen (the version as read: version id, else ETag), 2 ready (the item's lane),
--       3 items, 4 stats,
--       5 seen alias (the version as the event named it; may equal KEYS[1])
-- ARGV: 1 item id, 2 item JSON, 3 idempotency TTL (s)
-- Returns 1 when the item was added, 0 when this object version was accepted before.
--
-- The seen keys hold '1': what matters is that they exist (the smallest value there is).
--
-- Two names for one version: an event without a version id (MinIO, moto, an unversioned
-- bucket) and one with it (real S3, a backfill listing) must not both be scanned.
local ttl = tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[5]) == 1
   or redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl) == false then
  redis.call('SET', KEYS[5], '1', 'EX', ttl)
  redis.call('HINCRBY', KEYS[4], 'duplicates', 1)
  return 0
end
redis.call('SET', KEYS[5], '1', 'EX', ttl)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HINCRBY', KEYS[4], 'items_added', 1)
return 1
