-- retract: remove a job from every structure of the feed.
local items = KEYS[1]
local cancelled = KEYS[2]
local published = KEYS[3]
local stalled = KEYS[4]
local claimed = KEYS[5]
local ids = KEYS[6]
local claimedby = KEYS[7]
local stallreasons = KEYS[8]
local id = ARGV[1]

if redis.call('HDEL', items, id) == 0 then
    return 0
end
redis.call('HDEL', cancelled, id)
redis.call('ZREM', published, id)
redis.call('SREM', stalled, id)
redis.call('ZREM', claimed, id)
redis.call('LREM', ids, 1, id)
redis.call('HDEL', claimedby, id)
redis.call('HDEL', stallreasons, id)
return 1
