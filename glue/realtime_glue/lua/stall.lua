-- stall: move a claimed job to the stalled set (the dead-letter) with a reason
-- an operator can read; it stays there until retried or retracted. Only a
-- claim this worker still holds is stalled.
local claimed = KEYS[1]
local cancelled = KEYS[2]
local stalled = KEYS[3]
local published = KEYS[4]
local claimedby = KEYS[5]
local stallreasons = KEYS[6]
local worker, id, reason = ARGV[1], ARGV[2], ARGV[3]

if redis.call('HGET', claimedby, id) ~= worker or redis.call('ZREM', claimed, id) == 0 then
    return 0
end
redis.call('HDEL', cancelled, id)
redis.call('SADD', stalled, id)
redis.call('ZREM', published, id)
redis.call('HDEL', claimedby, id)
redis.call('HSET', stallreasons, id, reason)
return 1
