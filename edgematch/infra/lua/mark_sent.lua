-- Move a request's entry in the rate log to the moment it is actually sent.
--
-- KEYS: 1 rate_log; ARGV: 1 batch id
-- The slot was spent when the batch was taken; anything that delayed the send since
-- (a process's first connection, a pause of the scheduler) would otherwise shift the
-- request's arrival at the API past what the log says, and the API's window would see
-- one request too many. Moving an entry later only ever makes the limiter stricter.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', 'GT', now, ARGV[1])
