-- Hold the pool until now + ARGV[1] ms on KEYS[1], never shortening a longer hold.
-- KEYS: 1 the hold key (the breaker; a 429's cooldown is cool_down.lua), 2 stats;
--       ARGV: 1 ms, 2 stats field,
--       3 "keep" to keep the key until cleared (breaker) or "expire" (cooldown).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
if current >= untilms then
  return current - now
end
if ARGV[3] == 'keep' then
  redis.call('SET', KEYS[1], untilms)
else
  redis.call('SET', KEYS[1], untilms, 'PX', tonumber(ARGV[1]) + 1000)
end
return tonumber(ARGV[1])
