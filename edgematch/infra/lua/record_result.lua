-- Record a result: compare-and-set on the hash object's recorded result, so that a
-- decision made on what was read (verdicts.decide) is never applied over a result that
-- another writer recorded meanwhile; and, in the same step, stage the item's first
-- recording for the verdict log (pipeline/verdictlog.py), so that no result is ever
-- recorded without its line waiting to be written to the object store.
-- KEYS: 1 the hash object's result, 2 the content object's pointer to it,
--       3 this item's "recorded once" marker, 4 the verdict log's staged lines.
-- ARGV: 1 the item id, 2 the item id of the result the decision was made on ('' none),
--       3 '1' to make this the recorded result, 4 the result (JSON), 5 the pointer,
--       6 the TTL (s), 7 the verdict log line (JSON), 8 the most lines staged at once.
-- Returns -1 when the recorded result is not the one expected (decide again), -2 when the
-- verdict log is that far behind (nothing is written: retry later), else 1 for the item's
-- first recording and 0 for a repeat.
local current = redis.call('GET', KEYS[1])
local current_item = ''
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and type(doc['item_id']) == 'string' then
    current_item = doc['item_id']
  end
end
if current_item ~= ARGV[2] then
  return -1
end
-- The marker is set and tested in one command; taken back when the log is full.
local fresh = 1
if current_item == ARGV[1] or not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[6]) then
  fresh = 0
end
-- The line is pushed first and taken back when it made the log too long: one command, not
-- a length read and a push (the script is atomic, so the last line is this one).
if fresh == 1 then
  if redis.call('RPUSH', KEYS[4], ARGV[7]) > tonumber(ARGV[8]) then
    redis.call('RPOP', KEYS[4])
    redis.call('DEL', KEYS[3])
    return -2
  end
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[6])
  redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6])
end
return fresh
