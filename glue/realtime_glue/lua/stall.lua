-- stall: move a claimed job to the stalled set (the dead-letter) with a reason
-- an operator can read; it stays there until retried or retracted.
-- KEYS: claimed, cancelled, stalled, published, claimedby, stallreasons
-- ARGV: id, reason
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[2])
return 1
