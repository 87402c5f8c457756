-- retry: put a stalled job back on the queue.
-- KEYS: stalled, ids, published, stallreasons, cancelled
-- ARGV: id
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
