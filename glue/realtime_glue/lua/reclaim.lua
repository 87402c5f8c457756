-- reclaim: return claims whose worker stopped heartbeating (or that no glue
-- worker owns, such as a crashed Thoonk consumer's) to the queue once they are
-- older than the visibility timeout, raising the failure count; a job that has
-- failed max_failures times is stalled with the reason instead.
-- KEYS: claimed, cancelled, ids, claimedby, workers, stalled, published, stallreasons
-- ARGV: visibility_timeout_ms, max_failures, limit
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local deadline = now - tonumber(ARGV[1])
local requeued, stalled = 0, 0
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', deadline, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(old) do
    local owner = redis.call('HGET', KEYS[4], id)
    local alive = false
    if owner then
        local beat = redis.call('ZSCORE', KEYS[5], owner)
        alive = beat and tonumber(beat) >= deadline
    end
    if not alive then
        redis.call('ZREM', KEYS[1], id)
        redis.call('HDEL', KEYS[4], id)
        local failures = redis.call('HINCRBY', KEYS[2], id, 1)
        if failures >= tonumber(ARGV[2]) then
            redis.call('HDEL', KEYS[2], id)
            redis.call('SADD', KEYS[6], id)
            redis.call('ZREM', KEYS[7], id)
            redis.call('HSET', KEYS[8], id, 'claim expired ' .. failures ..
                ' times: the worker holding it stopped heartbeating (' .. (owner or 'no glue worker') .. ')')
            stalled = stalled + 1
        else
            redis.call('RPUSH', KEYS[3], id)
            requeued = requeued + 1
        end
    end
end
-- Forget workers that have been silent for ten visibility timeouts.
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 10 * tonumber(ARGV[1]))
return {requeued, stalled}
