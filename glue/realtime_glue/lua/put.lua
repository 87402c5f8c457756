-- put: queue a new job the way Thoonk does. With only_new = "1", an id the feed
-- already holds is left as it is (a put retried after a lost reply is a no-op).
local ids = KEYS[1]
local items = KEYS[2]
local published = KEYS[3]
local publishes = KEYS[4]
local id, item, priority, only_new = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4] == '1'  -- priority: consumed next

if only_new and redis.call('HEXISTS', items, id) == 1 then
    return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if priority then
    redis.call('RPUSH', ids, id)
else
    redis.call('LPUSH', ids, id)
end
redis.call('INCR', publishes)
redis.call('HSET', items, id, item)
redis.call('ZADD', published, now, id)
return now
