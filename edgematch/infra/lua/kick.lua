-- Decide whether one more pump (a match task draining the buffer) should start.
--
-- KEYS: 1 pumps, 2 cooldown, 3 breaker, 4 leases, 5-7 ready lanes, 8 waiting pumps
-- ARGV: 1 pump id, 2 max pumps, 3 pump TTL (ms), 4 batch size, 5 horizon (ms)
-- Returns 1 when the caller must enqueue a pump with that id, else 0.
--
-- Pumps are bounded by the configured maximum and by the batches that can go out within
-- the horizon, so a backlog of a million items has only a handful of match tasks in
-- flight, and nothing holds a worker process while the pool waits out a cooldown or an
-- open breaker (the beat's sweep kicks a pump again when the wait is nearly over).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local horizon = now + tonumber(ARGV[5])
local blocked = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'),
                         tonumber(redis.call('GET', KEYS[3]) or '0'))
if blocked > horizon then
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- A pump already waits for the next slot: it will send, then kick the next one.
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
if redis.call('ZCARD', KEYS[8]) > 0 then
  return 0
end
local running = redis.call('ZCARD', KEYS[1])
if running >= tonumber(ARGV[2]) then
  return 0
end
-- Items of a batch whose worker died count too: only a pump's take gives them back.
local waiting = redis.call('ZCOUNT', KEYS[4], '-inf', now) * tonumber(ARGV[4])
for i = 5, 7 do
  waiting = waiting + redis.call('ZCOUNT', KEYS[i], '-inf', horizon)
end
if waiting == 0 then
  return 0
end
local needed = math.ceil(waiting / tonumber(ARGV[4]))
if running >= needed then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
