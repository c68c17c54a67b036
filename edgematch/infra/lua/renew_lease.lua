-- Renew a batch's lease while the worker sending it lives.
--
-- KEYS: 1 leases, 2 breaker_probe; ARGV: 1 batch id, 2 lease (ms)
-- Returns 1 when renewed, 0 when the batch is no longer leased (settled, or given back
-- after its lease ran out: its items may be in another batch now, so it is not taken back).
-- A lease that ran out but was not given back yet is still this batch's: nobody else has
-- its items, so renewing it is safe.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', 'GT', now + tonumber(ARGV[2]), ARGV[1])
-- The one probe of an open breaker stays the only one while its request is out.
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
return 1
