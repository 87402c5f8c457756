-- put: queue a new job the way Thoonk does.
local ids = KEYS[1]
local items = KEYS[2]
local published = KEYS[3]
local publishes = KEYS[4]
local id, item, priority = ARGV[1], ARGV[2], ARGV[3] == '1'  -- priority: consumed next

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
