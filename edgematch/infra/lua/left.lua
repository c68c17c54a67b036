-- A request's body has left: move its entry in the rate log to that moment.
--
-- KEYS: 1 rate_log; ARGV: 1 batch id, 2 ms since the body left, 3 window (ms)
-- Returns 1 when the entry moved, 0 when it stayed.
--
-- depart.lua stamped the request just before it started writing; a process descheduled
-- in the middle of the write (a busy host) can finish it tens of milliseconds later, and
-- the API counts the request only then. Moving the entry later is safe only while it is
-- less than a window old: until then every take counted it, so it stays counted wherever
-- it moves in that span. Past that a take may have left it out of its count, and moving
-- it would put one request too many in that take's window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not stamp then
  return 0
end
stamp = tonumber(stamp)
local left = now - tonumber(ARGV[2])
if left <= stamp or now >= stamp + tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', left, ARGV[1])
return 1
