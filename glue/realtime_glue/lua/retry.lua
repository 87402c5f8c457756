-- retry: put a stalled job back on the queue.
local stalled = KEYS[1]
local ids = KEYS[2]
local published = KEYS[3]
local stallreasons = KEYS[4]
local cancelled = KEYS[5]
local id = ARGV[1]

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('SREM', stalled, id) == 0 then
    return 0
end
redis.call('LPUSH', ids, id)
redis.call('ZADD', published, now, id)
redis.call('HDEL', stallreasons, id)
redis.call('HDEL', cancelled, id)
return 1
