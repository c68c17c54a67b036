-- Settle a batch after its answer: finished items leave the buffer, the others go back.
--
-- KEYS: 1 ready, 2 items, 3 leases, 4 lease_items, 5 stats
-- ARGV: 1 batch id, 2 number of finished ids F, 3 .. 2+F finished ids,
--       then triples (item id, delay ms, item JSON) for the items to send again.
-- Returns 1 when the lease was still ours, 0 when it had expired: the items may already
-- have been handed to another batch, so finished ones still leave (no second send) but
-- none is put back; the caller logs it, and results are idempotent.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owned = redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local finished = tonumber(ARGV[2])
for i = 3, 2 + finished do
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
local i = 3 + finished
local again = 0
-- A batch whose lease ran out no longer owns its items: they were given back and may be
-- in another batch already, whose own answer decides what happens to them next.
if owned == 0 then
  i = #ARGV + 1
end
while i + 2 <= #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i + 1]), ARGV[i])
  again = again + 1
  i = i + 3
end
redis.call('HINCRBY', KEYS[5], 'items_finished', finished)
redis.call('HINCRBY', KEYS[5], 'items_retried', again)
return owned
