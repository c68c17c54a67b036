-- Accept an object version for scanning exactly once, and put its item in the buffer.
--
-- KEYS: 1 seen (idempotency key), 2 ready, 3 items, 4 stats
-- ARGV: 1 item id, 2 item JSON, 3 idempotency TTL (s)
-- Returns 1 when the item was added, 0 when this object version was accepted before.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[3])) == false then
  redis.call('HINCRBY', KEYS[4], 'duplicates', 1)
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HINCRBY', KEYS[4], 'items_added', 1)
return 1
