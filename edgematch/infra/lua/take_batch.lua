-- Take the next batch for the API, atomically, if and only if a request may be sent now.
--
-- KEYS: 1-3 ready lanes (live, replay, backfill), 4 items, 5 leases, 6 lease_items,
--       7 rate_log, 8 cooldown, 9 breaker, 10 breaker_probe, 11 stats, 12 background credit,
--       13 capped cooldown marker
-- ARGV: 1 batch id (fresh), 2 batch size, 3 linger (ms), 4 requests per window,
--       5 window (ms), 6 lease (ms), 7 background minimum share (0..1)
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
local min_share = tonumber(ARGV[7])
local lanes = {KEYS[1], KEYS[2], KEYS[3]}

-- 1. Give back the items of batches whose worker died: their lease ran out. They have
--    waited long enough already, so they are due at once, without another linger.
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 50)
for _, bid in ipairs(expired) do
  local members = redis.call('HGET', KEYS[6], bid)
  if members then
    for lane, id in string.gmatch(members, '(%d):([^,]+)') do
      if redis.call('HEXISTS', KEYS[4], id) == 1 then
        redis.call('ZADD', lanes[tonumber(lane)], now - linger, id)
        redis.call('HINCRBY', KEYS[11], 'items_reclaimed', 1)
      end
    end
  end
  redis.call('HDEL', KEYS[6], bid)
  redis.call('ZREM', KEYS[5], bid)
  redis.call('HINCRBY', KEYS[11], 'leases_expired', 1)
end

-- 2. A 429 asked the whole pool to wait. When the wait was capped below what the server
--    asked (cool_down.lua), one probe request goes first once it is over, and the others
--    wait for its answer, as after the breaker's pause (3). The three holds are read in
--    one command (all three are strings).
local holds = redis.call('MGET', KEYS[8], KEYS[13], KEYS[9])
local cooldown = tonumber(holds[1] or '0')
if cooldown > now then
  return {'wait', cooldown - now, 'cooldown'}
end
-- While a probe request is in flight (its marker KEYS[10] lives), the others wait for its
-- answer; nil when none is: this take is then the probe.
local function probe_in_flight()
  local ttl = redis.call('PTTL', KEYS[10])
  if ttl > 0 then
    return {'wait', math.min(ttl, 1000), 'probe'}
  end
  return nil
end
local probe = 0
if holds[2] then
  local in_flight = probe_in_flight()
  if in_flight then return in_flight end
  probe = 1
end

-- 3. The key was refused: wait, then let exactly one probe request through.
local breaker = holds[3]
if breaker then
  breaker = tonumber(breaker)
  if breaker > now then
    return {'wait', breaker - now, 'breaker'}
  end
  local in_flight = probe_in_flight()
  if in_flight then return in_flight end
  probe = 1
end

-- 4. Is there anything to send, and is it worth sending now? One read a lane: its first
--    `batch_size` items by due time, with their scores (the same order as ZRANGEBYSCORE's),
--    tell what is ready now (counted up to a batch: no more is ever needed), the oldest,
--    and when the next one is due; step 6 takes from them.
local heads = {}
local ready = {0, 0, 0}
local total = 0
local oldest = nil
local next_due = nil
-- The replay and backfill lanes are empty most of the time: one EXISTS for both first.
local background_lanes = redis.call('EXISTS', KEYS[2], KEYS[3]) > 0
for i, key in ipairs(lanes) do
  local head = {}
  if i == 1 or background_lanes then
    head = redis.call('ZRANGE', key, 0, batch_size - 1, 'WITHSCORES')
  end
  heads[i] = head
  if #head > 0 then
    local score = tonumber(head[2])
    if next_due == nil or score < next_due then next_due = score end
    if score <= now then
      local n = 0
      while 2 * n + 2 <= #head and tonumber(head[2 * n + 2]) <= now do n = n + 1 end
      ready[i] = n
      total = total + n
      if oldest == nil or score < oldest then oldest = score end
    end
  end
end
if total == 0 then
  if next_due == nil then
    return {'empty'}
  end
  return {'wait', next_due - now, 'not_ready'}
end
if total < batch_size and now - oldest < linger then
  return {'wait', linger - (now - oldest), 'linger'}
end

-- 5. The pool-wide limit: at most per_window requests in any window of `window` ms (the
--    log's stamps may lie ahead of now: see 7; every one of them counts). What is left in
--    the log is read whole (at most per_window entries and the stamps ahead): its size,
--    its first and its latest stamp in one command.
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - window)
local stamps = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
if #stamps / 2 >= per_window then
  return {'wait', math.max(1, tonumber(stamps[2]) + window - now), 'rate'}
end

-- 6. Fill the batch across lanes: live first, then replay, then backfill. While live
--    traffic and background work both wait, every batch earns the background lanes
--    `min_share` of a batch; once they are owed a whole one, it is filled from them first.
local order = {1, 2, 3}
local background = ready[2] + ready[3]
if ready[1] > 0 and background > 0 and min_share > 0 then
  local credit = tonumber(redis.call('GET', KEYS[12]) or '0') + min_share
  if credit >= 1 then
    order = {2, 3, 1}
    credit = credit - 1
  end
  redis.call('SET', KEYS[12], tostring(credit), 'EX', 3600)
end
local ids = {}
local members = {}
for _, lane in ipairs(order) do
  local room = batch_size - #ids
  if room <= 0 then break end
  if ready[lane] > 0 then
    local got = {}
    for n = 1, math.min(room, ready[lane]) do
      got[n] = heads[lane][2 * n - 1]
    end
    if #got > 0 then
      redis.call('ZREM', lanes[lane], unpack(got))
      for _, id in ipairs(got) do
        ids[#ids + 1] = id
        members[#members + 1] = lane .. ':' .. id
      end
    end
  end
end

-- 7. Lease the batch and spend the slot. The slot is stamped no earlier than 0.9 of an
--    interval (window / per_window) after the latest stamp: a burst (an idle pool's first
--    R requests, a catch-up after a gap) is still sent at once, but its slots come free
--    spread out, not all together a window later. A plain log echoes a burst every
--    window, and an item arriving just after one waits most of a window. Requests already
--    an interval apart (a saturated pool) are stamped when taken, as before: the 0.1 of
--    slack keeps a late wake-up from pushing every later slot back.
local stamp = now
if #stamps > 0 then
  stamp = math.max(now, math.floor(tonumber(stamps[#stamps]) + 0.9 * window / per_window))
end
redis.call('ZADD', KEYS[5], now + lease, batch_id)
redis.call('HSET', KEYS[6], batch_id, table.concat(members, ','))
redis.call('ZADD', KEYS[7], stamp, batch_id)
redis.call('PEXPIRE', KEYS[7], window * 2)
if probe == 1 then
  redis.call('SET', KEYS[10], batch_id, 'PX', lease)
end
redis.call('HINCRBY', KEYS[11], 'requests', 1)
redis.call('HINCRBY', KEYS[11], 'batch_items', #ids)
local out = {'batch', batch_id, probe}
local docs = redis.call('HMGET', KEYS[4], unpack(ids))
for _, doc in ipairs(docs) do
  if doc then
    out[#out + 1] = doc
  end
end
return out
