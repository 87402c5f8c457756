-- bury: put an item straight into the dead-letter (the stalled set) with the
-- reason, without ever queueing it: a message a push node refused for good.
local items = KEYS[1]
local stalled = KEYS[2]
local stallreasons = KEYS[3]
local publishes = KEYS[4]
local id, item, reason = ARGV[1], ARGV[2], ARGV[3]

if redis.call('HEXISTS', items, id) == 1 then
    return 0  -- buried already (a retry after a lost reply)
end
redis.call('INCR', publishes)
redis.call('HSET', items, id, item)
redis.call('SADD', stalled, id)
redis.call('HSET', stallreasons, id, reason)
return 1
