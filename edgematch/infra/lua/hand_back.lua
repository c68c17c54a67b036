-- Hand back a delivery whose consumer stopped refreshing it: remove it from kombu's unacked
-- hash and index and, given a message, push that back at the head of its queue (the end
-- BRPOP takes from), as kombu's own restore does.
--
-- KEYS: 1 unacked hash, 2 unacked index, 3 the queue (unused when dropping)
-- ARGV: 1 delivery tag, 2 the entry as read, 3 cutoff (seconds), 4 message ('' = drop)
-- Returns 1 when handed back, 0 when the delivery was acknowledged, restored or changed
-- meanwhile, or refreshed since the cutoff (its consumer lives after all).
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw ~= ARGV[2] then
  return 0
end
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if at and tonumber(at) > tonumber(ARGV[3]) then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[4] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[4])
end
return 1
