-- put: queue a new job the way Thoonk does.
-- KEYS: ids, items, published, publishes
-- ARGV: id, item, priority ("1" = consumed next)
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[3] == '1' then
    redis.call('RPUSH', KEYS[1], ARGV[1])
else
    redis.call('LPUSH', KEYS[1], ARGV[1])
end
redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[1])
return now
