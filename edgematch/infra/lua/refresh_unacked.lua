-- Stamp deliveries a live consumer still holds with Redis's time now.
--
-- KEYS: 1 kombu's unacked index (delivery tag -> seconds); ARGV: delivery tags
-- XX: a delivery acknowledged meanwhile is not brought back. GT: a stamp never moves back.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', 'GT', now, ARGV[i])
end
return #ARGV
