-- Take the next batch for the API, atomically, if and only if a request may be sent now.
--
-- KEYS: 1 ready, 2 items, 3 leases, 4 lease_items, 5 rate_log, 6 cooldown, 7 breaker,
--       8 breaker_probe, 9 stats
-- ARGV: 1 batch id (fresh), 2 batch size, 3 linger (ms), 4 requests per window,
--       5 window (ms), 6 lease (ms)
--
-- Returns one of
--   {"batch", batch_id, probe (0|1), item_json, ...}
--   {"wait", ms, reason}       reason: cooldown | breaker | probe | linger | rate | not_ready
--   {"empty"}
--
-- The clock is Redis's own (TIME), so every process on every host shares one time line:
-- the pool-wide limit holds however skewed the hosts' clocks are.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local batch_id = ARGV[1]
local batch_size = tonumber(ARGV[2])
local linger = tonumber(ARGV[3])
local per_window = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])

-- 1. Give back the items of batches whose worker died: their lease ran out. They have
--    waited long enough already, so they are due at once, without another linger.
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 50)
for _, bid in ipairs(expired) do
  local ids = redis.call('HGET', KEYS[4], bid)
  if ids then
    for id in string.gmatch(ids, '[^,]+') do
      if redis.call('HEXISTS', KEYS[2], id) == 1 then
        redis.call('ZADD', KEYS[1], now - linger, id)
        redis.call('HINCRBY', KEYS[9], 'items_reclaimed', 1)
      end
    end
  end
  redis.call('HDEL', KEYS[4], bid)
  redis.call('ZREM', KEYS[3], bid)
  redis.call('HINCRBY', KEYS[9], 'leases_expired', 1)
end

-- 2. A 429 asked the whole pool to wait.
local cooldown = tonumber(redis.call('GET', KEYS[6]) or '0')
if cooldown > now then
  return {'wait', cooldown - now, 'cooldown'}
end

-- 3. The key was refused: wait, then let exactly one probe request through.
local probe = 0
local breaker = redis.call('GET', KEYS[7])
if breaker then
  breaker = tonumber(breaker)
  if breaker > now then
    return {'wait', breaker - now, 'breaker'}
  end
  local ttl = redis.call('PTTL', KEYS[8])
  if ttl > 0 then
    return {'wait', math.min(ttl, 1000), 'probe'}
  end
  probe = 1
end

-- 4. Is there anything to send, and is it worth sending now?
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', now)
if ready == 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first == 0 then
    return {'empty'}
  end
  return {'wait', tonumber(first[2]) - now, 'not_ready'}
end
if ready < batch_size then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local age = now - tonumber(oldest[2])
  if age < linger then
    return {'wait', linger - age, 'linger'}
  end
end

-- 5. The pool-wide limit: at most per_window requests in any window of `window` ms.
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
if redis.call('ZCARD', KEYS[5]) >= per_window then
  local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  return {'wait', math.max(1, tonumber(oldest[2]) + window - now), 'rate'}
end

-- 6. Take the batch under a lease and spend the slot.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, batch_size)
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('ZADD', KEYS[3], now + lease, batch_id)
redis.call('HSET', KEYS[4], batch_id, table.concat(ids, ','))
redis.call('ZADD', KEYS[5], now, batch_id)
redis.call('PEXPIRE', KEYS[5], window * 2)
if probe == 1 then
  redis.call('SET', KEYS[8], batch_id, 'PX', lease)
end
redis.call('HINCRBY', KEYS[9], 'requests', 1)
redis.call('HINCRBY', KEYS[9], 'batch_items', #ids)
local out = {'batch', batch_id, probe}
local docs = redis.call('HMGET', KEYS[2], unpack(ids))
for i, doc in ipairs(docs) do
  if doc then
    out[#out + 1] = doc
  end
end
return out
