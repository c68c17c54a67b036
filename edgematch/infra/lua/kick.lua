-- Decide whether one more pump (a match task draining the buffer) should start.
--
-- KEYS: 1 pumps, 2 cooldown, 3 breaker, 4 leases, 5-7 ready lanes, 8 waiting pumps
-- ARGV: 1 pump id, 2 max pumps, 3 pump TTL (ms), 4 batch size, 5 horizon (ms),
--       6 '0' not to count the items of expired leases (a running pump's kick: its own
--       takes give them back); absent or '1' to count them (ingest, the sweep)
-- Returns 1 when the caller must enqueue a pump with that id, else 0.
--
-- Pumps are bounded by the configured maximum and by the batches that can go out within
-- the horizon, so a backlog of a million items has only a handful of match tasks in
-- flight, and nothing holds a worker process while the pool waits out a cooldown or an
-- open breaker (the beat's sweep kicks a pump again when the wait is nearly over).
--
-- Called for every batch ingested and every request sent, and nearly always answers 0:
-- the checks that usually say no come first (a pump waiting, the pumps' maximum, too few
-- items), the items are counted only until they are enough for one more pump, the pool's
-- holds are read only then, and expired pump entries are dropped only on the way to
-- adding one.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = '(' .. now
-- A pump already waits for the next slot: it will send, then take the next slot itself.
if redis.call('ZCOUNT', KEYS[8], live, '+inf') > 0 then
  return 0
end
local running = redis.call('ZCOUNT', KEYS[1], live, '+inf')
if running >= tonumber(ARGV[2]) then
  return 0
end
local horizon = now + tonumber(ARGV[5])
-- One more pump is useful when the items exceed what the running ones take in a batch.
local batch = tonumber(ARGV[4])
local enough = running * batch
-- The live lane first; the replay and backfill lanes, empty most of the time, are counted
-- only when one of them exists (one EXISTS for both, not two counts).
local waiting = redis.call('ZCOUNT', KEYS[5], '-inf', horizon)
if waiting <= enough and redis.call('EXISTS', KEYS[6], KEYS[7]) > 0 then
  for i = 6, 7 do
    waiting = waiting + redis.call('ZCOUNT', KEYS[i], '-inf', horizon)
    if waiting > enough then
      break
    end
  end
end
if waiting <= enough and ARGV[6] ~= '0' then
  -- Items of a batch whose worker died count too: only a pump's take gives them back.
  waiting = waiting + redis.call('ZCOUNT', KEYS[4], '-inf', now) * batch
end
if waiting <= enough then
  return 0
end
-- The pool's holds last: the answer is nearly always no before them.
local holds = redis.call('MGET', KEYS[2], KEYS[3])
if math.max(tonumber(holds[1] or '0'), tonumber(holds[2] or '0')) > horizon then
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
