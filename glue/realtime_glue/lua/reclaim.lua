-- reclaim: return claims whose lease expired (not renewed by their worker's
-- heartbeat for the visibility timeout: the worker died, hangs, or never got
-- the claim's reply; or no glue worker owns it, such as a crashed Thoonk
-- consumer's) to the queue, raising the failure count; a job that has failed
-- max_failures times is stalled with the reason instead. At most `limit` per
-- call, oldest first; the caller calls again while a call returns `limit`.
-- Times are Redis's own (TIME), the clock every worker's lease is renewed by.
local claimed = KEYS[1]
local cancelled = KEYS[2]
local ids = KEYS[3]
local claimedby = KEYS[4]
local workers = KEYS[5]
local stalled = KEYS[6]
local published = KEYS[7]
local stallreasons = KEYS[8]
local visibility_ms, max_failures, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local deadline = now - visibility_ms
local requeued, stalled_count = 0, 0
local expired = redis.call('ZRANGEBYSCORE', claimed, '-inf', deadline, 'LIMIT', 0, limit)
-- Oldest first, and requeued at the front: push the newest first.
for i = #expired, 1, -1 do
    local id = expired[i]
    local owner = redis.call('HGET', claimedby, id)
    redis.call('ZREM', claimed, id)
    redis.call('HDEL', claimedby, id)
    local failures = redis.call('HINCRBY', cancelled, id, 1)
    if failures >= max_failures then
        redis.call('HDEL', cancelled, id)
        redis.call('SADD', stalled, id)
        redis.call('ZREM', published, id)
        redis.call('HSET', stallreasons, id, 'claim expired ' .. failures ..
            ' times: its lease was not renewed within the visibility timeout (held by ' ..
            (owner or 'no glue worker') .. ')')
        stalled_count = stalled_count + 1
    else
        redis.call('RPUSH', ids, id)
        requeued = requeued + 1
    end
end
-- Forget workers that have been silent for ten visibility timeouts.
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 10 * visibility_ms)
return {requeued, stalled_count}
