-- Settle a batch after its answer: finished items leave the buffer, the others go back.
--
-- KEYS: 1-3 ready lanes (live, replay, backfill), 4 items, 5 leases, 6 lease_items, 7 stats
-- ARGV: 1 batch id, 2 number of finished ids F, 3 .. 2+F finished ids,
--       then quadruples (item id, delay ms, item JSON, lane 1-3) for the items to send again.
-- Returns 1 when the lease was still ours, 0 when it had expired: the items may already
-- have been handed to another batch, so finished ones still leave (no second send) but
-- none is put back; the caller logs it, and results are idempotent.
--
-- Finished ids leave with one command a key for the whole batch, not one an item: a
-- batch's settle is the buffer's most frequent write.
local CHUNK = 500  -- ids a command at most (Lua's unpack has a stack limit)
local function each_chunk(first, last, call)
  local i = first
  while i <= last do
    local j = math.min(last, i + CHUNK - 1)
    call(unpack(ARGV, i, j))
    i = j + 1
  end
end
local owned = redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
local finished = tonumber(ARGV[2])
if finished > 0 then
  each_chunk(3, 2 + finished, function(...) redis.call('HDEL', KEYS[4], ...) end)
  -- Taken items left their lane at the take; one is back there only when its lease ran
  -- out and a take gave it back, which removes the lease too (take_batch.lua, step 1): a
  -- batch that still owned its lease has none of its items in a lane, and needs no ZREM.
  if owned == 0 then
    for lane = 1, 3 do
      each_chunk(3, 2 + finished, function(...) redis.call('ZREM', KEYS[lane], ...) end)
    end
  end
  redis.call('HINCRBY', KEYS[7], 'items_finished', finished)
end
local again = 0
-- A batch whose lease ran out no longer owns its items: they were given back and may be
-- in another batch already, whose own answer decides what happens to them next.
if owned == 1 and 3 + finished + 3 <= #ARGV then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local lanes = {KEYS[1], KEYS[2], KEYS[3]}
  local i = 3 + finished
  while i + 3 <= #ARGV do
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
    redis.call('ZADD', lanes[tonumber(ARGV[i + 3])], now + tonumber(ARGV[i + 1]), ARGV[i])
    again = again + 1
    i = i + 4
  end
  redis.call('HINCRBY', KEYS[7], 'items_retried', again)
end
return owned
