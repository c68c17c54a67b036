-- Settle a batch after its answer: finished items leave the buffer, the others go back.
--
-- KEYS: 1-3 ready lanes (live, replay, backfill), 4 items, 5 leases, 6 lease_items, 7 stats
-- ARGV: 1 batch id, 2 number of finished ids F, 3 .. 2+F finished ids,
--       then quadruples (item id, delay ms, item JSON, lane 1-3) for the items to send again.
-- Returns 1 when the lease was still ours, 0 when it had expired: the items may already
-- have been handed to another batch, so finished ones still leave (no second send) but
-- none is put back; the caller logs it, and results are idempotent.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lanes = {KEYS[1], KEYS[2], KEYS[3]}
local owned = redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
local finished = tonumber(ARGV[2])
for i = 3, 2 + finished do
  redis.call('HDEL', KEYS[4], ARGV[i])
  for _, lane in ipairs(lanes) do
    redis.call('ZREM', lane, ARGV[i])
  end
end
local again = 0
-- A batch whose lease ran out no longer owns its items: they were given back and may be
-- in another batch already, whose own answer decides what happens to them next.
if owned == 1 then
  local i = 3 + finished
  while i + 3 <= #ARGV do
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
    redis.call('ZADD', lanes[tonumber(ARGV[i + 3])], now + tonumber(ARGV[i + 1]), ARGV[i])
    again = again + 1
    i = i + 4
  end
end
redis.call('HINCRBY', KEYS[7], 'items_finished', finished)
redis.call('HINCRBY', KEYS[7], 'items_retried', again)
return owned
