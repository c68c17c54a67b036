-- Take a batch of staged verdict-log lines to write to the object store, under a lease.
-- A batch whose lease ran out (its flusher was killed, or the store refused the write) is
-- taken again first, whole and under its own id, so that it is written to the same objects.
-- KEYS: 1 staged lines (LIST), 2 batches (HASH id -> batch), 3 leases (ZSET id -> expiry ms)
-- ARGV: 1 the id of a new batch, 2 the most lines a batch takes, 3 the lease (ms)
-- Returns {id, batch} or false when nothing waits; a batch is the time it was taken (ms)
-- and its lines, joined by newlines (a line is one JSON object, which has none).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1)
if #expired > 0 then
  local id = expired[1]
  local batch = redis.call('HGET', KEYS[2], id)
  if batch then
    redis.call('ZADD', KEYS[3], now + lease, id)
    return {id, batch}
  end
  redis.call('ZREM', KEYS[3], id)
end
local lines = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
if #lines == 0 then
  return false
end
redis.call('LTRIM', KEYS[1], #lines, -1)
local batch = string.format('%.0f', now) .. '\n' .. table.concat(lines, '\n')
redis.call('HSET', KEYS[2], ARGV[1], batch)
redis.call('ZADD', KEYS[3], now + lease, ARGV[1])
return {ARGV[1], batch}
