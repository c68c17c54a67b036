-- Remember that a hash was clean, unless a match is remembered for it: matches always win.
-- Never shortens the life an earlier clean verdict already gave the entry, so a repeat
-- delivery of the same result (or an older one replayed) changes nothing.
-- KEYS: 1 the hash's match-cache key, 2 its clean-cache key;
-- ARGV: 1 the entry (JSON), 2 how long it lives (ms).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[2]) >= ttl then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
return 1
