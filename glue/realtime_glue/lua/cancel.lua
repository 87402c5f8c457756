-- cancel: give claimed jobs back to the queue at its front, in the order given,
-- so a batch given back is consumed again in claim order, before newer jobs.
-- With count_failure = "1" the job's failure count rises (Thoonk's cancel: a
-- job that keeps failing is stalled after max_failures, so it cannot hold the
-- queue for long); a shutdown releases without it. Only claims this worker
-- still holds are given back.
-- ARGV: worker, count_failure, id, id, ... (oldest first)
local claimed = KEYS[1]
local cancelled = KEYS[2]
local ids = KEYS[3]
local claimedby = KEYS[4]
local worker, count_failure = ARGV[1], ARGV[2] == '1'

local released = 0
-- Ids are consumed from the right: push the last one first, so the first is consumed first.
for i = #ARGV, 3, -1 do
    local id = ARGV[i]
    if redis.call('HGET', claimedby, id) == worker and redis.call('ZREM', claimed, id) == 1 then
        if count_failure then
            redis.call('HINCRBY', cancelled, id, 1)
        end
        redis.call('RPUSH', ids, id)
        redis.call('HDEL', claimedby, id)
        released = released + 1
    end
end
return released
