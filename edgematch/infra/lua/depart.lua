-- A request is about to leave: take its rate-limit slot again at this moment, or say how
-- long it must wait.
--
-- KEYS: 1 rate_log, 2 cooldown
-- ARGV: 1 batch id, 2 requests per window, 3 window (ms)
-- Returns 0 when the request may leave now, else the ms to wait before asking again.
--
-- The slot was spent when the batch was taken (take_batch.lua); the API counts the request
-- when it arrives. In between the batch goes to a sending thread, which may not run for
-- a while, so a log stamped at the take lets requests whose slots were a window apart
-- arrive closer than that. Here the entry is moved to now and checked as a take is: fewer
-- than `per_window` other entries in the window ending now (stamps ahead of now count too).
-- A request late by more than a window may have dropped out of the log and out of the
-- count of the takes made since; without this check it would leave unaccounted.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local per_window = tonumber(ARGV[2])
local window = tonumber(ARGV[3])

-- A 429 since the take: every request of the pool waits out what the server asked.
local cooldown = tonumber(redis.call('GET', KEYS[2]) or '0')
if cooldown > now then
  return cooldown - now
end

-- Still stamped ahead of now (a burst spread out by take_batch.lua, step 7): leaving
-- earlier than its stamp only makes the log stricter than the API.
local stamp = redis.call('ZSCORE', KEYS[1], id)
if stamp and tonumber(stamp) >= now then
  return 0
end

redis.call('ZREM', KEYS[1], id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local others = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #others / 2
if count >= per_window then
  -- Full: only a request late by about a window or more gets here (the takes since its
  -- slot counted it until then). The slot frees when all but per_window - 1 of these are
  -- a window old; the entry stays out of the log until the request may leave.
  return math.max(1, tonumber(others[2 * (count - per_window + 1)]) + window - now)
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('PEXPIRE', KEYS[1], window * 2)
return 0
