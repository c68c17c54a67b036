-- Let one pump at a time wait for the next request slot; the others end instead.
--
-- KEYS: 1 waiters; ARGV: 1 pump id, 2 how long it will wait (ms, plus slack)
-- Returns 1 when this pump may wait, 0 when another pump is already waiting.
--
-- A waiting pump holds a worker process while it sleeps. One waiter is enough to use
-- every slot: when it takes its batch it hands it to a sending thread and waits for the
-- following slot itself while the first request is in flight (pipeline/flights.py). More
-- waiters would only pin processes that ingest and results need.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
