-- Hold the pool after a 429, never shortening a longer hold; when the hold was capped
-- below what the server asked (EDGEMATCH_MAX_COOLDOWN_S), mark that one probe request
-- must go first once it is over (take_batch.lua, step 2).
--
-- KEYS: 1 cooldown, 2 capped marker, 3 stats
-- ARGV: 1 hold (ms), 2 what the server asked (ms)
-- Returns the ms the pool now waits.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[1])
local asked = tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[3], 'cooldowns', 1)
if asked > hold then
  redis.call('HINCRBY', KEYS[3], 'cooldowns_capped', 1)
  -- Kept as long as the server asked, no longer: past that, its request is honoured.
  local doc = cjson.encode({asked_ms = asked, hold_ms = hold, at_ms = now})
  redis.call('SET', KEYS[2], doc, 'PX', asked)
end
local untilms = now + hold
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= untilms then
  return current - now
end
redis.call('SET', KEYS[1], untilms, 'PX', hold + 1000)
return hold
